package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authzd/authzd/policies"
)

// wholeInput returns a copy of the serving revision that ignores the
// policy's input_paths declaration and evaluates with the whole input.
func wholeInput(t testing.TB, e *Engine) *revision {
	t.Helper()
	rev := *e.current.Load()
	rev.reads, rev.results = nil, nil
	return &rev
}

// randomInput draws a person from pools that hit every mapping of the
// shipped data, miss it in every way the policy handles, and carry
// claims and fields that the policy does not read.
func randomInput(r *rand.Rand) Input {
	pick := func(pool []any) any { return pool[r.IntN(len(pool))] }
	groupPool := []string{"Data Engineers", "Analytics Users", "Superset Admins", "data engineers", "/Data Engineers", "Interns", ""}
	values := []any{
		"Finance", "Sales", "Marketing", "", "sales", json.Number("1000"), json.Number("7"), true, false, nil,
		[]any{"Sales", "Finance"}, []any{"Sales", json.Number("7")}, []any{}, map[string]any{"a": "Sales"},
		"x' OR '1'='1",
	}
	claimNames := []string{"department", "custom:department", "team", "custom:team", "cost_center", "custom:cost_center"}
	in := Input{
		Issuer:        pick([]any{"https://idp.example.com/", "https://other.example.com/"}).(string),
		Claims:        map[string]any{"sub": fmt.Sprint("u", r.IntN(1e6)), "email": fmt.Sprint(r.IntN(1e6), "@example.com"), "exp": json.Number(fmt.Sprint(r.IntN(1e9)))},
		GroupsOverage: r.IntN(4) == 0,
		Username:      fmt.Sprint("user", r.IntN(1e6)),
		Context:       map[string]any{"dashboard": float64(r.IntN(9))},
	}
	for range r.IntN(4) {
		in.Groups = append(in.Groups, groupPool[r.IntN(len(groupPool))])
	}
	for _, n := range claimNames {
		if r.IntN(2) == 0 {
			in.Claims[n] = pick(values)
		}
	}
	if r.IntN(5) == 0 {
		in.Claims["groups"] = "Superset Admins"
	}
	return in
}

// TestSharedDeclarationDecidesAlone checks the shipped policy's
// input_paths: for random people, the decision over the declared parts of
// the input is the decision over the whole input, explanation included.
func TestSharedDeclarationDecidesAlone(t *testing.T) {
	e, err := New(Options{FS: policies.FS})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if e.current.Load().results == nil {
		t.Fatalf("shipped policy does not share results: %s", e.current.Load().unshared)
	}
	whole := wholeInput(t, e)
	r := rand.New(rand.NewPCG(1, 2))
	n := 600
	if testing.Short() {
		n = 200
	}
	allowed := 0
	for i := range n {
		in := randomInput(r)
		ctx := context.Background()
		for _, explain := range []bool{false, true} {
			got, err := e.Evaluate(ctx, in, explain)
			if err != nil {
				t.Fatalf("input %d, explain %v: Evaluate: %v", i, explain, err)
			}
			want, err := e.eval(ctx, whole, in, explain)
			if err != nil {
				t.Fatalf("input %d, explain %v: whole input: %v", i, explain, err)
			}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Result{}, "Seen")); diff != "" {
				t.Fatalf("input %d %+v, explain %v: decision over the declared input differs from the whole input's (-want +got):\n%s",
					i, in, explain, diff)
			}
			if got.Allow && !explain {
				allowed++
			}
		}
	}
	if allowed == 0 || allowed == n {
		t.Errorf("got %d of %d allowed, want both outcomes drawn", allowed, n)
	}
}

// sharingEngine serves one policy file from a temporary directory.
func sharingEngine(t *testing.T, rego string, reg prometheus.Registerer) (*Engine, *logBuffer, error) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "test", "authz.rego"), rego)
	logger, logs := newLogger()
	e, err := New(Options{Dir: dir, Package: "test.authz", Logger: logger, Registerer: reg})
	return e, logs, err
}

const sharingPolicy = `package test.authz

default allow := false

allow if count(roles) > 0

roles contains sprintf("Dept %s", [input.claims.department])

# Not declared below: the policy must never see it.
roles contains sprintf("Mail %s", [input.claims.email])

reasons contains sprintf("%d groups", [count(input.groups)])

input_paths contains ["groups"]

input_paths contains ["claims", "department"]
`

func TestSharedResults(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	e, _, err := sharingEngine(t, sharingPolicy, reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := context.Background()
	person := func(sub, dept string, groups ...string) Input {
		return Input{
			Issuer:   "https://idp.example.com/",
			Claims:   map[string]any{"sub": sub, "email": sub + "@example.com", "department": dept},
			Groups:   groups,
			Username: sub,
		}
	}
	alice, err := e.Evaluate(ctx, person("alice", "Sales", "a"), false)
	if err != nil {
		t.Fatalf("Evaluate alice: %v", err)
	}
	if diff := cmp.Diff([]string{"Dept Sales"}, alice.Roles); diff != "" {
		t.Errorf("roles: the policy saw an undeclared claim (-want +got):\n%s", diff)
	}
	bob, err := e.Evaluate(ctx, person("bob", "Sales", "a"), false)
	if err != nil {
		t.Fatalf("Evaluate bob: %v", err)
	}
	if bob != alice {
		t.Errorf("got a new result for bob, want alice's shared one (same groups and department)")
	}
	carol, err := e.Evaluate(ctx, person("carol", "Finance", "a"), false)
	if err != nil {
		t.Fatalf("Evaluate carol: %v", err)
	}
	if diff := cmp.Diff([]string{"Dept Finance"}, carol.Roles); diff != "" {
		t.Errorf("carol's roles (-want +got):\n%s", diff)
	}
	dave, err := e.Evaluate(ctx, person("dave", "Sales", "a", "b"), false)
	if err != nil {
		t.Fatalf("Evaluate dave: %v", err)
	}
	if diff := cmp.Diff([]string{"2 groups"}, dave.Reasons); diff != "" {
		t.Errorf("dave's reasons (-want +got):\n%s", diff)
	}
	explained, err := e.Evaluate(ctx, person("erin", "Sales", "a"), true)
	if err != nil {
		t.Fatalf("Evaluate erin with explanation: %v", err)
	}
	if explained == alice {
		t.Errorf("got the shared result for an explanation, want a fresh evaluation")
	}
	if diff := cmp.Diff(alice.Roles, explained.Roles); diff != "" {
		t.Errorf("explanation's roles differ from the shared decision's (-want +got):\n%s", diff)
	}
	wantSeen := &Input{Claims: map[string]any{"department": "Sales"}, Groups: []string{"a"}, Context: map[string]any{}}
	if diff := cmp.Diff(wantSeen, explained.Seen); diff != "" {
		t.Errorf("explanation's input seen by the policy (-want +got):\n%s", diff)
	}
	for result, want := range map[string]float64{"hit": 1, "miss": 3} {
		c, err := metricCounter(reg, "authzd_policy_shared_results_total", result)
		if err != nil {
			t.Fatal(err)
		}
		if c != want {
			t.Errorf("authzd_policy_shared_results_total{result=%q}: got %v, want %v", result, c, want)
		}
	}
}

func metricCounter(reg *prometheus.Registry, name, result string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue(), nil
				}
			}
		}
	}
	return 0, fmt.Errorf("metric %s{result=%q} not found", name, result)
}

func TestSharingOff(t *testing.T) {
	tests := []struct {
		name string
		rego string
		why  string // in the log line of the load
	}{
		{
			name: "no declaration",
			rego: "package test.authz\n\nallow := true\n",
			why:  "does not declare input_paths",
		},
		{
			name: "clock",
			rego: "package test.authz\n\nallow if time.now_ns() > 0\n\ninput_paths contains [\"groups\"]\n",
			why:  "calls time.now_ns",
		},
		{
			name: "clock in a function",
			rego: "package test.authz\n\nallow if late(1)\n\nlate(x) := time.now_ns() > x\n\ninput_paths contains [\"groups\"]\n",
			why:  "calls time.now_ns",
		},
		{
			name: "randomness",
			rego: "package test.authz\n\nallow if rand.intn(\"k\", 2) >= 0\n\ninput_paths contains [\"groups\"]\n",
			why:  "calls rand.intn",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, logs, err := sharingEngine(t, tt.rego, nil)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			rev := e.current.Load()
			if rev.results != nil {
				t.Fatalf("got shared results, want none")
			}
			in := Input{Groups: []string{"a"}}
			first, err := e.Evaluate(context.Background(), in, false)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			second, err := e.Evaluate(context.Background(), in, false)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if first == second {
				t.Errorf("got one shared result for two evaluations, want two")
			}
			infos := logs.records(t, "INFO")
			if len(infos) == 0 {
				t.Fatalf("no INFO log line for the load")
			}
			if got, _ := infos[0]["not_shared_because"].(string); !strings.Contains(got, tt.why) {
				t.Errorf("not_shared_because: got %q, want it to contain %q", got, tt.why)
			}
		})
	}
}

func TestInputPathsRefused(t *testing.T) {
	tests := []struct {
		name  string
		paths string
		want  string
	}{
		{"not a collection", `input_paths := "groups"`, "want a set of paths"},
		{"not an array", `input_paths contains "groups"`, "want an array of one or two strings"},
		{"number in a path", `input_paths contains ["claims", 1]`, "want an array of one or two strings"},
		{"too long", `input_paths contains ["claims", "a", "b"]`, "want an array of one or two strings"},
		{"empty", `input_paths contains []`, "want an array of one or two strings"},
		{"unknown field", `input_paths contains ["roles"]`, `"roles" is not a field of the input`},
		{"part of a scalar field", `input_paths contains ["groups", "x"]`, "only claims and context have parts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := sharingEngine(t, "package test.authz\n\nallow := true\n\n"+tt.paths+"\n", nil)
			if err == nil {
				t.Fatalf("New: got no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), InputPathsRule) {
				t.Errorf("New: got %v, want it to name rule %q and contain %q", err, InputPathsRule, tt.want)
			}
		})
	}
}

func TestSharedKey(t *testing.T) {
	all := &readSet{issuer: true, groups: true, overage: true, username: true, allClaims: true, allContext: true}
	some := &readSet{groups: true, claims: []string{"department", "team"}}
	tests := []struct {
		name  string
		reads *readSet
		a, b  Input
		same  bool
	}{
		{"undeclared claims do not matter", some,
			Input{Claims: map[string]any{"department": "Sales", "sub": "a"}, Username: "a"},
			Input{Claims: map[string]any{"department": "Sales", "sub": "b"}, Username: "b"}, true},
		{"declared claim value", some,
			Input{Claims: map[string]any{"department": "Sales"}},
			Input{Claims: map[string]any{"department": "Finance"}}, false},
		{"string against array", some,
			Input{Claims: map[string]any{"department": "Sales"}},
			Input{Claims: map[string]any{"department": []any{"Sales"}}}, false},
		{"number against string", some,
			Input{Claims: map[string]any{"department": json.Number("1")}},
			Input{Claims: map[string]any{"department": "1"}}, false},
		{"absent against null", some,
			Input{Claims: map[string]any{}},
			Input{Claims: map[string]any{"department": nil}}, false},
		{"claim values do not run together", some,
			Input{Claims: map[string]any{"department": "ab", "team": ""}},
			Input{Claims: map[string]any{"department": "a", "team": "b"}}, false},
		{"groups do not run together", some,
			Input{Groups: []string{"a", "b"}},
			Input{Groups: []string{"ab"}}, false},
		{"group order matters", some,
			Input{Groups: []string{"a", "b"}},
			Input{Groups: []string{"b", "a"}}, false},
		{"whole claims, key order does not matter", all,
			Input{Claims: map[string]any{"a": "1", "b": map[string]any{"x": true, "y": false}}},
			Input{Claims: map[string]any{"b": map[string]any{"y": false, "x": true}, "a": "1"}}, true},
		{"whole claims, nested value", all,
			Input{Claims: map[string]any{"b": map[string]any{"x": true}}},
			Input{Claims: map[string]any{"b": map[string]any{"x": false}}}, false},
		{"object key against string", all,
			Input{Claims: map[string]any{"a": map[string]any{"b": "c"}}},
			Input{Claims: map[string]any{"a": []any{"b", "c"}}}, false},
		{"issuer", all, Input{Issuer: "a"}, Input{Issuer: "b"}, false},
		{"username", all, Input{Username: "a"}, Input{Username: "b"}, false},
		{"overage", all, Input{GroupsOverage: true}, Input{}, false},
		{"context", all,
			Input{Context: map[string]any{"d": float64(1)}},
			Input{Context: map[string]any{"d": float64(2)}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, okA := tt.reads.key(&tt.a)
			kb, okB := tt.reads.key(&tt.b)
			if !okA || !okB {
				t.Fatalf("key: got ok %v, %v, want both", okA, okB)
			}
			if got := ka == kb; got != tt.same {
				t.Errorf("same key: got %v, want %v", got, tt.same)
			}
		})
	}
	if _, ok := all.key(&Input{Claims: map[string]any{"a": struct{}{}}}); ok {
		t.Errorf("key of a value of unknown type: got ok, want not keyed")
	}
}

// TestSharedResultsMetricsExist checks that both series exist from the
// first lookup on, for dashboards.
func TestSharedResultsMetricsExist(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if _, _, err := sharingEngine(t, sharingPolicy, reg); err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, result := range []string{"hit", "miss"} {
		if c, err := metricCounter(reg, "authzd_policy_shared_results_total", result); err != nil || c != 0 {
			t.Errorf("authzd_policy_shared_results_total{result=%q}: got %v, %v; want 0", result, c, err)
		}
	}
}
