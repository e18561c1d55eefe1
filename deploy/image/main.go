// Command image builds authzd's container image as an OCI archive without a
// container engine or a registry, and checks a built archive.
//
//	CGO_ENABLED=0 go build -trimpath -o bin/authzd ./cmd/authzd   # from the repository root
//	cd deploy
//	go run ./image build -binary ../bin/authzd -policies ../policies \
//	    -ca-bundle /etc/ssl/certs/ca-certificates.crt -output ../bin/authzd-image.tar \
//	    -tag authzd:0.1.0 -version 0.1.0 -revision "$(git rev-parse HEAD)"
//	go run ./image check ../bin/authzd-image.tar
//
// build prints the image digest; the same inputs and -created time give the
// same digest. check exits non-zero and names every problem when the archive
// is not a well-formed authzd image: entrypoint, command, user, ports, a
// static binary, the non-root user entries, the CA bundle, the policies, and
// file owners and modes.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/authzd/authzd/deploy/internal/ociimage"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  image [build] -binary FILE -policies DIR [-ca-bundle FILE] [-output FILE] [flags]
  image check [-arch ARCH] FILE`

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	if strings.HasPrefix(args[0], "-") {
		// `image -binary ... -out ...` is `image build ...`.
		return build(args, stdout)
	}
	switch args[0] {
	case "build":
		return build(args[1:], stdout)
	case "check":
		return check(args[1:], stdout)
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func build(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	var o ociimage.Options
	fs.StringVar(&o.Binary, "binary", "", "the static authzd binary (CGO_ENABLED=0)")
	fs.StringVar(&o.CABundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of trusted CAs")
	fs.StringVar(&o.Policies, "policies", "", "the policy directory to ship at "+ociimage.PoliciesPath)
	fs.StringVar(&o.Arch, "arch", "amd64", "GOARCH of the binary and the image")
	fs.StringVar(&o.Version, "version", "", "org.opencontainers.image.version label")
	fs.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision label (a commit)")
	fs.StringVar(&o.Source, "source", "", "org.opencontainers.image.source label (a repository URL)")
	output := fs.String("output", "authzd-image.tar", "the archive to write")
	fs.StringVar(output, "out", "authzd-image.tar", "the same as -output")
	ref := fs.String("tag", "authzd:dev", "the image name and tag recorded in the archive")
	created := fs.String("created", os.Getenv("SOURCE_DATE_EPOCH"),
		"creation time as Unix seconds (default $SOURCE_DATE_EPOCH, else 0)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("build: unexpected arguments %q", fs.Args())
	}
	if *created != "" {
		sec, err := strconv.ParseInt(*created, 10, 64)
		if err != nil {
			return fmt.Errorf("build: -created %q: want Unix seconds: %w", *created, err)
		}
		o.Created = time.Unix(sec, 0)
	}
	img, err := ociimage.Build(o)
	if err != nil {
		return err
	}
	in, err := ociimage.Inspect(img)
	if err != nil {
		return err
	}
	if err := ociimage.Check(in, o.Arch); err != nil {
		return fmt.Errorf("build: the built image fails its own check: %w", err)
	}
	f, err := os.Create(*output)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	err = ociimage.WriteArchive(w, img, *ref)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*output)
		return err
	}
	fmt.Fprintf(stdout, "%s %s %s\n", *output, *ref, in.Digest)
	return nil
}

func check(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	arch := fs.String("arch", "amd64", "the GOARCH the image must be for")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("check: want one archive, got %d arguments\n%s", fs.NArg(), usage)
	}
	in, err := ociimage.ReadArchive(fs.Arg(0))
	if err != nil {
		return err
	}
	if err := ociimage.Check(in, *arch); err != nil {
		return fmt.Errorf("check %q:\n%w", fs.Arg(0), err)
	}
	fmt.Fprintf(stdout, "%s: ok %s, %d files, entrypoint %q, user %q\n",
		fs.Arg(0), in.Digest, len(in.Files), in.Config.Config.Entrypoint, in.Config.Config.User)
	return nil
}
