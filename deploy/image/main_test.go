package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildThenCheck runs the command as CI does, on a fake static binary:
// build writes an archive and check accepts it; check refuses anything else.
func TestBuildThenCheck(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	policies := filepath.Join(dir, "policies", "superset")
	for p, c := range map[string]string{
		filepath.Join(src, "go.mod"):          "module fakeauthzd\n\ngo 1.26\n",
		filepath.Join(src, "main.go"):         "package main\n\nfunc main() {}\n",
		filepath.Join(policies, "authz.rego"): "package superset.authz\n\ndefault allow := false\n",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "authzd")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fake binary: %v\n%s", err, out)
	}
	ca := "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(ca); err != nil {
		t.Skipf("no CA bundle at %s: %v", ca, err)
	}

	out := filepath.Join(dir, "authzd.tar")
	var stdout bytes.Buffer
	err := run([]string{"build", "-binary", bin, "-policies", filepath.Dir(policies),
		"-ca-bundle", ca, "-output", out, "-tag", "authzd:test", "-created", "1764547200"}, &stdout)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if got := stdout.String(); !strings.HasPrefix(got, out+" authzd:test sha256:") {
		t.Errorf("build printed %q, want the archive, tag and digest", got)
	}
	digest := strings.Fields(stdout.String())[2]

	stdout.Reset()
	if err := run([]string{"check", out}, &stdout); err != nil {
		t.Fatalf("check: %v", err)
	}
	if got := stdout.String(); !strings.Contains(got, "ok "+digest) {
		t.Errorf("check printed %q, want ok and digest %s", got, digest)
	}

	stdout.Reset()
	again := filepath.Join(dir, "again.tar")
	err = run([]string{"--binary", bin, "--policies", filepath.Dir(policies), "--ca-bundle", ca,
		"--out", again, "-tag", "authzd:test", "-created", "1764547200"}, &stdout)
	if err != nil {
		t.Fatalf("build without the command word: %v", err)
	}
	first, _ := os.ReadFile(out)
	second, _ := os.ReadFile(again)
	if !bytes.Equal(first, second) {
		t.Error("got different archives from the same inputs")
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "usage"},
		{"unknown command", []string{"push"}, `unknown command "push"`},
		{"check without archive", []string{"check"}, "want one archive"},
		{"check of a missing archive", []string{"check", filepath.Join(dir, "none.tar")}, "no such file"},
		{"check of the binary", []string{"check", bin}, "read archive"},
		{"build without binary", []string{"build", "-policies", dir, "-output", filepath.Join(dir, "x.tar")}, "missing binary"},
		{"bad created time", []string{"build", "-binary", bin, "-policies", dir, "-created", "yesterday"}, "want Unix seconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
