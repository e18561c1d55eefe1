package rls_test

import (
	"math/rand/v2"
	"strings"
	"unicode/utf8"
)

// hostileValues are claim values written to break out of a literal, a
// comment, a template or a bind parameter, in some dialect or mode.
func hostileValues() []string {
	return []string{
		"",
		" ",
		"Finance",
		"finance",
		"x' OR '1'='1",
		"x' OR 1=1 --",
		"' OR ''='",
		"O'Brien",
		"''",
		"'",
		`"`,
		`x" OR "1"="1`,
		"`",
		`\`,
		`\\`,
		`abc\`,
		`abc\'`,
		`a\'b`,
		`a\\'b`,
		`\' OR 1=1 -- `,
		`a\nb`,
		`\x27`,
		`\u0027`,
		`\0`,
		"x; DROP TABLE rls_canary; --",
		"1; SELECT pg_sleep(10)",
		"-- comment",
		"/* comment */",
		"*/ OR 1=1 /*",
		"#",
		"a\nb",
		"a\r\nb",
		"tab\there",
		"trailing ",
		" leading",
		"\x1a",
		"\b\f\v",
		"{{ 7*7 }}",
		"{% raw %}",
		"{# comment #}",
		"{{",
		"}}",
		"{{ config.__class__ }}",
		":name",
		"a:b",
		"::text",
		":1",
		"%s",
		"%(name)s",
		"?",
		"$1",
		"$$ OR 1=1 $$",
		"E'\\x27'",
		"U&'\\0027'",
		"N'x'",
		"_utf8mb4'x'",
		"X'27'",
		"0x27",
		"SELECT * FROM rls_canary",
		"NULL",
		"null",
		"TRUE",
		"1 = 1",
		"Zürich",
		"ß",
		"SS",
		"straße",
		"STRASSE",
		"é",
		"e\u0301",
		"İ",
		"i",
		"😀",
		"👩‍👩‍👧",
		"עברית",
		"\u202eevil\u202c",
		"\u200b",
		"\u00a0",
		"\ufeff",
		"日本語",
		"\u2028",
		strings.Repeat("a", 10000),
		strings.Repeat(`\'`, 2000),
		strings.Repeat("😀", 3000),
		strings.Repeat("{{:x-- ", 1000),
	}
}

// decoys returns values near v that must not match it: another case,
// trailing and leading space, doubled backslashes and quotes.
func decoys(v string) []string {
	out := []string{
		strings.ToUpper(v),
		strings.ToLower(v),
		v + " ",
		" " + v,
		strings.ReplaceAll(v, `\`, `\\`),
		strings.ReplaceAll(v, `'`, `''`),
	}
	if v != "" {
		_, size := utf8.DecodeLastRuneInString(v)
		out = append(out, v[:len(v)-size]+"X")
	}
	return out
}

// pieces are the fragments random values are built from.
var pieces = []string{
	"a", "Z", "0", " ", "_", "'", "''", `"`, "`", `\`, `\\`, `\'`, "--", "/*", "*/",
	";", "#", "{{", "}}", "{%", "%}", "{#", "#}", ":", ":x", "::", "?", "%", "$$",
	"\n", "\r", "\t", "\x1a", "\x7f", "é", "ß", "😀", "\u202e", "\u00a0", "İ",
	" OR ", "1=1", "SELECT", "DROP TABLE rls_canary", "x'", "E'", "X'27'", "char(39)",
}

// randomValue returns a string of random pieces.
func randomValue(r *rand.Rand) string {
	var b strings.Builder
	n := r.IntN(9)
	for range n {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}
