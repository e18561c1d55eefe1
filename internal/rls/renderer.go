package rls

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Conf chooses the SQL dialect of rendered clauses: a default, overridden
// per Superset database and per table of a database.
//
// A table is named the way a filter's Tables entries name it, "table" or
// "schema.table", prefixed with the Superset database name and a colon when
// the database matters: "warehouse:finance.revenue". A table name alone is
// ambiguous across databases, so Tables keys always name the database.
type Conf struct {
	// Dialect is the default dialect: "postgresql" (the default when empty),
	// "mysql" or "sqlite", or an alias ("postgres", "mariadb").
	Dialect string `yaml:"dialect" json:"dialect"`
	// Databases maps a Superset database name to the dialect of its engine.
	Databases map[string]string `yaml:"databases" json:"databases"`
	// Tables maps "database:table" or "database:schema.table" to a dialect,
	// overriding the database's for that table.
	Tables map[string]string `yaml:"tables" json:"tables"`
}

// Validate reports every problem of c at once, or nil.
func (c Conf) Validate() error {
	var errs []error
	if c.Dialect != "" {
		if _, err := ParseDialect(c.Dialect); err != nil {
			errs = append(errs, fmt.Errorf("dialect: %w", err))
		}
	}
	for _, db := range sortedKeys(c.Databases) {
		if strings.TrimSpace(db) == "" {
			errs = append(errs, errors.New("databases: a database name is empty"))
		}
		if _, err := ParseDialect(c.Databases[db]); err != nil {
			errs = append(errs, fmt.Errorf("databases[%q]: %w", db, err))
		}
	}
	for _, key := range sortedKeys(c.Tables) {
		db, table, ok := splitTable(key)
		if !ok || db == "" || table == "" {
			errs = append(errs, fmt.Errorf("tables[%q]: want \"database:table\" or "+
				"\"database:schema.table\": a table name alone is ambiguous across databases", key))
		}
		if _, err := ParseDialect(c.Tables[key]); err != nil {
			errs = append(errs, fmt.Errorf("tables[%q]: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

// Rendered is a filter rendered for one dialect, as a decision returns it.
type Rendered struct {
	// Name is the filter's name.
	Name string `json:"name"`
	// Tables lists the tables the clause applies to, as the filter named
	// them; an entry of a table whose database renders in another dialect
	// than the filter's others is written "database:table" (see RenderAll).
	Tables []string `json:"tables"`
	// GroupKey is the filter's Superset group key: clauses that share one
	// are ORed, groups are ANDed.
	GroupKey string `json:"group_key"`
	// FilterType is "REGULAR" or "BASE".
	FilterType string `json:"filter_type"`
	// Clause is the SQL boolean expression.
	Clause string `json:"clause"`
	// Dialect is the dialect Clause is written in.
	Dialect Dialect `json:"dialect"`
}

// Renderer renders filters in the dialect of the database and table each
// applies to. It is safe for concurrent use.
type Renderer struct {
	dialect   Dialect
	databases map[string]Dialect
	tables    map[string]Dialect
	// tableDBs maps a table, without database, to the databases that Tables
	// overrides it in.
	tableDBs map[string][]string
	dbNames  []string
}

// NewRenderer returns a Renderer for c, or every problem of c.
func NewRenderer(c Conf) (*Renderer, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("rls config: %w", err)
	}
	r := &Renderer{
		dialect:   DefaultDialect,
		databases: make(map[string]Dialect, len(c.Databases)),
		tables:    make(map[string]Dialect, len(c.Tables)),
		tableDBs:  make(map[string][]string),
	}
	if c.Dialect != "" {
		r.dialect, _ = ParseDialect(c.Dialect)
	}
	for _, db := range sortedKeys(c.Databases) {
		r.databases[db], _ = ParseDialect(c.Databases[db])
		r.dbNames = append(r.dbNames, db)
	}
	for _, key := range sortedKeys(c.Tables) {
		r.tables[key], _ = ParseDialect(c.Tables[key])
		db, table, _ := splitTable(key)
		r.tableDBs[table] = append(r.tableDBs[table], db)
	}
	return r, nil
}

// Dialect returns the default dialect.
func (r *Renderer) Dialect() Dialect { return r.dialect }

// dialectOf returns the dialect of table in database db ("" for any).
func (r *Renderer) dialectOf(db, table string) Dialect {
	if db == "" {
		return r.dialect
	}
	if d, ok := r.tables[db+":"+table]; ok {
		return d
	}
	if d, ok := r.databases[db]; ok {
		return d
	}
	return r.dialect
}

// RenderAll renders every filter, in order. A filter whose tables need
// different dialects gives one Rendered per dialect, in the order the
// dialects first appear, each listing its tables.
//
// An entry that names its database ("warehouse:sales") renders in that
// table's dialect. An entry without one ("sales") renders in the default
// dialect, and, for every database configured with another dialect, also
// as "database:sales" in that database's dialect; a client then prefers,
// for a filter name, the entries that name the queried table's database.
//
// A filter that cannot be rendered fails the whole call: the decision
// fails closed rather than leaving a filter out.
func (r *Renderer) RenderAll(filters []Filter) ([]Rendered, error) {
	out := make([]Rendered, 0, len(filters))
	for _, f := range filters {
		ft, err := filterType(f.FilterType)
		if err != nil {
			return nil, fmt.Errorf("rls filter %q: %w", f.Name, err)
		}
		groups, err := r.split(f)
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			clause, err := Render(g.dialect, f)
			if err != nil {
				return nil, err
			}
			out = append(out, Rendered{
				Name:       f.Name,
				Tables:     g.tables,
				GroupKey:   f.GroupKey,
				FilterType: ft,
				Clause:     clause,
				Dialect:    g.dialect,
			})
		}
	}
	return out, nil
}

// tableGroup is the tables of one filter that share a dialect.
type tableGroup struct {
	dialect Dialect
	tables  []string
}

// split groups the tables of f by dialect.
func (r *Renderer) split(f Filter) ([]tableGroup, error) {
	if len(f.Tables) == 0 {
		return []tableGroup{{dialect: r.dialect, tables: []string{}}}, nil
	}
	var groups []tableGroup
	add := func(d Dialect, entry string) {
		for i := range groups {
			if groups[i].dialect == d {
				for _, t := range groups[i].tables {
					if t == entry {
						return
					}
				}
				groups[i].tables = append(groups[i].tables, entry)
				return
			}
		}
		groups = append(groups, tableGroup{dialect: d, tables: []string{entry}})
	}
	for _, entry := range f.Tables {
		db, table, ok := splitTable(entry)
		if !ok || table == "" {
			return nil, fmt.Errorf("rls filter %q: table %q is empty", f.Name, entry)
		}
		if db != "" {
			add(r.dialectOf(db, table), entry)
			continue
		}
		add(r.dialect, entry)
		for _, other := range r.otherDatabases(table) {
			if d := r.dialectOf(other, table); d != r.dialect {
				add(d, other+":"+table)
			}
		}
	}
	return groups, nil
}

// otherDatabases returns, sorted, the databases where table may render in a
// dialect other than the default.
func (r *Renderer) otherDatabases(table string) []string {
	extra := r.tableDBs[table]
	if len(extra) == 0 {
		return r.dbNames
	}
	seen := make(map[string]bool, len(r.dbNames)+len(extra))
	var dbs []string
	for _, db := range append(append([]string(nil), r.dbNames...), extra...) {
		if !seen[db] {
			seen[db] = true
			dbs = append(dbs, db)
		}
	}
	sort.Strings(dbs)
	return dbs
}

// filterType normalises a Superset filter type.
func filterType(s string) (string, error) {
	switch strings.ToUpper(s) {
	case "", "REGULAR":
		return "REGULAR", nil
	case "BASE":
		return "BASE", nil
	}
	return "", fmt.Errorf("filter_type %q is unknown: want \"REGULAR\" or \"BASE\"", s)
}

// splitTable splits "database:table" at its last colon; an entry without a
// colon has no database.
func splitTable(entry string) (db, table string, ok bool) {
	entry = strings.TrimSpace(entry)
	if entry == "" {
		return "", "", false
	}
	i := strings.LastIndexByte(entry, ':')
	if i < 0 {
		return "", entry, true
	}
	return entry[:i], entry[i+1:], true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
