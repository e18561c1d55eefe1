package policy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/authzd/authzd/internal/rls"
)

// ruleError is an error about one rule of the contract.
type ruleError struct {
	rule string
	err  error
}

func (e *ruleError) Error() string { return fmt.Sprintf("rule %q: %v", e.rule, e.err) }

func (e *ruleError) Unwrap() error { return e.err }

func typeErr(rule, format string, args ...any) error {
	return &ruleError{rule: rule, err: fmt.Errorf(format, args...)}
}

// asTerm keeps the query's results as AST terms, so that they are read
// with their exact Rego types and without a conversion to Go values first.
var asTerm = rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil })

// eval evaluates one revision for one input. A policy that declares the
// input it reads sees only that part, and its results are shared by
// everyone whose part is equal (except explanations, always evaluated).
func (e *Engine) eval(ctx context.Context, rev *revision, in Input, explain bool) (*Result, error) {
	if rev.reads == nil {
		input, err := inputValue(in, nil)
		if err != nil {
			return nil, err
		}
		res, err := e.evalValue(ctx, rev, input, explain)
		if err == nil && explain {
			res.Seen = &in
		}
		return res, err
	}
	var (
		key   [sha256.Size]byte
		keyed bool
	)
	if rev.results != nil && !explain {
		if key, keyed = rev.reads.key(&in); keyed {
			if res, ok := rev.results.Get(key); ok {
				e.metrics.shared(true)
				return res, nil
			}
			e.metrics.shared(false)
		}
	}
	input, err := inputValue(in, rev.reads)
	if err != nil {
		return nil, err
	}
	res, err := e.evalValue(ctx, rev, input, explain)
	switch {
	case err != nil:
	case explain:
		seen := rev.reads.project(in)
		res.Seen = &seen
	case keyed:
		rev.results.Add(key, res)
	}
	return res, err
}

// evalValue evaluates one revision for one input value, within the
// evaluation timeout, and checks the types of every rule.
func (e *Engine) evalValue(ctx context.Context, rev *revision, input ast.Value, explain bool) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.EvalTimeout)
	defer cancel()
	pq := rev.decide
	if explain {
		pq = rev.explain
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input), asTerm)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("evaluate policy: %w: %w", ctxErr, err)
		}
		return nil, fmt.Errorf("evaluate policy: %w", err)
	}
	if len(rs) != 1 {
		// The comprehensions make the query always defined; anything else
		// is a bug worth failing closed on.
		return nil, fmt.Errorf("evaluate policy: %d results, want 1", len(rs))
	}
	b := rs[0].Bindings
	res := &Result{Revision: rev.id}

	allow, err := single(b, "allow")
	if err != nil {
		return nil, err
	}
	if allow != nil {
		v, ok := allow.(ast.Boolean)
		if !ok {
			return nil, typeErr("allow", "got %s, want a boolean", typeName(allow))
		}
		res.Allow = bool(v)
	}
	if res.Roles, err = stringSet(b, "roles"); err != nil {
		return nil, err
	}
	if res.Reasons, err = stringSet(b, "reasons"); err != nil {
		return nil, err
	}
	if res.Filters, err = filters(b); err != nil {
		return nil, err
	}
	if explain {
		if res.Matches, err = matches(b); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// single returns the value of a rule from its comprehension binding, or nil
// when the rule is undefined.
func single(b rego.Vars, rule string) (ast.Value, error) {
	t, ok := b[rule].(*ast.Term)
	if !ok {
		return nil, typeErr(rule, "missing from the result")
	}
	arr, ok := t.Value.(*ast.Array)
	if !ok {
		return nil, typeErr(rule, "got %s from its comprehension", typeName(t.Value))
	}
	switch arr.Len() {
	case 0:
		return nil, nil
	case 1:
		return arr.Elem(0).Value, nil
	}
	// A conflict already fails evaluation; this is a safety net.
	return nil, typeErr(rule, "%d values", arr.Len())
}

// elems returns the elements of a set or an array.
func elems(v ast.Value) ([]*ast.Term, bool) {
	switch c := v.(type) {
	case ast.Set:
		return c.Slice(), true
	case *ast.Array:
		out := make([]*ast.Term, c.Len())
		for i := range out {
			out[i] = c.Elem(i)
		}
		return out, true
	}
	return nil, false
}

// stringSet reads a rule that must be a set (or array) of strings, sorted
// and deduplicated.
func stringSet(b rego.Vars, rule string) ([]string, error) {
	v, err := single(b, rule)
	if err != nil || v == nil {
		return []string{}, err
	}
	items, ok := elems(v)
	if !ok {
		return nil, typeErr(rule, "got %s, want a set of strings", typeName(v))
	}
	out := make([]string, 0, len(items))
	for i, x := range items {
		s, ok := x.Value.(ast.String)
		if !ok {
			return nil, typeErr(rule, "element %d: got %s, want a string", i, typeName(x.Value))
		}
		out = append(out, string(s))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// matches reads the optional explanation rule: a set of objects.
func matches(b rego.Vars) ([]map[string]any, error) {
	const rule = "matches"
	v, err := single(b, rule)
	if err != nil || v == nil {
		return nil, err
	}
	items, ok := elems(v)
	if !ok {
		return nil, typeErr(rule, "got %s, want a set of objects", typeName(v))
	}
	out := make([]map[string]any, 0, len(items))
	for i, it := range items {
		if _, ok := it.Value.(ast.Object); !ok {
			return nil, typeErr(rule, "element %d: got %s, want an object", i, typeName(it.Value))
		}
		// Numbers stay json.Number, as in filters.
		x, err := ast.ValueToInterface(it.Value, nil)
		if err != nil {
			return nil, typeErr(rule, "element %d: %v", i, err)
		}
		obj, ok := x.(map[string]any)
		if !ok {
			return nil, typeErr(rule, "element %d: got %T, want an object", i, x)
		}
		out = append(out, obj)
	}
	return out, nil
}

// filterKeys are the keys a filter object may have.
var filterKeys = map[string]bool{
	"name": true, "tables": true, "column": true, "operator": true,
	"values": true, "group_key": true, "filter_type": true,
}

// filters reads rls_filters: a set (or array) of filter objects with exactly
// the contract's keys and types.
func filters(b rego.Vars) ([]rls.Filter, error) {
	const rule = "rls_filters"
	v, err := single(b, rule)
	if err != nil || v == nil {
		return []rls.Filter{}, err
	}
	items, ok := elems(v)
	if !ok {
		return nil, typeErr(rule, "got %s, want a set of objects", typeName(v))
	}
	out := make([]rls.Filter, 0, len(items))
	for i, x := range items {
		f, err := parseFilter(x.Value)
		if err != nil {
			return nil, &ruleError{rule: rule, err: fmt.Errorf("element %d: %w", i, err)}
		}
		out = append(out, f)
	}
	slices.SortStableFunc(out, func(a, b rls.Filter) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return slices.Compare(a.Tables, b.Tables)
	})
	return out, nil
}

func parseFilter(x ast.Value) (rls.Filter, error) {
	var f rls.Filter
	obj, ok := x.(ast.Object)
	if !ok {
		return f, fmt.Errorf("got %s, want an object", typeName(x))
	}
	var err error
	obj.Until(func(k, _ *ast.Term) bool {
		ks, ok := k.Value.(ast.String)
		if !ok || !filterKeys[string(ks)] {
			err = fmt.Errorf("unknown key %v", k)
			return true
		}
		return false
	})
	if err != nil {
		return f, err
	}
	str := func(key string, required bool) (string, error) {
		t := obj.Get(ast.InternedTerm(key))
		if t == nil {
			if required {
				return "", fmt.Errorf("key %q missing", key)
			}
			return "", nil
		}
		s, ok := t.Value.(ast.String)
		if !ok {
			return "", fmt.Errorf("key %q: got %s, want a string", key, typeName(t.Value))
		}
		return string(s), nil
	}
	if f.Name, err = str("name", true); err != nil {
		return f, err
	}
	if f.Column, err = str("column", true); err != nil {
		return f, err
	}
	op, err := str("operator", false)
	if err != nil {
		return f, err
	}
	switch rls.Operator(op) {
	case "", rls.OpIn, rls.OpNotIn:
		f.Operator = rls.Operator(op)
	default:
		return f, fmt.Errorf("key \"operator\": got %q, want %q or %q", op, rls.OpIn, rls.OpNotIn)
	}
	if f.GroupKey, err = str("group_key", false); err != nil {
		return f, err
	}
	if f.FilterType, err = str("filter_type", false); err != nil {
		return f, err
	}

	tables := obj.Get(ast.InternedTerm("tables"))
	if tables == nil {
		return f, errors.New("key \"tables\" missing")
	}
	titems, ok := elems(tables.Value)
	if !ok {
		return f, fmt.Errorf("key \"tables\": got %s, want an array of strings", typeName(tables.Value))
	}
	f.Tables = make([]string, 0, len(titems))
	for i, t := range titems {
		s, ok := t.Value.(ast.String)
		if !ok {
			return f, fmt.Errorf("key \"tables\" element %d: got %s, want a string", i, typeName(t.Value))
		}
		f.Tables = append(f.Tables, string(s))
	}

	values := obj.Get(ast.InternedTerm("values"))
	if values == nil {
		return f, errors.New("key \"values\" missing")
	}
	// A set of values is as good as an array; its order is Rego's.
	vitems, ok := elems(values.Value)
	if !ok {
		return f, fmt.Errorf("key \"values\": got %s, want an array", typeName(values.Value))
	}
	f.Values = make([]any, 0, len(vitems))
	for i, v := range vitems {
		switch x := v.Value.(type) {
		case ast.String:
			f.Values = append(f.Values, string(x))
		case ast.Boolean:
			f.Values = append(f.Values, bool(x))
		case ast.Number:
			f.Values = append(f.Values, json.Number(x))
		default:
			return f, fmt.Errorf("key \"values\" element %d: got %s, want a string, number or boolean", i, typeName(v.Value))
		}
	}
	return f, nil
}

// typeName names the Rego type of a value.
func typeName(v ast.Value) string {
	if v == nil {
		return "nothing"
	}
	return ast.ValueName(v)
}

// inputValue builds the policy input as an AST value directly, which is
// cheaper than encoding the struct to JSON and parsing it back. With a
// declaration r, only the declared parts are there; claims and context
// are always objects, possibly empty.
func inputValue(in Input, r *readSet) (ast.Value, error) {
	if r != nil {
		in = r.project(in)
	}
	claims, err := anyTerm(in.Claims)
	if err != nil {
		return nil, fmt.Errorf("convert claims to policy input: %w", err)
	}
	reqCtx, err := anyTerm(in.Context)
	if err != nil {
		return nil, fmt.Errorf("convert context to policy input: %w", err)
	}
	items := make([][2]*ast.Term, 0, 6)
	items = append(items,
		ast.Item(ast.InternedTerm("claims"), claims),
		ast.Item(ast.InternedTerm("context"), reqCtx))
	if r == nil || r.issuer {
		items = append(items, ast.Item(ast.InternedTerm("issuer"), ast.StringTerm(in.Issuer)))
	}
	if r == nil || r.groups {
		groups := make([]*ast.Term, len(in.Groups))
		for i, g := range in.Groups {
			groups[i] = ast.StringTerm(g)
		}
		items = append(items, ast.Item(ast.InternedTerm("groups"), ast.ArrayTerm(groups...)))
	}
	if r == nil || r.overage {
		items = append(items, ast.Item(ast.InternedTerm("groups_overage"), ast.InternedTerm(in.GroupsOverage)))
	}
	if r == nil || r.username {
		items = append(items, ast.Item(ast.InternedTerm("username"), ast.StringTerm(in.Username)))
	}
	return ast.NewObject(items...), nil
}

// anyTerm converts a decoded JSON map to a term; a nil map becomes {}.
func anyTerm(m map[string]any) (*ast.Term, error) {
	if m == nil {
		return ast.ObjectTerm(), nil
	}
	v, err := ast.InterfaceToValue(m)
	if err != nil {
		return nil, err
	}
	return ast.NewTerm(v), nil
}
