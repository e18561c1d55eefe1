package policy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// Sharing results between people.
//
// A policy may declare, with the rule input_paths, the parts of the input
// it reads. The engine then evaluates it with only those parts (so that it
// cannot depend on anything else, whatever the declaration forgot) and
// keeps each result for the revision, keyed by those parts: everyone with
// the same groups and the same mapped claims gets the same, already
// computed, answer. The declaration is evaluated once per revision,
// without input. A policy that calls a built-in whose result can change
// between two evaluations with the same input (the clock, randomness,
// HTTP, DNS) never shares.

// InputPathsRule is the optional rule by which a policy declares the parts
// of the input it reads: a set of paths, each ["issuer"], ["claims"],
// ["claims", name], ["groups"], ["groups_overage"], ["username"],
// ["context"] or ["context", key].
const InputPathsRule = "input_paths"

// DefaultResultCacheSize is the number of shared results kept per revision
// when Options.ResultCacheSize is zero.
const DefaultResultCacheSize = 10000

// readSet is a policy's input_paths declaration.
type readSet struct {
	issuer, groups, overage, username bool
	allClaims, allContext             bool
	claims, context                   []string // sorted, without duplicates
}

// changingBuiltins read the clock or the world without saying so in
// their OPA declaration; with the declared nondeterministic ones, they
// keep a policy from sharing results.
var changingBuiltins = map[string]bool{
	"time.now_ns":          true,
	"io.jwt.decode_verify": true,
	"crypto.x509.parse_and_verify_certificates":              true,
	"crypto.x509.parse_and_verify_certificates_with_options": true,
}

// changingCall returns the name of a built-in called by the compiled
// policy whose result can change between evaluations with the same input,
// or "" when there is none. Calls to functions that are not built-ins are
// the policy's own, whose bodies are walked too.
func changingCall(c *ast.Compiler) string {
	var found string
	check := func(op ast.Ref) {
		name := op.String()
		b, ok := ast.BuiltinMap[name]
		if !ok {
			return
		}
		if b.IsNondeterministic() || changingBuiltins[name] {
			if found == "" || name < found {
				found = name
			}
		}
	}
	for _, m := range c.Modules {
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if e.IsCall() {
				check(e.Operator())
			}
			return false
		})
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if call, ok := t.Value.(ast.Call); ok && len(call) > 0 {
				if op, ok := call[0].Value.(ast.Ref); ok {
					check(op)
				}
			}
			return false
		})
	}
	return found
}

// readDeclaration evaluates the package's input_paths rule without input.
// It returns nil when the rule is not defined.
func readDeclaration(ctx context.Context, c *ast.Compiler, store storage.Store, pkg ast.Ref) (*readSet, error) {
	if len(c.GetRulesExact(pkg.Append(ast.StringTerm(InputPathsRule)))) == 0 {
		return nil, nil
	}
	x := ast.VarTerm("x")
	pq, err := rego.New(
		rego.ParsedQuery(ast.NewBody(ast.Equality.Expr(x, ast.NewTerm(pkg.Append(ast.StringTerm(InputPathsRule)))))),
		rego.Compiler(c),
		rego.Store(store),
		rego.StoreReadAST(true),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, &ruleError{rule: InputPathsRule, err: fmt.Errorf("prepare: %w", err)}
	}
	rs, err := pq.Eval(ctx, asTerm)
	if err != nil {
		return nil, &ruleError{rule: InputPathsRule, err: fmt.Errorf("evaluate without input: %w", err)}
	}
	if len(rs) == 0 {
		return nil, nil
	}
	t, ok := rs[0].Bindings["x"].(*ast.Term)
	if !ok {
		return nil, typeErr(InputPathsRule, "missing from the result")
	}
	items, ok := elems(t.Value)
	if !ok {
		return nil, typeErr(InputPathsRule, "got %s, want a set of paths", typeName(t.Value))
	}
	r := &readSet{}
	for i, it := range items {
		arr, ok := it.Value.(*ast.Array)
		if !ok || arr.Len() < 1 || arr.Len() > 2 {
			return nil, typeErr(InputPathsRule, "element %d: got %v, want an array of one or two strings", i, it)
		}
		var p [2]string
		for j := range arr.Len() {
			s, ok := arr.Elem(j).Value.(ast.String)
			if !ok {
				return nil, typeErr(InputPathsRule, "element %d: got %v, want an array of one or two strings", i, it)
			}
			p[j] = string(s)
		}
		field := p[0]
		if arr.Len() == 2 {
			switch field {
			case "claims":
				r.claims = append(r.claims, p[1])
			case "context":
				r.context = append(r.context, p[1])
			default:
				return nil, typeErr(InputPathsRule, "element %d: %v: only claims and context have parts", i, it)
			}
			continue
		}
		switch field {
		case "issuer":
			r.issuer = true
		case "claims":
			r.allClaims = true
		case "groups":
			r.groups = true
		case "groups_overage":
			r.overage = true
		case "username":
			r.username = true
		case "context":
			r.allContext = true
		default:
			return nil, typeErr(InputPathsRule, "element %d: %v: %q is not a field of the input", i, it, field)
		}
	}
	slices.Sort(r.claims)
	r.claims = slices.Compact(r.claims)
	slices.Sort(r.context)
	r.context = slices.Compact(r.context)
	return r, nil
}

// keyBufs holds buffers for the canonical form of the parts read, so that
// a shared result is found without allocating.
var keyBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 512)
	return &b
}}

// key returns the SHA-256 of the canonical form of the parts of in that
// the policy reads. ok is false when a value has a type without a
// canonical form here; the caller then evaluates without sharing.
func (r *readSet) key(in *Input) (k [sha256.Size]byte, ok bool) {
	bp := keyBufs.Get().(*[]byte)
	b := (*bp)[:0]
	defer func() {
		*bp = b[:0]
		keyBufs.Put(bp)
	}()
	ok = true
	if r.issuer {
		b = appendString(append(b, 'i'), in.Issuer)
	}
	if r.groups {
		b = binary.AppendUvarint(append(b, 'g'), uint64(len(in.Groups)))
		for _, g := range in.Groups {
			b = appendString(b, g)
		}
	}
	if r.overage {
		b = append(b, 'o', boolByte(in.GroupsOverage))
	}
	if r.username {
		b = appendString(append(b, 'u'), in.Username)
	}
	b, ok = appendPart(append(b, 'c'), in.Claims, r.allClaims, r.claims)
	if !ok {
		return k, false
	}
	b, ok = appendPart(append(b, 'x'), in.Context, r.allContext, r.context)
	if !ok {
		return k, false
	}
	return sha256.Sum256(b), true
}

// appendPart appends the whole of m or its named keys, each marked present
// or absent.
func appendPart(b []byte, m map[string]any, all bool, names []string) ([]byte, bool) {
	if all {
		return appendValue(b, m)
	}
	for _, n := range names {
		v, present := m[n]
		if !present {
			b = append(b, 0)
			continue
		}
		var ok bool
		if b, ok = appendValue(append(b, 1), v); !ok {
			return b, false
		}
	}
	return b, true
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendValue appends a self-delimiting, type-tagged form of a decoded
// JSON value; equal forms mean equal values. A map's keys are sorted.
func appendValue(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(b, 'n'), true
	case bool:
		return append(b, 'b', boolByte(x)), true
	case string:
		return appendString(append(b, 's'), x), true
	case json.Number:
		return appendString(append(b, 'N'), string(x)), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return b, false
		}
		return appendString(append(b, 'N'), strconv.FormatFloat(x, 'g', -1, 64)), true
	case []any:
		b = binary.AppendUvarint(append(b, 'a'), uint64(len(x)))
		for _, e := range x {
			var ok bool
			if b, ok = appendValue(b, e); !ok {
				return b, false
			}
		}
		return b, true
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = binary.AppendUvarint(append(b, 'o'), uint64(len(x)))
		for _, k := range keys {
			var ok bool
			if b, ok = appendValue(appendString(b, k), x[k]); !ok {
				return b, false
			}
		}
		return b, true
	}
	return b, false
}

// project returns the input as the policy sees it: only the declared
// parts.
func (r *readSet) project(in Input) Input {
	out := Input{}
	if r.issuer {
		out.Issuer = in.Issuer
	}
	if r.groups {
		out.Groups = in.Groups
	}
	if r.overage {
		out.GroupsOverage = in.GroupsOverage
	}
	if r.username {
		out.Username = in.Username
	}
	out.Claims = pick(in.Claims, r.allClaims, r.claims)
	out.Context = pick(in.Context, r.allContext, r.context)
	return out
}

func pick(m map[string]any, all bool, names []string) map[string]any {
	if all {
		return m
	}
	out := make(map[string]any, len(names))
	for _, n := range names {
		if v, ok := m[n]; ok {
			out[n] = v
		}
	}
	return out
}

// sharingAttrs describes for the load log line whether the revision shares
// results, and why not.
func (rev *revision) sharingAttrs() []any {
	if rev.results != nil {
		return []any{"shared_results", true}
	}
	return []any{"shared_results", false, "not_shared_because", rev.unshared}
}
