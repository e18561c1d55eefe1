package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/authzd/authzd/internal/client"
	"github.com/authzd/authzd/internal/devidp"
)

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		dev     = fs.Bool("dev", false, "ask a running dev server (authzd serve --dev) to sign the token")
		server  = fs.String("server", "http://127.0.0.1:8080", "the dev server's HTTP address")
		keyFile = fs.String("key-file", "", "sign locally with this PEM private key (RSA or EC) instead")
		issuer  = fs.String("issuer", "", "with --key-file: the iss claim")
		sub     = fs.String("sub", "", "the sub claim (required)")
		email   = fs.String("email", "", "the email claim")
		name    = fs.String("name", "", "the name claim")
		ttl     = fs.Duration("ttl", time.Hour, "token lifetime")
		groups  listFlag
		claims  repeatFlag
	)
	fs.Var(&groups, "groups", "groups, comma-separated or repeated")
	fs.Var(&claims, "claim", "an extra claim key=value, repeatable; a value that is JSON (42, true, [\"a\"]) stays typed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *sub == "" {
		return usageError{errors.New("--sub is required")}
	}
	if *dev == (*keyFile != "") {
		return usageError{errors.New("give exactly one of --dev or --key-file")}
	}
	c := map[string]any{"sub": *sub}
	if *email != "" {
		c["email"] = *email
	}
	if *name != "" {
		c["name"] = *name
	}
	if len(groups) > 0 {
		c["groups"] = []string(groups)
	}
	for _, kv := range claims {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageError{fmt.Errorf("--claim %q: want key=value", kv)}
		}
		c[k] = devidp.ClaimValue(v)
	}

	var tok string
	var err error
	if *dev {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tok, err = (&client.Client{BaseURL: *server}).MintDevToken(ctx, c, *ttl)
	} else {
		var pem []byte
		if pem, err = os.ReadFile(*keyFile); err != nil {
			return fmt.Errorf("read --key-file: %w", err)
		}
		tok, err = devidp.SignWithKey(pem, *issuer, c, *ttl)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
