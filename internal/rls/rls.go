// Package rls turns structured row-level security filters, as policies
// produce them, into SQL clauses that no claim value can break out of.
//
// A policy never writes SQL. It names a column, an operator and a list of
// values; this package checks the column against a plain identifier pattern
// and renders every value as a literal of the target SQL dialect, so that the
// clause selects exactly the rows whose column equals one of the values,
// whatever the value holds and whatever the server's string-escaping mode.
package rls

// Operator says how a column is compared with a filter's values.
type Operator string

// Operators a filter may use.
const (
	OpIn    Operator = "in"
	OpNotIn Operator = "not_in"
)

// Filter is one row-level security filter as a policy returns it.
type Filter struct {
	// Name identifies the filter in decisions and logs.
	Name string `json:"name"`
	// Tables lists the datasets the filter applies to, as "table" or
	// "schema.table".
	Tables []string `json:"tables"`
	// Column is the column compared, "column" or "table.column".
	Column string `json:"column"`
	// Operator is OpIn (the default when empty) or OpNotIn.
	Operator Operator `json:"operator"`
	// Values are strings, booleans or numbers (json.Number, int64, float64).
	// No values means the filter matches no row.
	Values []any `json:"values"`
	// GroupKey groups filters the way Superset does: clauses that share a
	// group key are ORed, groups are ANDed. Empty means no group.
	GroupKey string `json:"group_key"`
	// FilterType is Superset's "Regular" or "Base" filter type, as
	// "REGULAR" (the default when empty) or "BASE".
	FilterType string `json:"filter_type"`
}
