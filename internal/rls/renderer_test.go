package rls_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/authzd/authzd/internal/rls"
)

func TestConfValidate(t *testing.T) {
	tests := []struct {
		name string
		conf rls.Conf
		want []string // parts of the error, every one present; none means valid
	}{
		{name: "empty is postgresql", conf: rls.Conf{}},
		{name: "full", conf: rls.Conf{Dialect: "mariadb",
			Databases: map[string]string{"warehouse": "postgres", "examples": "sqlite"},
			Tables:    map[string]string{"warehouse:finance.revenue": "mysql"}}},
		{name: "every problem at once", conf: rls.Conf{Dialect: "snowflake",
			Databases: map[string]string{"bq": "bigquery", "": "mysql"},
			Tables:    map[string]string{"sales": "mysql", "warehouse:t": "oracle"}},
			want: []string{`dialect: rls dialect "snowflake" is refused`, `databases["bq"]`,
				"a database name is empty", `tables["sales"]`, "ambiguous across databases",
				`tables["warehouse:t"]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.conf.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want one holding %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to hold %q", err, w)
				}
			}
			if _, err := rls.NewRenderer(tt.conf); err == nil {
				t.Errorf("NewRenderer: got no error for an invalid Conf")
			}
		})
	}
}

func TestConfYAML(t *testing.T) {
	const doc = `
dialect: postgresql
databases:
  warehouse: mariadb
tables:
  "examples:main.sales": sqlite
`
	var got rls.Conf
	if err := yaml.Unmarshal([]byte(doc), &got); err != nil {
		t.Fatal(err)
	}
	want := rls.Conf{Dialect: "postgresql",
		Databases: map[string]string{"warehouse": "mariadb"},
		Tables:    map[string]string{"examples:main.sales": "sqlite"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Conf differs (-want +got):\n%s", diff)
	}
}

func TestRenderAll(t *testing.T) {
	conf := rls.Conf{
		Dialect:   "postgresql",
		Databases: map[string]string{"warehouse": "mysql", "pgdb": "postgres"},
		Tables:    map[string]string{"examples:main.sales": "sqlite"},
	}
	r, err := rls.NewRenderer(conf)
	if err != nil {
		t.Fatal(err)
	}
	dept := rls.Filter{Name: "department", Column: "department", Values: []any{"Fin'ance"},
		GroupKey: "department"}
	tests := []struct {
		name    string
		filters []rls.Filter
		want    []rls.Rendered
	}{
		{
			name:    "none",
			filters: nil,
			want:    []rls.Rendered{},
		},
		{
			name:    "database named: its dialect",
			filters: []rls.Filter{withTables(dept, "warehouse:sales", "pgdb:sales")},
			want: []rls.Rendered{
				{Name: "department", Tables: []string{"warehouse:sales"}, GroupKey: "department",
					FilterType: "REGULAR", Dialect: rls.MySQL,
					Clause: "CAST(CONVERT(department USING utf8mb4) AS BINARY) = X'46696E27616E6365'"},
				{Name: "department", Tables: []string{"pgdb:sales"}, GroupKey: "department",
					FilterType: "REGULAR", Dialect: rls.PostgreSQL,
					Clause: "department = convert_from(decode('46696E27616E6365', 'hex'), 'UTF8')"},
			},
		},
		{
			name:    "bare table: default, and each database of another dialect",
			filters: []rls.Filter{withTables(dept, "main.sales", "hr")},
			want: []rls.Rendered{
				{Name: "department", Tables: []string{"main.sales", "hr"}, GroupKey: "department",
					FilterType: "REGULAR", Dialect: rls.PostgreSQL,
					Clause: "department = convert_from(decode('46696E27616E6365', 'hex'), 'UTF8')"},
				{Name: "department", Tables: []string{"examples:main.sales"}, GroupKey: "department",
					FilterType: "REGULAR", Dialect: rls.SQLite,
					Clause: "department = char(70, 105, 110, 39, 97, 110, 99, 101)"},
				{Name: "department", Tables: []string{"warehouse:main.sales", "warehouse:hr"},
					GroupKey: "department", FilterType: "REGULAR", Dialect: rls.MySQL,
					Clause: "CAST(CONVERT(department USING utf8mb4) AS BINARY) = X'46696E27616E6365'"},
			},
		},
		{
			name: "filter type and no tables",
			filters: []rls.Filter{{Name: "base", Column: "region", Values: []any{"EU"},
				FilterType: "base"}},
			want: []rls.Rendered{{Name: "base", Tables: []string{}, FilterType: "BASE",
				Dialect: rls.PostgreSQL, Clause: "region = 'EU'"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.RenderAll(tt.filters)
			if err != nil {
				t.Fatalf("RenderAll: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("rendered differ (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenderAllFailsClosed(t *testing.T) {
	r, err := rls.NewRenderer(rls.Conf{})
	if err != nil {
		t.Fatal(err)
	}
	good := rls.Filter{Name: "good", Column: "team", Values: []any{"red"}}
	tests := []struct {
		name    string
		filters []rls.Filter
		want    string
	}{
		{name: "bad value", filters: []rls.Filter{good, {Name: "bad", Column: "d", Values: []any{"a\x00"}}},
			want: `rls filter "bad": value 0: string holds a NUL character`},
		{name: "bad column", filters: []rls.Filter{{Name: "col", Column: "d;drop", Values: []any{"a"}}, good},
			want: `rls filter "col": column "d;drop" is not a plain identifier`},
		{name: "bad filter type", filters: []rls.Filter{{Name: "ft", Column: "d", FilterType: "SUPER"}},
			want: `rls filter "ft": filter_type "SUPER" is unknown`},
		{name: "empty table", filters: []rls.Filter{{Name: "tb", Column: "d", Tables: []string{" "}}},
			want: `rls filter "tb": table " " is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.RenderAll(tt.filters)
			if err == nil {
				t.Fatalf("got %v, want an error", got)
			}
			if got != nil {
				t.Errorf("got %v with the error, want nil", got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to hold %q", err, tt.want)
			}
		})
	}
}

func withTables(f rls.Filter, tables ...string) rls.Filter {
	f.Tables = tables
	return f
}
