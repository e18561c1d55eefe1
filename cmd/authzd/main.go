// Command authzd is the authorization decision service for Apache Superset.
//
//	authzd serve --config FILE    run the service
//	authzd serve --dev            run on the embedded dev default
//	authzd token --dev ...        mint a token from a running dev server
//	authzd check --token TOKEN    ask a running server for a decision
//	authzd version                print the version
//
// Every flag also reads from an AUTHZD_* environment variable: --http-addr
// from AUTHZD_HTTP_ADDR, and so on.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `authzd decides who may use Apache Superset, with which roles and
row-level security filters, from verified OpenID Connect ID tokens.

Usage:
  authzd serve --config FILE     run the service
  authzd serve --dev             run on the embedded dev default (loopback, not for production)
  authzd token --dev --sub alice [--email E] [--groups G1,G2] [--claim k=v ...]
                                 print a token signed by a running dev server
  authzd check --token TOKEN [--explain]
                                 ask a running server for a decision and print it
  authzd version                 print the version

Run "authzd COMMAND --help" for a command's flags. Every flag also reads
from AUTHZD_<FLAG>, for example AUTHZD_HTTP_ADDR for --http-addr.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(args[1:], stderr, stdout)
	case "token":
		err = tokenCmd(args[1:], stdout, stderr)
	case "check":
		err = checkCmd(args[1:], stdin, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "authzd", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "authzd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "authzd %s: %v\n", args[0], err)
			return 2
		}
		var de denied
		if errors.As(err, &de) {
			return 3
		}
		fmt.Fprintf(stderr, "authzd %s: %v\n", args[0], err)
		return 1
	}
}

// usageError is a mistake on the command line.
type usageError struct{ error }

// denied is returned by check when the decision says no, for exit code 3.
type denied struct{}

func (denied) Error() string { return "denied" }

// parseFlags parses args and then fills every flag that the command line
// left unset from its AUTHZD_* environment variable.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "AUTHZD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: %w", env, err))
			}
		}
	})
	if len(errs) > 0 {
		return usageError{errors.Join(errs...)}
	}
	return nil
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// repeatFlag is a repeatable flag kept whole, for key=value pairs whose
// values may hold commas.
type repeatFlag []string

func (r *repeatFlag) String() string { return strings.Join(*r, " ") }

func (r *repeatFlag) Set(v string) error { *r = append(*r, v); return nil }
