package rls

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxIdentLen bounds each part of a column name. PostgreSQL silently
// truncates identifiers past 63 bytes and MySQL refuses them past 64, so a
// longer name could compare a different column than the policy meant.
const maxIdentLen = 63

// MaxStringLen is the longest string value, in bytes, that Render accepts.
// A claim longer than this is a mistake or an attack, and a clause built
// from it would burden every query of the table.
const MaxStringLen = 64 << 10

// sqliteCharArgs bounds the code points per SQLite char() call, below the
// engine's default limit of 127 function arguments.
const sqliteCharArgs = 100

// valueKind is the SQL type family of a filter value.
type valueKind int

const (
	kindString valueKind = iota + 1
	kindNumber
	kindBool
)

func (k valueKind) String() string {
	switch k {
	case kindString:
		return "string"
	case kindNumber:
		return "number"
	case kindBool:
		return "boolean"
	}
	return "unknown"
}

// Render renders f as a SQL boolean expression for dialect d.
//
// The expression is one predicate (no top-level AND or OR), so it keeps its
// meaning wherever it is pasted. With OpIn, one value gives "col = v",
// several give "col IN (v1, v2)" and none gives "1 = 0", which matches no
// row. With OpNotIn, one value gives "col <> v", several give
// "col NOT IN (v1, v2)" and none gives "col IS NOT NULL". In both, a row
// whose column is NULL is never selected.
//
// Strings that hold only ASCII letters, digits, space and underscore are
// written as plain quoted literals; any other string is written from its
// UTF-8 bytes or code points by a dialect function, so the clause never
// holds a quote, backslash, comment marker, semicolon, colon, brace or
// non-ASCII character that a value brought. On MySQL, string comparison is
// byte-exact (see docs/rls.md).
//
// Render fails, naming the filter and the cause, when the column is not a
// plain identifier, the operator is unknown, or a value is of an unsupported
// type, a NaN or infinity, a malformed json.Number, a string holding NUL or
// invalid UTF-8 or longer than MaxStringLen, or of a different kind than the
// filter's other values.
func Render(d Dialect, f Filter) (string, error) {
	if !d.valid() {
		return "", fmt.Errorf("rls filter %q: dialect %q is not rendered: use ParseDialect", f.Name, d)
	}
	if err := checkColumn(f.Column); err != nil {
		return "", fmt.Errorf("rls filter %q: %w", f.Name, err)
	}
	var notIn bool
	switch f.Operator {
	case "", OpIn:
	case OpNotIn:
		notIn = true
	default:
		return "", fmt.Errorf("rls filter %q: operator %q is unknown: want %q or %q",
			f.Name, f.Operator, OpIn, OpNotIn)
	}
	if len(f.Values) == 0 {
		if notIn {
			return f.Column + " IS NOT NULL", nil
		}
		return "1 = 0", nil
	}

	kind, err := checkValues(f)
	if err != nil {
		return "", err
	}

	var b strings.Builder
	b.Grow(estimate(d, f))
	if d == MySQL && kind == kindString {
		// Byte-exact comparison: MySQL's default collations ignore case,
		// accents and trailing spaces.
		b.WriteString("CAST(CONVERT(")
		b.WriteString(f.Column)
		b.WriteString(" USING utf8mb4) AS BINARY)")
	} else {
		b.WriteString(f.Column)
	}
	switch {
	case len(f.Values) == 1 && notIn:
		b.WriteString(" <> ")
	case len(f.Values) == 1:
		b.WriteString(" = ")
	case notIn:
		b.WriteString(" NOT IN (")
	default:
		b.WriteString(" IN (")
	}
	for i, v := range f.Values {
		if i > 0 {
			b.WriteString(", ")
		}
		writeLiteral(&b, d, v)
	}
	if len(f.Values) > 1 {
		b.WriteByte(')')
	}
	return b.String(), nil
}

// checkValues checks every value of f and returns their common kind.
func checkValues(f Filter) (valueKind, error) {
	var kind valueKind
	for i, v := range f.Values {
		k, err := checkValue(v)
		if err != nil {
			return 0, fmt.Errorf("rls filter %q: value %d: %w", f.Name, i, err)
		}
		if kind != 0 && k != kind {
			return 0, fmt.Errorf("rls filter %q: value %d is a %s but value 0 is a %s: "+
				"a column holds one type", f.Name, i, k, kind)
		}
		kind = k
	}
	return kind, nil
}

// checkValue reports the kind of v, or why it cannot be rendered.
func checkValue(v any) (valueKind, error) {
	switch v := v.(type) {
	case string:
		if !utf8.ValidString(v) {
			return 0, errors.New("string is not valid UTF-8")
		}
		if len(v) > MaxStringLen {
			return 0, fmt.Errorf("string of %d bytes is longer than %d", len(v), MaxStringLen)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return 0, errors.New("string holds a NUL character")
		}
		return kindString, nil
	case bool:
		return kindBool, nil
	case int, int64:
		return kindNumber, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("number %v has no SQL literal", v)
		}
		return kindNumber, nil
	case json.Number:
		if !isJSONNumber(string(v)) {
			return 0, fmt.Errorf("json.Number %q is not a JSON number", truncate(string(v)))
		}
		// A number past the float64 range is infinite in SQLite and an
		// error in MySQL: refuse it here, with its reason.
		if f, _ := strconv.ParseFloat(string(v), 64); math.IsInf(f, 0) {
			return 0, fmt.Errorf("json.Number %q is out of the float64 range", truncate(string(v)))
		}
		return kindNumber, nil
	case nil:
		return 0, errors.New("null has no equality: a NULL column never matches")
	}
	return 0, fmt.Errorf("type %T is not a string, number or boolean", v)
}

// writeLiteral writes the literal of a value that checkValue accepted.
func writeLiteral(b *strings.Builder, d Dialect, v any) {
	switch v := v.(type) {
	case string:
		writeString(b, d, v)
	case bool:
		if v {
			b.WriteString("TRUE")
		} else {
			b.WriteString("FALSE")
		}
	case int:
		b.WriteString(strconv.Itoa(v))
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case float64:
		var buf [32]byte
		b.Write(strconv.AppendFloat(buf[:0], v, 'g', -1, 64))
	case json.Number:
		b.WriteString(string(v))
	}
}

// writeString writes a string literal that means s under every escaping mode
// of d, and whose text holds no character that Superset's Jinja processing,
// SQLAlchemy's text() or a SQL comment could read.
func writeString(b *strings.Builder, d Dialect, s string) {
	if plain(s) {
		b.WriteByte('\'')
		b.WriteString(s)
		b.WriteByte('\'')
		return
	}
	const hexDigits = "0123456789ABCDEF"
	switch d {
	case PostgreSQL:
		// decode() turns hex digits into bytes and convert_from() reads them
		// as UTF-8 into the database encoding: no escape is ever parsed.
		b.WriteString("convert_from(decode('")
		for i := 0; i < len(s); i++ {
			b.WriteByte(hexDigits[s[i]>>4])
			b.WriteByte(hexDigits[s[i]&0x0f])
		}
		b.WriteString("', 'hex'), 'UTF8')")
	case MySQL:
		// A hex literal is a binary string of exactly these bytes, compared
		// byte by byte with the column converted to utf8mb4.
		b.WriteString("X'")
		for i := 0; i < len(s); i++ {
			b.WriteByte(hexDigits[s[i]>>4])
			b.WriteByte(hexDigits[s[i]&0x0f])
		}
		b.WriteByte('\'')
	case SQLite:
		// char() builds text from code points in the database's encoding.
		// Calls of at most sqliteCharArgs code points are concatenated as a
		// balanced tree, so a long string stays far from the engine's
		// expression depth limit.
		codes := make([]rune, 0, len(s))
		for _, r := range s {
			codes = append(codes, r)
		}
		chunks := (len(codes) + sqliteCharArgs - 1) / sqliteCharArgs
		writeCharTree(b, codes, 0, chunks)
	}
}

// writeCharTree writes chunks [lo, hi) of codes as SQLite char() calls
// joined by || in a balanced tree.
func writeCharTree(b *strings.Builder, codes []rune, lo, hi int) {
	if hi-lo > 1 {
		mid := (lo + hi) / 2
		b.WriteByte('(')
		writeCharTree(b, codes, lo, mid)
		b.WriteString(" || ")
		writeCharTree(b, codes, mid, hi)
		b.WriteByte(')')
		return
	}
	end := min((lo+1)*sqliteCharArgs, len(codes))
	var buf [12]byte
	b.WriteString("char(")
	for i, r := range codes[lo*sqliteCharArgs : end] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.Write(strconv.AppendInt(buf[:0], int64(r), 10))
	}
	b.WriteByte(')')
}

// plain reports whether s holds only ASCII letters, digits, space and
// underscore, which mean themselves inside single quotes in every dialect
// and mode.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == ' ' || c == '_') {
			return false
		}
	}
	return true
}

// estimate returns a capacity for the rendered clause.
func estimate(d Dialect, f Filter) int {
	n := len(f.Column) + 48
	for _, v := range f.Values {
		if s, ok := v.(string); ok {
			if d == SQLite {
				n += 8 * len(s)
			} else {
				n += 2*len(s) + 48
			}
			continue
		}
		n += 24
	}
	return n
}

// isJSONNumber reports whether s follows the JSON number grammar.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

// checkColumn checks that c is "column" or "table.column" (or
// "schema.column") of plain identifiers that are not SQL keywords.
func checkColumn(c string) error {
	if c == "" {
		return errors.New("column is empty")
	}
	first, rest, two := strings.Cut(c, ".")
	if two && strings.Contains(rest, ".") {
		return fmt.Errorf("column %q has more than two parts: want \"column\" or \"table.column\"",
			truncate(c))
	}
	parts := [2]string{first, rest}
	for _, p := range parts[:1+boolInt(two)] {
		if !identifier(p) {
			return fmt.Errorf("column %q is not a plain identifier "+
				"(a letter or underscore, then letters, digits or underscores, at most %d)",
				truncate(c), maxIdentLen)
		}
		if isReserved(p) {
			return fmt.Errorf("column %q is the SQL keyword %q, which would not name a column",
				c, p)
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// isReserved reports whether the identifier s is a keyword in reserved,
// without allocating.
func isReserved(s string) bool {
	var buf [24]byte
	if len(s) > len(buf) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf[i] = c
	}
	_, ok := reserved[string(buf[:len(s)])]
	return ok
}

// identifier reports whether s is a plain, unquoted SQL identifier.
func identifier(s string) bool {
	if s == "" || len(s) > maxIdentLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// reserved holds keywords that would not be read as a column name in at
// least one dialect, or that would turn the comparison into a constant
// (TRUE, NULL, CURRENT_USER, ...).
var reserved = func() map[string]struct{} {
	words := strings.Fields(`
ALL ANALYSE ANALYZE AND ANY ARRAY AS ASC ASYMMETRIC BETWEEN BINARY BOTH CASE CAST
CHECK COLLATE COLUMN CONSTRAINT CREATE CROSS CURRENT_CATALOG CURRENT_DATE
CURRENT_ROLE CURRENT_SCHEMA CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER DEFAULT
DEFERRABLE DELETE DESC DISTINCT DIV DO DROP ELSE END EXCEPT EXISTS FALSE FETCH FOR
FOREIGN FROM FULL GRANT GROUP HAVING ILIKE IN INITIALLY INNER INSERT INTERSECT
INTERVAL INTO IS ISNULL JOIN LATERAL LEADING LEFT LIKE LIMIT LOCALTIME
LOCALTIMESTAMP MATCH MOD NATURAL NOT NOTNULL NULL OFFSET ON ONLY OR ORDER OUTER
OVERLAPS PLACING PRIMARY REFERENCES REGEXP RETURNING RIGHT RLIKE ROW
SELECT SESSION_USER SIMILAR SOME SYMMETRIC SYSTEM_USER TABLE THEN TO TRAILING
TRUE UNION UNIQUE UNKNOWN UPDATE USER USING UTC_DATE UTC_TIME UTC_TIMESTAMP
VALUES VARIADIC WHEN WHERE WINDOW WITH XOR`)
	m := make(map[string]struct{}, len(words))
	for _, w := range words {
		m[w] = struct{}{}
	}
	return m
}()
