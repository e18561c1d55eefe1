package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/authzd/authzd/internal/client"
)

func checkCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		server  = fs.String("server", "http://127.0.0.1:8080", "the server's HTTP address")
		tok     = fs.String("token", "", "the ID token; - reads it from standard input")
		explain = fs.Bool("explain", false, "also show the policy data entries that matched and the claims seen")
		asJSON  = fs.Bool("json", false, "print the decision as JSON")
		timeout = fs.Duration("timeout", 10*time.Second, "how long to wait for the answer")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	raw := *tok
	if raw == "-" {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read token from standard input: %w", err)
		}
		raw = strings.TrimSpace(line)
	}
	if raw == "" {
		return usageError{errors.New("--token is required (or --token - to read standard input)")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	d, err := (&client.Client{BaseURL: *server}).Decide(ctx, raw, *explain)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return err
		}
	} else {
		printDecision(stdout, d, *explain)
	}
	if !d.Allowed {
		return denied{}
	}
	return nil
}

func printDecision(w io.Writer, d *client.Decision, explain bool) {
	verdict := "ALLOWED"
	if !d.Allowed {
		verdict = "DENIED"
	}
	fmt.Fprintf(w, "%s  %s (%s)\n", verdict, d.Subject.Username, d.Subject.Subject)
	fmt.Fprintf(w, "  decision   %s\n", d.DecisionID)
	fmt.Fprintf(w, "  issuer     %s\n", d.Subject.Issuer)
	fmt.Fprintf(w, "  groups     %s\n", list(d.Subject.Groups))
	if d.Subject.GroupsOverage {
		fmt.Fprintln(w, "             (the identity provider left groups out: too many)")
	}
	fmt.Fprintf(w, "  roles      %s\n", list(d.Roles))
	if len(d.RLSFilters) == 0 {
		fmt.Fprintln(w, "  rls        (none)")
	}
	for _, f := range d.RLSFilters {
		fmt.Fprintf(w, "  rls        %s on %s: %s\n", f.Name, strings.Join(f.Tables, ", "), f.Clause)
	}
	fmt.Fprintln(w, "  reasons")
	for _, r := range d.Reasons {
		fmt.Fprintf(w, "    - %s\n", r)
	}
	fmt.Fprintf(w, "  policy     %s\n", d.PolicyRevision)
	fmt.Fprintf(w, "  expires    %s\n", d.ExpiresAt)
	if explain && d.Explanation != nil {
		fmt.Fprintln(w, "  matched policy data")
		if len(d.Explanation.Matches) == 0 {
			fmt.Fprintln(w, "    (no entry matched)")
		}
		for _, m := range d.Explanation.Matches {
			raw, _ := json.Marshal(m)
			fmt.Fprintf(w, "    %s\n", raw)
		}
		raw, _ := json.MarshalIndent(d.Explanation.Claims, "    ", "  ")
		fmt.Fprintf(w, "  claims seen by the policy\n    %s\n", raw)
	}
}

func list(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}
