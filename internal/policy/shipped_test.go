package policy

import (
	"context"
	"io/fs"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/authzd/authzd/policies"
)

// shippedSources are the two ways the shipped policy reaches the engine.
func shippedSources() []struct {
	name string
	opts Options
} {
	return []struct {
		name string
		opts Options
	}{
		{name: "directory", opts: Options{Dir: "../../policies"}},
		{name: "embedded", opts: Options{FS: policies.FS}},
	}
}

func TestShippedPolicy(t *testing.T) {
	cases := readCases(t, "shipped/*.json")
	var revisions []string
	for _, src := range shippedSources() {
		e, err := New(src.opts)
		if err != nil {
			t.Fatalf("New(%s): %v", src.name, err)
		}
		revisions = append(revisions, e.Revision())
		for _, c := range cases {
			t.Run(src.name+"/"+c.Name, func(t *testing.T) {
				got, err := e.Evaluate(context.Background(), c.Input, c.Explain)
				if err != nil {
					t.Fatalf("Evaluate: %v", err)
				}
				if got.Revision != e.Revision() {
					t.Errorf("got revision %q, want %q", got.Revision, e.Revision())
				}
				if *update && src.name == "directory" {
					writeWant(t, c, got)
					return
				}
				if c.Want == nil {
					t.Fatalf("case %q has no want; run with -update and review", c.Path)
				}
				if diff := cmp.Diff(c.Want, got, cmpopts.IgnoreFields(Result{}, "Revision", "Seen"), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("Evaluate mismatch (-want +got):\n%s", diff)
				}
				if got.Allow != (len(got.Roles) > 0) {
					t.Errorf("got allow %v with roles %q, want allow exactly when a role is granted", got.Allow, got.Roles)
				}
			})
		}
	}
	if revisions[0] != revisions[1] {
		t.Errorf("got revisions %q (directory) and %q (embedded), want the same content hash", revisions[0], revisions[1])
	}
}

// TestShippedInfo checks what Info reports for the embedded copy: test
// files are not part of the serving policy.
func TestShippedInfo(t *testing.T) {
	e, err := New(Options{FS: policies.FS})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	info := e.Info()
	want := Info{
		Revision: e.Revision(),
		LoadedAt: info.LoadedAt,
		Source:   "embedded",
		Packages: []string{"superset.authz"},
		Files:    []string{"superset/authz.rego", "superset/mappings/data.json"},
	}
	if diff := cmp.Diff(want, info); diff != "" {
		t.Errorf("Info mismatch (-want +got):\n%s", diff)
	}
	if info.LoadedAt.IsZero() {
		t.Errorf("got zero LoadedAt, want the load time")
	}
	// The embedded copy does carry the opa tests, for `opa test` on it.
	if _, err := fs.Stat(policies.FS, "superset/authz_test.rego"); err != nil {
		t.Errorf("embedded copy lacks the opa tests: %v", err)
	}
}
