package rls_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/authzd/authzd/internal/rls"
)

// The proofs: rendered clauses run as "SELECT id FROM t WHERE <clause>" in
// each real engine, under each of its string-escaping modes, against a
// table that holds the hostile values themselves and decoys close to them;
// exactly the rows equal to the filter's values must come back, and the
// table must be intact afterwards.

// queryTimeout bounds one statement on a loaded machine.
const queryTimeout = 30 * time.Second

// randomQueries returns the number of random filters tried per engine and
// mode: fewer under the race detector, which adds nothing to these proofs
// but slows the pure-Go SQLite several times.
func randomQueries() int {
	if raceEnabled {
		return 60
	}
	return 300
}

// proofRow is a row of the proof table; a nil v is NULL.
type proofRow struct {
	id int64
	v  *string
}

// proofTable is the content of the string proof table.
type proofTable struct {
	rows []proofRow
	// pool holds every non-NULL value of the table.
	pool []string
}

var proofData = sync.OnceValue(func() proofTable {
	var values []string
	for _, h := range hostileValues() {
		values = append(values, h)
		values = append(values, decoys(h)...)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		values = append(values, randomValue(r))
	}
	pt := proofTable{rows: []proofRow{{id: 1}}}
	for i, v := range values {
		pt.rows = append(pt.rows, proofRow{id: int64(i + 2), v: &v})
	}
	pt.pool = values
	return pt
})

// want returns the ids of rows whose value is (or, for not_in, is not) one
// of values; NULL rows never match.
func (pt proofTable) want(values []string, notIn bool) []int64 {
	ids := []int64{}
	for _, r := range pt.rows {
		if r.v != nil && slices.Contains(values, *r.v) != notIn {
			ids = append(ids, r.id)
		}
	}
	return ids
}

// ddl holds the statements that create the proof tables in one dialect.
func ddl(d rls.Dialect) []string {
	text, num, integer, boolean := "text", "double precision", "bigint", "boolean"
	switch d {
	case rls.MySQL:
		text, num = "mediumtext", "double"
	case rls.SQLite:
		num, integer, boolean = "real", "integer", "integer"
	}
	return []string{
		"DROP TABLE IF EXISTS rls_proof",
		"DROP TABLE IF EXISTS rls_canary",
		"DROP TABLE IF EXISTS rls_fuzz",
		"DROP TABLE IF EXISTS rls_num",
		fmt.Sprintf("CREATE TABLE rls_proof (id %s PRIMARY KEY, v %s)", integer, text),
		fmt.Sprintf("CREATE TABLE rls_fuzz (id %s PRIMARY KEY, v %s)", integer, text),
		fmt.Sprintf("CREATE TABLE rls_canary (id %s PRIMARY KEY)", integer),
		"INSERT INTO rls_canary (id) VALUES (1)",
		fmt.Sprintf("CREATE TABLE rls_num (id %s PRIMARY KEY, i %s, f %s, b %s)",
			integer, integer, num, boolean),
	}
}

// placeholders returns n groups of k bind parameters in d's syntax.
func placeholders(d rls.Dialect, n, k int) string {
	var b strings.Builder
	p := 0
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range k {
			if j > 0 {
				b.WriteString(", ")
			}
			p++
			if d == rls.PostgreSQL {
				fmt.Fprintf(&b, "$%d", p)
			} else {
				b.WriteByte('?')
			}
		}
		b.WriteByte(')')
	}
	return b.String()
}

// insert inserts rows of k columns in batches, values bound by the driver.
func insert(ctx context.Context, d rls.Dialect, q querier, table string, k int, rows [][]any) error {
	const batch = 50
	for start := 0; start < len(rows); start += batch {
		end := min(start+batch, len(rows))
		var args []any
		for _, r := range rows[start:end] {
			args = append(args, r...)
		}
		cols := "(id, v)"
		if k == 4 {
			cols = "(id, i, f, b)"
		}
		stmt := "INSERT INTO " + table + " " + cols + " VALUES " + placeholders(d, end-start, k)
		if err := q.Exec(ctx, stmt, args...); err != nil {
			return fmt.Errorf("insert into %s: %w", table, err)
		}
	}
	return nil
}

var (
	preparedMu sync.Mutex
	prepared   = map[string]error{}
)

// prepare creates and fills the proof tables once per database: once per
// server engine, whose modes share a database, and once per SQLite mode.
func prepare(t *testing.T, e *engine, m mode) {
	t.Helper()
	key := e.name
	if e.dialect == rls.SQLite {
		key += "/" + m.name
	}
	preparedMu.Lock()
	defer preparedMu.Unlock()
	err, done := prepared[key]
	if !done {
		err = fill(e.dialect, m.q)
		prepared[key] = err
	}
	if err != nil {
		t.Fatalf("%s: prepare tables: %v", key, err)
	}
}

func fill(d rls.Dialect, q querier) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, stmt := range ddl(d) {
		if err := q.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	var rows [][]any
	for _, r := range proofData().rows {
		var v any
		if r.v != nil {
			v = *r.v
		}
		rows = append(rows, []any{r.id, v})
	}
	if err := insert(ctx, d, q, "rls_proof", 2, rows); err != nil {
		return err
	}
	rows = nil
	for i, n := range numRows {
		rows = append(rows, []any{int64(i + 1), n.i, n.f, n.b})
	}
	return insert(ctx, d, q, "rls_num", 4, rows)
}

// ids runs a query of one id column.
func ids(t *testing.T, m mode, query string) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	got, err := m.q.IDs(ctx, query)
	if err != nil {
		t.Fatalf("%s: %s: %v", m.name, truncateForLog(query), err)
	}
	return got
}

// checkIntact fails when a proof table lost rows or disappeared.
func checkIntact(t *testing.T, m mode) {
	t.Helper()
	if got, want := ids(t, m, "SELECT COUNT(*) FROM rls_proof"), int64(len(proofData().rows)); !slices.Equal(got, []int64{want}) {
		t.Fatalf("%s: rls_proof holds %v rows, want %d", m.name, got, want)
	}
	if got := ids(t, m, "SELECT COUNT(*) FROM rls_canary"); !slices.Equal(got, []int64{1}) {
		t.Fatalf("%s: rls_canary holds %v rows, want 1", m.name, got)
	}
}

// proveStrings renders a filter of values on rls_proof.v and checks that
// exactly the equal (or unequal) rows come back.
func proveStrings(t *testing.T, e *engine, m mode, values []string, notIn bool) {
	t.Helper()
	op := rls.OpIn
	if notIn {
		op = rls.OpNotIn
	}
	anys := make([]any, len(values))
	for i, v := range values {
		anys[i] = v
	}
	clause, err := rls.Render(e.dialect, rls.Filter{Name: "proof", Column: "v", Operator: op, Values: anys})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	got := ids(t, m, "SELECT id FROM rls_proof WHERE "+clause+" ORDER BY id")
	if diff := cmp.Diff(proofData().want(values, notIn), got); diff != "" {
		t.Fatalf("%s: %s %s %q: rows differ (-want +got):\n%s", m.name, e.name, op,
			truncateForLog(fmt.Sprint(values)), diff)
	}
}

func TestProofSQLite(t *testing.T)     { proveEngine(t, needSQLite(t)) }
func TestProofPostgreSQL(t *testing.T) { proveEngine(t, needServer(t, rls.PostgreSQL)) }
func TestProofMariaDB(t *testing.T)    { proveEngine(t, needServer(t, rls.MySQL)) }

func proveEngine(t *testing.T, e *engine) {
	for _, m := range e.modes {
		t.Run(m.name, func(t *testing.T) {
			prepare(t, e, m)
			checkIntact(t, m)
			hostile := hostileValues()
			t.Run("hostile", func(t *testing.T) {
				for _, h := range hostile {
					proveStrings(t, e, m, []string{h}, false)
					proveStrings(t, e, m, []string{h}, true)
				}
				proveStrings(t, e, m, hostile, false)
				proveStrings(t, e, m, hostile, true)
				proveStrings(t, e, m, nil, false)
				proveStrings(t, e, m, nil, true)
				checkIntact(t, m)
			})
			t.Run("random", func(t *testing.T) {
				r := rand.New(rand.NewPCG(5, 6))
				pool := proofData().pool
				for i := range randomQueries() {
					values := make([]string, 1+r.IntN(4))
					for j := range values {
						if r.IntN(2) == 0 {
							values[j] = pool[r.IntN(len(pool))]
						} else {
							values[j] = randomValue(r)
						}
					}
					proveStrings(t, e, m, values, r.IntN(3) == 0)
					if i%50 == 0 {
						checkIntact(t, m)
					}
				}
				checkIntact(t, m)
			})
			t.Run("numbers", func(t *testing.T) { proveNumbers(t, e, m) })
		})
	}
}

// numRow is a row of rls_num.
type numRow struct {
	i int64
	f float64
	b bool
}

var numRows = []numRow{
	{i: -5, f: 0.1, b: true},
	{i: 0, f: -2.5, b: false},
	{i: 7, f: 1e-7, b: true},
	{i: 42, f: 1e21, b: false},
	{i: 9007199254740993, f: 0.30000000000000004, b: true},
	{i: math.MaxInt64, f: 0.3, b: false},
	{i: math.MinInt64, f: -0.0, b: true},
	{i: 43, f: 123456.789, b: false},
}

// proveNumbers checks integer, float and boolean filters on rls_num.
func proveNumbers(t *testing.T, e *engine, m mode) {
	tests := []struct {
		name   string
		column string
		values []any
		match  func(numRow, any) bool
	}{
		{name: "int64", column: "i", values: []any{int64(42), int64(math.MinInt64)},
			match: func(r numRow, v any) bool { return r.i == v.(int64) }},
		{name: "int", column: "i", values: []any{7},
			match: func(r numRow, v any) bool { return r.i == int64(v.(int)) }},
		{name: "json integers", column: "i", values: []any{json.Number("9007199254740993"), json.Number("-5"), json.Number("9223372036854775807")},
			match: func(r numRow, v any) bool { n, _ := v.(json.Number).Int64(); return r.i == n }},
		{name: "floats", column: "f", values: []any{0.1, 1e21, 0.30000000000000004, 1e-7},
			match: func(r numRow, v any) bool { return r.f == v.(float64) }},
		{name: "json decimals", column: "f", values: []any{json.Number("-2.5"), json.Number("123456.789"), json.Number("3e-1")},
			match: func(r numRow, v any) bool { n, _ := v.(json.Number).Float64(); return r.f == n }},
		{name: "booleans", column: "b", values: []any{true},
			match: func(r numRow, v any) bool { return r.b == v.(bool) }},
	}
	for _, tt := range tests {
		for _, notIn := range []bool{false, true} {
			op := rls.OpIn
			if notIn {
				op = rls.OpNotIn
			}
			clause, err := rls.Render(e.dialect, rls.Filter{Name: tt.name, Column: tt.column, Operator: op, Values: tt.values})
			if err != nil {
				t.Fatalf("%s: Render: %v", tt.name, err)
			}
			want := []int64{}
			for i, r := range numRows {
				if slices.ContainsFunc(tt.values, func(v any) bool { return tt.match(r, v) }) != notIn {
					want = append(want, int64(i+1))
				}
			}
			got := ids(t, m, "SELECT id FROM rls_num WHERE "+clause+" ORDER BY id")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s %s: %s: rows differ (-want +got):\n%s", tt.name, op, clause, diff)
			}
		}
	}
}

// FuzzRenderInEngines runs each input as a filter value in every engine and
// mode against a table holding the value itself and values close to it.
// Its seed corpus, the hostile values, runs in every plain go test.
func FuzzRenderInEngines(f *testing.F) {
	for _, v := range hostileValues() {
		f.Add(v)
	}
	engines := []*engine{needSQLite(f)}
	if os.Getenv(skipEnv) != "1" {
		engines = append(engines, needServer(f, rls.PostgreSQL), needServer(f, rls.MySQL))
	}
	f.Fuzz(func(t *testing.T, v string) {
		if _, err := rls.Render(rls.SQLite, rls.Filter{Column: "v", Values: []any{v}}); err != nil {
			return // refused values are FuzzRender's concern
		}
		values := append([]string{v}, decoys(v)...)
		values = append(values, "x"+v, v+v)
		for _, e := range engines {
			for _, m := range e.modes {
				prepare(t, e, m)
				ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
				if err := m.q.Exec(ctx, "DELETE FROM rls_fuzz"); err != nil {
					cancel()
					t.Fatalf("%s %s: clear rls_fuzz: %v", e.name, m.name, err)
				}
				rows := [][]any{{int64(1), nil}}
				for i, d := range values {
					rows = append(rows, []any{int64(i + 2), d})
				}
				err := insert(ctx, e.dialect, m.q, "rls_fuzz", 2, rows)
				cancel()
				if err != nil {
					t.Fatalf("%s %s: %v", e.name, m.name, err)
				}
				for _, op := range []rls.Operator{rls.OpIn, rls.OpNotIn} {
					clause, err := rls.Render(e.dialect, rls.Filter{Name: "fuzz", Column: "v", Operator: op, Values: []any{v}})
					if err != nil {
						t.Fatalf("%s: Render: %v", e.name, err)
					}
					want := []int64{}
					for i, d := range values {
						if (d == v) != (op == rls.OpNotIn) {
							want = append(want, int64(i+2))
						}
					}
					got := ids(t, m, "SELECT id FROM rls_fuzz WHERE "+clause+" ORDER BY id")
					if diff := cmp.Diff(want, got); diff != "" {
						t.Fatalf("%s %s %s %q: rows differ (-want +got):\n%s", e.name, m.name, op, truncateForLog(v), diff)
					}
				}
				if got := ids(t, m, "SELECT COUNT(*) FROM rls_fuzz"); !slices.Equal(got, []int64{int64(len(rows))}) {
					t.Fatalf("%s %s: rls_fuzz holds %v rows, want %d", e.name, m.name, got, len(rows))
				}
				checkIntact(t, m)
			}
		}
	})
}

// TestEngineModes shows that each mode the proofs run under really changes
// how the engine reads a naively quoted literal, and that MySQL's default
// comparison is looser than equality: without these, the proofs would not
// prove what they claim.
func TestEngineModes(t *testing.T) {
	type probe struct {
		mode  string
		query string
		want  int64
	}
	tests := []struct {
		name    string
		dialect rls.Dialect
		probes  []probe
	}{
		{name: "postgresql", dialect: rls.PostgreSQL, probes: []probe{
			{mode: "standard_conforming_strings=on", query: `SELECT length('\\')`, want: 2},
			{mode: "standard_conforming_strings=off", query: `SELECT length('\\')`, want: 1},
		}},
		{name: "mariadb", dialect: rls.MySQL, probes: []probe{
			{mode: "sql_mode=default", query: `SELECT CHAR_LENGTH('\\')`, want: 1},
			{mode: "sql_mode=NO_BACKSLASH_ESCAPES", query: `SELECT CHAR_LENGTH('\\')`, want: 2},
			{mode: "sql_mode=ANSI_QUOTES", query: `SELECT COUNT(*) FROM "rls_canary"`, want: 1},
			{mode: "sql_mode=ANSI,NO_BACKSLASH_ESCAPES", query: `SELECT CHAR_LENGTH('a' || '\\')`, want: 3},
			// The column's default collation finds "Finance" also in
			// "finance", "FINANCE" and "Finance ".
			{mode: "sql_mode=default", query: `SELECT COUNT(*) FROM rls_proof WHERE v = 'Finance'`,
				want: looseMatches("Finance")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := needServer(t, tt.dialect)
			for _, p := range tt.probes {
				i := slices.IndexFunc(e.modes, func(m mode) bool { return m.name == p.mode })
				if i < 0 {
					t.Fatalf("no mode %q", p.mode)
				}
				prepare(t, e, e.modes[i])
				if got := ids(t, e.modes[i], p.query); !slices.Equal(got, []int64{p.want}) {
					t.Errorf("%s: %s: got %v, want %d", p.mode, p.query, got, p.want)
				}
			}
		})
	}
}

// looseMatches counts the rows of rls_proof that MySQL's default collation
// finds equal to v: equal but for case and trailing spaces.
func looseMatches(v string) int64 {
	var n int64
	for _, r := range proofData().rows {
		if r.v != nil && strings.EqualFold(strings.TrimRight(*r.v, " "), v) {
			n++
		}
	}
	return n
}
