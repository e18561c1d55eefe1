package rls_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/authzd/authzd/internal/rls"
)

var dialects = []rls.Dialect{rls.PostgreSQL, rls.MySQL, rls.SQLite}

func TestRenderClauses(t *testing.T) {
	tests := []struct {
		name    string
		dialect rls.Dialect
		filter  rls.Filter
		want    string
	}{
		{
			name:    "one plain string",
			dialect: rls.PostgreSQL,
			filter:  rls.Filter{Column: "department", Values: []any{"Finance"}},
			want:    "department = 'Finance'",
		},
		{
			name:    "several strings",
			dialect: rls.PostgreSQL,
			filter:  rls.Filter{Column: "department", Operator: rls.OpIn, Values: []any{"Finance", "HR"}},
			want:    "department IN ('Finance', 'HR')",
		},
		{
			name:    "quote in postgresql",
			dialect: rls.PostgreSQL,
			filter:  rls.Filter{Column: "sales.owner", Values: []any{"O'Brien"}},
			want:    "sales.owner = convert_from(decode('4F27427269656E', 'hex'), 'UTF8')",
		},
		{
			name:    "not in one postgresql",
			dialect: rls.PostgreSQL,
			filter:  rls.Filter{Column: "team", Operator: rls.OpNotIn, Values: []any{"red"}},
			want:    "team <> 'red'",
		},
		{
			name:    "not in several postgresql",
			dialect: rls.PostgreSQL,
			filter:  rls.Filter{Column: "team", Operator: rls.OpNotIn, Values: []any{"red", "a;b"}},
			want:    "team NOT IN ('red', convert_from(decode('613B62', 'hex'), 'UTF8'))",
		},
		{
			name:    "mysql plain string compares bytes",
			dialect: rls.MySQL,
			filter:  rls.Filter{Column: "department", Values: []any{"Finance"}},
			want:    "CAST(CONVERT(department USING utf8mb4) AS BINARY) = 'Finance'",
		},
		{
			name:    "mysql quote and backslash",
			dialect: rls.MySQL,
			filter:  rls.Filter{Column: "d", Values: []any{`a'\`, "b"}},
			want:    "CAST(CONVERT(d USING utf8mb4) AS BINARY) IN (X'61275C', 'b')",
		},
		{
			name:    "mysql numbers are not cast",
			dialect: rls.MySQL,
			filter:  rls.Filter{Column: "cost_center", Values: []any{json.Number("1234"), int64(-5)}},
			want:    "cost_center IN (1234, -5)",
		},
		{
			name:    "sqlite char",
			dialect: rls.SQLite,
			filter:  rls.Filter{Column: "d", Values: []any{"é'"}},
			want:    "d = char(233, 39)",
		},
		{
			name:    "empty in matches nothing",
			dialect: rls.SQLite,
			filter:  rls.Filter{Column: "d", Values: []any{}},
			want:    "1 = 0",
		},
		{
			name:    "empty not in matches every non-null row",
			dialect: rls.MySQL,
			filter:  rls.Filter{Column: "d", Operator: rls.OpNotIn},
			want:    "d IS NOT NULL",
		},
		{
			name:    "booleans",
			dialect: rls.PostgreSQL,
			filter:  rls.Filter{Column: "active", Values: []any{true, false}},
			want:    "active IN (TRUE, FALSE)",
		},
		{
			name:    "floats and ints",
			dialect: rls.SQLite,
			filter:  rls.Filter{Column: "x", Values: []any{1.5, 1e21, 7, json.Number("-0.25e-3")}},
			want:    "x IN (1.5, 1e+21, 7, -0.25e-3)",
		},
		{
			name:    "empty string",
			dialect: rls.MySQL,
			filter:  rls.Filter{Column: "d", Values: []any{""}},
			want:    "CAST(CONVERT(d USING utf8mb4) AS BINARY) = ''",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rls.Render(tt.dialect, tt.filter)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRenderHostile renders every hostile value, alone and together, in
// every dialect and checks that the clause is inert and reads back as the
// values it was given.
func TestRenderHostile(t *testing.T) {
	values := hostileValues()
	for _, d := range dialects {
		for i, v := range values {
			t.Run(fmt.Sprintf("%s/%d", d, i), func(t *testing.T) {
				for _, op := range []rls.Operator{rls.OpIn, rls.OpNotIn} {
					checkRoundTrip(t, d, rls.Filter{Name: "h", Column: "v", Operator: op,
						Values: []any{v}})
					checkRoundTrip(t, d, rls.Filter{Name: "h", Column: "s.v", Operator: op,
						Values: []any{v, "Finance", v + "'"}})
				}
			})
		}
		t.Run(string(d)+"/all", func(t *testing.T) {
			all := make([]any, len(values))
			for i, v := range values {
				all[i] = v
			}
			checkRoundTrip(t, d, rls.Filter{Name: "h", Column: "v", Values: all})
		})
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name    string
		dialect rls.Dialect
		filter  rls.Filter
		want    string // a part of the error message
	}{
		{name: "nul", filter: rls.Filter{Column: "d", Values: []any{"a\x00b"}}, want: "NUL"},
		{name: "invalid utf-8", filter: rls.Filter{Column: "d", Values: []any{"a\xffb"}}, want: "UTF-8"},
		{name: "lone surrogate bytes", filter: rls.Filter{Column: "d", Values: []any{"\xed\xa0\x80"}}, want: "UTF-8"},
		{name: "too long", filter: rls.Filter{Column: "d", Values: []any{strings.Repeat("a", rls.MaxStringLen+1)}}, want: "longer"},
		{name: "nan", filter: rls.Filter{Column: "d", Values: []any{math.NaN()}}, want: "NaN"},
		{name: "inf", filter: rls.Filter{Column: "d", Values: []any{math.Inf(-1)}}, want: "-Inf"},
		{name: "bad json number", filter: rls.Filter{Column: "d", Values: []any{json.Number("1 OR 1=1")}}, want: "not a JSON number"},
		{name: "json number too large", filter: rls.Filter{Column: "d", Values: []any{json.Number("1e400")}}, want: "float64 range"},
		{name: "json number hex", filter: rls.Filter{Column: "d", Values: []any{json.Number("0x10")}}, want: "not a JSON number"},
		{name: "nil", filter: rls.Filter{Column: "d", Values: []any{nil}}, want: "null"},
		{name: "slice", filter: rls.Filter{Column: "d", Values: []any{[]string{"a"}}}, want: "[]string"},
		{name: "float32", filter: rls.Filter{Column: "d", Values: []any{float32(1)}}, want: "float32"},
		{name: "mixed kinds", filter: rls.Filter{Column: "d", Values: []any{"1", 1}}, want: "one type"},
		{name: "empty column", filter: rls.Filter{Values: []any{"a"}}, want: "column is empty"},
		{name: "quoted column", filter: rls.Filter{Column: `"d"`, Values: []any{"a"}}, want: "plain identifier"},
		{name: "column with space", filter: rls.Filter{Column: "d OR 1=1", Values: []any{"a"}}, want: "plain identifier"},
		{name: "column with colon", filter: rls.Filter{Column: "d:x", Values: []any{"a"}}, want: "plain identifier"},
		{name: "column with brace", filter: rls.Filter{Column: "d{{x}}", Values: []any{"a"}}, want: "plain identifier"},
		{name: "column three parts", filter: rls.Filter{Column: "a.b.c", Values: []any{"a"}}, want: "more than two parts"},
		{name: "column leading digit", filter: rls.Filter{Column: "1d", Values: []any{"a"}}, want: "plain identifier"},
		{name: "column empty part", filter: rls.Filter{Column: "s.", Values: []any{"a"}}, want: "plain identifier"},
		{name: "column non-ascii", filter: rls.Filter{Column: "département", Values: []any{"a"}}, want: "plain identifier"},
		{name: "column too long", filter: rls.Filter{Column: strings.Repeat("c", 64), Values: []any{"a"}}, want: "plain identifier"},
		{name: "column keyword", filter: rls.Filter{Column: "TRUE", Values: []any{"a"}}, want: "keyword"},
		{name: "column keyword part", filter: rls.Filter{Column: "s.current_user", Values: []any{"a"}}, want: "keyword"},
		{name: "unknown operator", filter: rls.Filter{Column: "d", Operator: "like", Values: []any{"a"}}, want: "operator"},
		{name: "unknown dialect", dialect: "snowflake", filter: rls.Filter{Column: "d", Values: []any{"a"}}, want: "ParseDialect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.dialect
			if d == "" {
				d = rls.PostgreSQL
			}
			tt.filter.Name = "f"
			got, err := rls.Render(d, tt.filter)
			if err == nil {
				t.Fatalf("got clause %q, want an error holding %q", got, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"f"`) {
				t.Errorf("got error %q, want one naming filter \"f\" and holding %q", err, tt.want)
			}
		})
	}
}

func TestParseDialect(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    rls.Dialect
		wantErr string
	}{
		{name: "postgresql", in: "postgresql", want: rls.PostgreSQL},
		{name: "postgres alias", in: "Postgres", want: rls.PostgreSQL},
		{name: "mysql", in: "mysql", want: rls.MySQL},
		{name: "mariadb alias", in: "MariaDB", want: rls.MySQL},
		{name: "sqlite", in: " sqlite ", want: rls.SQLite},
		{name: "snowflake refused", in: "snowflake", wantErr: "backslash"},
		{name: "bigquery refused", in: "bigquery", wantErr: "backslash"},
		{name: "mssql refused", in: "mssql", wantErr: "refused"},
		{name: "unknown", in: "db2", wantErr: "unknown"},
		{name: "empty", in: "", wantErr: "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rls.ParseDialect(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v; want an error holding %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// FuzzRender renders arbitrary strings in every dialect: each either fails
// with a reason (NUL, invalid UTF-8, too long) or gives an inert clause that
// reads back as the value.
func FuzzRender(f *testing.F) {
	for _, v := range hostileValues() {
		f.Add(v, false)
	}
	f.Add("a\x00b", true)
	f.Add("\xff", false)
	f.Fuzz(func(t *testing.T, v string, notIn bool) {
		op := rls.OpIn
		if notIn {
			op = rls.OpNotIn
		}
		for _, d := range dialects {
			filter := rls.Filter{Name: "fuzz", Column: "v", Operator: op, Values: []any{v, "x"}}
			valid := utf8.ValidString(v) && !strings.ContainsRune(v, 0) && len(v) <= rls.MaxStringLen
			if !valid {
				if got, err := rls.Render(d, filter); err == nil {
					t.Fatalf("%s: got clause %q for %q, want an error", d, got, v)
				}
				continue
			}
			checkRoundTrip(t, d, filter)
		}
	})
}

func BenchmarkRender(b *testing.B) {
	cases := []struct {
		name   string
		filter rls.Filter
	}{
		{name: "plain", filter: rls.Filter{Column: "department", Values: []any{"Finance"}}},
		{name: "hostile", filter: rls.Filter{Column: "department", Values: []any{"x' OR '1'='1 -- {{ :n }}"}}},
		{name: "ten", filter: rls.Filter{Column: "team", Values: []any{
			"a", "b", "c", "d", "e", "f'", "g", "h", "i", "j"}}},
	}
	for _, d := range dialects {
		for _, c := range cases {
			b.Run(string(d)+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := rls.Render(d, c.filter); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// checkRoundTrip renders f, checks the clause holds nothing that Jinja,
// SQLAlchemy text() or a SQL lexer could read as more than a literal, and
// parses it back into its column, operator and values.
func checkRoundTrip(t *testing.T, d rls.Dialect, f rls.Filter) {
	t.Helper()
	clause, err := rls.Render(d, f)
	if err != nil {
		t.Fatalf("%s: Render(%q): %v", d, f.Values, err)
	}
	checkInert(t, clause)
	col, op, got, err := parseClause(d, clause)
	if err != nil {
		t.Fatalf("%s: parse %q: %v", d, truncateForLog(clause), err)
	}
	if col != f.Column {
		t.Errorf("%s: got column %q, want %q", d, col, f.Column)
	}
	wantOp := f.Operator
	if wantOp == "" {
		wantOp = rls.OpIn
	}
	if op != wantOp {
		t.Errorf("%s: got operator %q, want %q", d, op, wantOp)
	}
	want := make([]string, len(f.Values))
	for i, v := range f.Values {
		want[i] = fmt.Sprint(v)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: values read back from %q differ (-want +got):\n%s", d, truncateForLog(clause), diff)
	}
}

// checkInert fails when the clause holds anything but printable ASCII, or a
// Jinja marker, a bind parameter, a comment, a statement separator, a
// backslash or a double quote or backtick.
func checkInert(t *testing.T, clause string) {
	t.Helper()
	for i := 0; i < len(clause); i++ {
		if c := clause[i]; c < 0x20 || c > 0x7e {
			t.Fatalf("clause holds byte %#x at %d: %q", c, i, truncateForLog(clause))
		}
	}
	for _, bad := range []string{"{{", "{%", "{#", ":", "--", "/*", "*/", ";", `\`, `"`, "`", "#", "$", "?", "%"} {
		if strings.Contains(clause, bad) {
			t.Fatalf("clause holds %q: %q", bad, truncateForLog(clause))
		}
	}
	// Every quoted run holds only letters, digits, space and underscore.
	parts := strings.Split(clause, "'")
	if len(parts)%2 == 0 {
		t.Fatalf("clause has an odd number of quotes: %q", truncateForLog(clause))
	}
	for i := 1; i < len(parts); i += 2 {
		for _, c := range parts[i] {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ' ' || c == '_') {
				t.Fatalf("quoted run %q holds %q: %q", parts[i], c, truncateForLog(clause))
			}
		}
	}
}

// parseClause reads a rendered clause back: its column, operator and the
// text of each value. It accepts only the forms Render writes.
func parseClause(d rls.Dialect, s string) (string, rls.Operator, []string, error) {
	p := &clauseParser{d: d, s: s}
	col := p.ident()
	if d == rls.MySQL && strings.HasPrefix(s, "CAST(CONVERT(") {
		p.i = len("CAST(CONVERT(")
		col = p.ident()
		if !p.eat(" USING utf8mb4) AS BINARY)") {
			return "", "", nil, p.fail("mysql column cast")
		}
	}
	var op rls.Operator
	list := false
	switch {
	case p.eat(" = "):
		op = rls.OpIn
	case p.eat(" <> "):
		op = rls.OpNotIn
	case p.eat(" IN ("):
		op, list = rls.OpIn, true
	case p.eat(" NOT IN ("):
		op, list = rls.OpNotIn, true
	default:
		return "", "", nil, p.fail("operator")
	}
	var values []string
	for {
		v, err := p.literal()
		if err != nil {
			return "", "", nil, err
		}
		values = append(values, v)
		if !list || !p.eat(", ") {
			break
		}
	}
	if list && !p.eat(")") {
		return "", "", nil, p.fail("closing parenthesis")
	}
	if p.i != len(s) {
		return "", "", nil, p.fail("end")
	}
	return col, op, values, nil
}

type clauseParser struct {
	d rls.Dialect
	s string
	i int
}

func (p *clauseParser) fail(what string) error {
	return fmt.Errorf("want %s at %d: %q", what, p.i, truncateForLog(p.s[p.i:]))
}

func (p *clauseParser) eat(prefix string) bool {
	if strings.HasPrefix(p.s[p.i:], prefix) {
		p.i += len(prefix)
		return true
	}
	return false
}

func (p *clauseParser) until(set string) string {
	start := p.i
	for p.i < len(p.s) && !strings.ContainsRune(set, rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *clauseParser) ident() string { return p.until(" ") }

func (p *clauseParser) literal() (string, error) {
	switch {
	case p.eat("'"):
		v := p.until("'")
		if !p.eat("'") {
			return "", p.fail("closing quote")
		}
		return v, nil
	case p.d == rls.PostgreSQL && p.eat("convert_from(decode('"):
		h := p.until("'")
		if !p.eat("', 'hex'), 'UTF8')") {
			return "", p.fail("end of convert_from")
		}
		b, err := hex.DecodeString(h)
		return string(b), err
	case p.d == rls.MySQL && p.eat("X'"):
		h := p.until("'")
		if !p.eat("'") {
			return "", p.fail("end of hex literal")
		}
		b, err := hex.DecodeString(h)
		return string(b), err
	case p.d == rls.SQLite && (strings.HasPrefix(p.s[p.i:], "char(") || strings.HasPrefix(p.s[p.i:], "(")):
		return p.charTree()
	case p.eat("TRUE"):
		return "true", nil
	case p.eat("FALSE"):
		return "false", nil
	}
	n := p.until(",)")
	if _, err := strconv.ParseFloat(n, 64); err != nil {
		return "", p.fail("literal")
	}
	return n, nil
}

func (p *clauseParser) charTree() (string, error) {
	if p.eat("(") {
		left, err := p.charTree()
		if err != nil {
			return "", err
		}
		if !p.eat(" || ") {
			return "", p.fail("||")
		}
		right, err := p.charTree()
		if err != nil {
			return "", err
		}
		if !p.eat(")") {
			return "", p.fail("closing parenthesis of ||")
		}
		return left + right, nil
	}
	if !p.eat("char(") {
		return "", p.fail("char(")
	}
	var b strings.Builder
	for {
		n, err := strconv.ParseInt(p.until(",)"), 10, 32)
		if err != nil {
			return "", p.fail("code point")
		}
		b.WriteRune(rune(n))
		if !p.eat(", ") {
			break
		}
	}
	if !p.eat(")") {
		return "", p.fail("end of char()")
	}
	return b.String(), nil
}

func truncateForLog(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// TestRandomValuesRoundTrip renders a deterministic stream of random values.
func TestRandomValuesRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		v := randomValue(r)
		for _, d := range dialects {
			checkRoundTrip(t, d, rls.Filter{Name: strconv.Itoa(i), Column: "v", Values: []any{v}})
		}
	}
}
