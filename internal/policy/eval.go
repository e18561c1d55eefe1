package policy

import (
	"context"
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

// eval evaluates one revision for one input and checks the types of every
// rule.
func (e *Engine) eval(ctx context.Context, rev *revision, in Input, explain bool) (*Result, error) {
	pq := rev.decide
	if explain {
		pq = rev.explain
	}
	input, err := inputValue(in)
	if err != nil {
		return nil, err
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
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
		v, ok := allow.(bool)
		if !ok {
			return nil, typeErr("allow", "got %s, want a boolean", typeName(allow))
		}
		res.Allow = v
	}
	if res.Roles, err = strings_(b, "roles"); err != nil {
		return nil, err
	}
	if res.Reasons, err = strings_(b, "reasons"); err != nil {
		return nil, err
	}
	if res.Filters, err = filters(b); err != nil {
		return nil, err
	}
	if explain {
		m, err := single(b, "matches")
		if err != nil {
			return nil, err
		}
		if m != nil {
			items, ok := m.([]any)
			if !ok {
				return nil, typeErr("matches", "got %s, want a set of objects", typeName(m))
			}
			for i, it := range items {
				obj, ok := it.(map[string]any)
				if !ok {
					return nil, typeErr("matches", "element %d: got %s, want an object", i, typeName(it))
				}
				res.Matches = append(res.Matches, obj)
			}
		}
	}
	return res, nil
}

// single returns the value of a rule from its comprehension binding, or nil
// when the rule is undefined.
func single(b rego.Vars, rule string) (any, error) {
	arr, ok := b[rule].([]any)
	if !ok {
		return nil, typeErr(rule, "missing from the result")
	}
	switch len(arr) {
	case 0:
		return nil, nil
	case 1:
		return arr[0], nil
	}
	// A conflict already fails evaluation; this is a safety net.
	return nil, typeErr(rule, "%d values", len(arr))
}

// strings_ reads a rule that must be a set (or array) of strings, sorted
// and deduplicated.
func strings_(b rego.Vars, rule string) ([]string, error) {
	v, err := single(b, rule)
	if err != nil || v == nil {
		return []string{}, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, typeErr(rule, "got %s, want a set of strings", typeName(v))
	}
	out := make([]string, 0, len(arr))
	for i, x := range arr {
		s, ok := x.(string)
		if !ok {
			return nil, typeErr(rule, "element %d: got %s, want a string", i, typeName(x))
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
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
	arr, ok := v.([]any)
	if !ok {
		return nil, typeErr(rule, "got %s, want a set of objects", typeName(v))
	}
	out := make([]rls.Filter, 0, len(arr))
	for i, x := range arr {
		f, err := parseFilter(x)
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

func parseFilter(x any) (rls.Filter, error) {
	var f rls.Filter
	obj, ok := x.(map[string]any)
	if !ok {
		return f, fmt.Errorf("got %s, want an object", typeName(x))
	}
	for k := range obj {
		if !filterKeys[k] {
			return f, fmt.Errorf("unknown key %q", k)
		}
	}
	str := func(key string, required bool) (string, error) {
		v, ok := obj[key]
		if !ok {
			if required {
				return "", fmt.Errorf("key %q missing", key)
			}
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("key %q: got %s, want a string", key, typeName(v))
		}
		return s, nil
	}
	var err error
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

	tables, ok := obj["tables"]
	if !ok {
		return f, errors.New("key \"tables\" missing")
	}
	tarr, ok := tables.([]any)
	if !ok {
		return f, fmt.Errorf("key \"tables\": got %s, want an array of strings", typeName(tables))
	}
	f.Tables = make([]string, 0, len(tarr))
	for i, t := range tarr {
		s, ok := t.(string)
		if !ok {
			return f, fmt.Errorf("key \"tables\" element %d: got %s, want a string", i, typeName(t))
		}
		f.Tables = append(f.Tables, s)
	}

	values, ok := obj["values"]
	if !ok {
		return f, errors.New("key \"values\" missing")
	}
	varr, ok := values.([]any)
	if !ok {
		return f, fmt.Errorf("key \"values\": got %s, want an array", typeName(values))
	}
	f.Values = make([]any, 0, len(varr))
	for i, v := range varr {
		switch v.(type) {
		case string, bool, json.Number:
		default:
			return f, fmt.Errorf("key \"values\" element %d: got %s, want a string, number or boolean", i, typeName(v))
		}
		f.Values = append(f.Values, v)
	}
	return f, nil
}

// typeName names the Rego type of a value converted to Go.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		return "number"
	case []any:
		return "array or set"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// inputValue builds the policy input as an AST value directly, which is
// cheaper than encoding the struct to JSON and parsing it back.
func inputValue(in Input) (ast.Value, error) {
	claims, err := anyTerm(in.Claims)
	if err != nil {
		return nil, fmt.Errorf("convert claims to policy input: %w", err)
	}
	reqCtx, err := anyTerm(in.Context)
	if err != nil {
		return nil, fmt.Errorf("convert context to policy input: %w", err)
	}
	groups := make([]*ast.Term, len(in.Groups))
	for i, g := range in.Groups {
		groups[i] = ast.StringTerm(g)
	}
	return ast.NewObject(
		ast.Item(ast.InternedTerm("issuer"), ast.StringTerm(in.Issuer)),
		ast.Item(ast.InternedTerm("claims"), claims),
		ast.Item(ast.InternedTerm("groups"), ast.ArrayTerm(groups...)),
		ast.Item(ast.InternedTerm("groups_overage"), ast.InternedTerm(in.GroupsOverage)),
		ast.Item(ast.InternedTerm("username"), ast.StringTerm(in.Username)),
		ast.Item(ast.InternedTerm("context"), reqCtx),
	), nil
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
