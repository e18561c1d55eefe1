package policy

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the want of testdata/shipped cases from the engine's results")

// testCase is one decision case read from testdata. Engine cases live in
// testdata/engine/NAME/case.json with their policy in testdata/engine/NAME/policy;
// cases of the shipped policy live in testdata/shipped/NAME.json.
type testCase struct {
	// Name is the file or directory name, filled by readCases.
	Name string `json:"-"`
	// Path is the case file, filled by readCases.
	Path string `json:"-"`
	// Description says what the case shows.
	Description string `json:"description"`
	// Package is the policy package; default superset.authz.
	Package string `json:"package,omitempty"`
	// EvalTimeout bounds the evaluation, as a Go duration.
	EvalTimeout string `json:"eval_timeout,omitempty"`
	Input       Input  `json:"input"`
	Explain     bool   `json:"explain,omitempty"`
	// WantLoadError is a substring of the error of New; the policy must be
	// refused.
	WantLoadError string `json:"want_load_error,omitempty"`
	// WantError is a substring of the error of Evaluate.
	WantError string `json:"want_error,omitempty"`
	// WantRule is the rule named by the evaluation error, if any.
	WantRule string `json:"want_rule,omitempty"`
	// Want is the expected result, without its revision.
	Want *Result `json:"want,omitempty"`
}

// readCases reads every case file matching pattern (a glob below
// testdata). Numbers are kept as json.Number, as the engine returns them.
func readCases(t *testing.T, pattern string) []testCase {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil {
		t.Fatalf("glob %q: %v", pattern, err)
	}
	if len(paths) == 0 {
		t.Fatalf("no test cases match %q", pattern)
	}
	cases := make([]testCase, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read case: %v", err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		dec.DisallowUnknownFields()
		var c testCase
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("decode case %q: %v", p, err)
		}
		c.Path = p
		c.Name = strings.TrimSuffix(filepath.Base(p), ".json")
		if c.Name == "case" {
			c.Name = filepath.Base(filepath.Dir(p))
		}
		cases = append(cases, c)
	}
	return cases
}

// writeWant rewrites a case file with got as its want (the -update flag).
func writeWant(t *testing.T, c testCase, got *Result) {
	t.Helper()
	w := *got
	w.Revision = ""
	c.Want = &w
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatalf("encode case: %v", err)
	}
	if err := os.WriteFile(c.Path, append(data, '\n'), 0o644); err != nil {
		t.Fatalf("write case: %v", err)
	}
}
