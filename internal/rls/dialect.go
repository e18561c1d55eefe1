package rls

import (
	"fmt"
	"strings"
)

// Dialect names the SQL dialect a clause is rendered for.
type Dialect string

// Dialects whose literals this package renders and whose rendering is proven
// against the real engine by this package's tests.
const (
	// PostgreSQL is PostgreSQL, under standard_conforming_strings on or off.
	PostgreSQL Dialect = "postgresql"
	// MySQL is MySQL and MariaDB, under any sql_mode, including
	// NO_BACKSLASH_ESCAPES, ANSI_QUOTES and PIPES_AS_CONCAT.
	MySQL Dialect = "mysql"
	// SQLite is SQLite 3.23 or later.
	SQLite Dialect = "sqlite"
)

// DefaultDialect is the dialect a Conf without one renders for.
const DefaultDialect = PostgreSQL

// dialectAliases maps every accepted spelling, lowercased, to its dialect.
var dialectAliases = map[string]Dialect{
	"postgresql": PostgreSQL,
	"postgres":   PostgreSQL,
	"mysql":      MySQL,
	"mariadb":    MySQL,
	"sqlite":     SQLite,
}

// refusedDialects names engines that Superset connects to but whose literals
// this package has not proven, each with the reason.
var refusedDialects = map[string]string{
	"snowflake":  "it reads backslash escapes in every string literal",
	"bigquery":   "it reads backslash escapes in every string literal",
	"databricks": "Spark SQL reads backslash escapes in string literals by default",
	"spark":      "Spark SQL reads backslash escapes in string literals by default",
	"hive":       "it reads backslash escapes in string literals",
	"mssql":      "its literals and collations are not proven here",
	"sqlserver":  "its literals and collations are not proven here",
	"oracle":     "its empty string is NULL and its literals are not proven here",
	"trino":      "its literals are not proven here",
	"presto":     "its literals are not proven here",
	"clickhouse": "it reads backslash escapes in every string literal",
	"redshift":   "its literals are not proven here",
	"duckdb":     "its literals are not proven here",
}

// ParseDialect returns the dialect named by s ("postgresql" or "postgres",
// "mysql" or "mariadb", "sqlite"; case-insensitive). It refuses every other
// engine, naming why, until this package proves its literals against it.
func ParseDialect(s string) (Dialect, error) {
	key := strings.ToLower(strings.TrimSpace(s))
	if d, ok := dialectAliases[key]; ok {
		return d, nil
	}
	if why, ok := refusedDialects[key]; ok {
		return "", fmt.Errorf("rls dialect %q is refused: %s, "+
			"so a claim value could not be proven to stay inside its literal; "+
			"supported are postgresql, mysql (mariadb) and sqlite", s, why)
	}
	return "", fmt.Errorf("rls dialect %q is unknown: supported are postgresql "+
		"(postgres), mysql (mariadb) and sqlite, the engines whose literals "+
		"are proven in real databases", s)
}

// String returns the dialect's canonical name.
func (d Dialect) String() string { return string(d) }

// valid reports whether d is one of the rendered dialects.
func (d Dialect) valid() bool {
	return d == PostgreSQL || d == MySQL || d == SQLite
}
