package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/authzd/authzd/policies"
)

// FuzzEvaluateShipped feeds arbitrary claims and groups to the shipped
// policy. Claims are verified but their content is anyone's: whatever they
// hold, the policy must decide without error, decide over its declared
// input as over the whole input, allow exactly when it grants a role, give
// each filter values of one kind, and leave no governed table without a
// filter unless an exempt role is granted.
func FuzzEvaluateShipped(f *testing.F) {
	e, err := New(Options{FS: policies.FS})
	if err != nil {
		f.Fatalf("New: %v", err)
	}
	seeds := []struct {
		claims  string
		group   string
		overage bool
	}{
		{`{}`, "", false},
		{`{"department": "Finance", "custom:team": "payments"}`, "Data Engineers", false},
		{`{"department": ["Sales", 7, true, null, {"a": 1}, ""]}`, "Analytics Users", false},
		{`{"cost_center": 1000, "team": 1.5e300}`, "Superset Admins", false},
		{`{"department": "x' OR '1'='1", "team": "{{ 7*7 }}"}`, "data engineers", true},
		{`{"custom:department": {"nested": ["Finance"]}, "groups": "Superset Admins"}`, "/Data Engineers", false},
		{`{"department": "\u0000\ud800"}`, "Data Engineers\u0000", false},
	}
	for _, s := range seeds {
		f.Add([]byte(s.claims), s.group, s.overage)
	}
	governed := []string{"sales", "finance.revenue"}
	f.Fuzz(func(t *testing.T, claimsJSON []byte, group string, overage bool) {
		dec := json.NewDecoder(bytes.NewReader(claimsJSON))
		dec.UseNumber()
		var claims map[string]any
		if err := dec.Decode(&claims); err != nil {
			t.Skip("not a JSON object")
		}
		in := Input{Claims: claims, Groups: []string{group}, GroupsOverage: overage}
		res, err := e.Evaluate(context.Background(), in, true)
		if err != nil {
			t.Fatalf("Evaluate(%s, %q): %v", claimsJSON, group, err)
		}
		// The decision over the declared input (input_paths), perhaps a
		// shared one, is the decision over the whole input.
		shared, err := e.Evaluate(context.Background(), in, false)
		if err != nil {
			t.Fatalf("Evaluate(%s, %q) without explanation: %v", claimsJSON, group, err)
		}
		whole, err := e.eval(context.Background(), wholeInput(t, e), in, false)
		if err != nil {
			t.Fatalf("Evaluate(%s, %q) over the whole input: %v", claimsJSON, group, err)
		}
		if diff := cmp.Diff(whole, shared); diff != "" {
			t.Errorf("decision over the declared input differs from the whole input's (-want +got):\n%s", diff)
		}
		if res.Allow != (len(res.Roles) > 0) {
			t.Errorf("got allow %v with roles %q, want allow exactly when a role is granted", res.Allow, res.Roles)
		}
		for _, fl := range res.Filters {
			for _, v := range fl.Values {
				if fmt.Sprintf("%T", v) != fmt.Sprintf("%T", fl.Values[0]) {
					t.Errorf("got filter %q values %v of mixed kinds, want one kind", fl.Name, fl.Values)
					break
				}
			}
		}
		if slices.Contains(res.Roles, "Admin") {
			return
		}
		for _, table := range governed {
			covered := false
			for _, fl := range res.Filters {
				covered = covered || slices.Contains(fl.Tables, table)
			}
			if !covered {
				t.Errorf("got no filter on governed table %q for claims %s, want one", table, claimsJSON)
			}
		}
	})
}
