package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/authzd/authzd/policies"
)

// benchInput reads testdata/bench/input.json, the input that `opa bench`
// gets in the comparison of docs/policy.md.
func benchInput(b *testing.B) Input {
	b.Helper()
	data, err := os.ReadFile("testdata/bench/input.json")
	if err != nil {
		b.Fatalf("read input: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var in Input
	if err := dec.Decode(&in); err != nil {
		b.Fatalf("decode input: %v", err)
	}
	return in
}

// BenchmarkEvaluateShipped measures one decision of the shipped policy
// through the engine: input conversion, the prepared query, and the strict
// reading of the result.
func BenchmarkEvaluateShipped(b *testing.B) {
	e, err := New(Options{FS: policies.FS, ResultCacheSize: -1})
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	shared, err := New(Options{FS: policies.FS})
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	in := benchInput(b)
	ctx := context.Background()
	for _, bc := range []struct {
		name    string
		e       *Engine
		explain bool
	}{
		{"decide", e, false},
		{"explain", e, true},
		// The result found among those shared by people with the same
		// groups and mapped claims.
		{"decide_shared", shared, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := bc.e.Evaluate(ctx, in, bc.explain)
				if err != nil || !res.Allow {
					b.Fatalf("Evaluate: %+v, %v", res, err)
				}
			}
		})
	}
	// The prepared query alone, as `opa bench` runs it.
	b.Run("query_only", func(b *testing.B) {
		rev := e.current.Load()
		input, err := inputValue(in, nil)
		if err != nil {
			b.Fatalf("inputValue: %v", err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rev.decide.Eval(ctx, rego.EvalParsedInput(input)); err != nil {
				b.Fatalf("Eval: %v", err)
			}
		}
	})
}

// BenchmarkInputConversion compares building the input as an AST value
// directly with OPA's generic conversion, which encodes a struct to JSON
// and decodes it back.
func BenchmarkInputConversion(b *testing.B) {
	in := benchInput(b)
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := inputValue(in, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json_round_trip", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ast.InterfaceToValue(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestBenchQueryMatchesEngine keeps testdata/bench/query.rego, the query
// that `opa bench` runs in the comparison, equal to the engine's query.
func TestBenchQueryMatchesEngine(t *testing.T) {
	data, err := os.ReadFile("testdata/bench/query.rego")
	if err != nil {
		t.Fatalf("read query: %v", err)
	}
	got, err := ast.ParseBody(string(data))
	if err != nil {
		t.Fatalf("parse query: %v", err)
	}
	pkg, err := pkgRef(DefaultPackage)
	if err != nil {
		t.Fatalf("pkgRef: %v", err)
	}
	if want := buildQuery(pkg, ruleNames); !got.Equal(want) {
		t.Errorf("got bench query %v, want the engine's %v", got, want)
	}
}
