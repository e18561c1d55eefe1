package rls_test

import (
	"fmt"

	"github.com/authzd/authzd/internal/rls"
)

func ExampleRender() {
	f := rls.Filter{Name: "department", Column: "department",
		Values: []any{"Finance", "x' OR '1'='1"}}
	for _, d := range []rls.Dialect{rls.PostgreSQL, rls.MySQL, rls.SQLite} {
		clause, err := rls.Render(d, f)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(clause)
	}
	// Output:
	// department IN ('Finance', convert_from(decode('7827204F52202731273D2731', 'hex'), 'UTF8'))
	// CAST(CONVERT(department USING utf8mb4) AS BINARY) IN ('Finance', X'7827204F52202731273D2731')
	// department IN ('Finance', char(120, 39, 32, 79, 82, 32, 39, 49, 39, 61, 39, 49))
}

func ExampleRenderer_RenderAll() {
	r, err := rls.NewRenderer(rls.Conf{
		Dialect:   "postgresql",
		Databases: map[string]string{"warehouse": "mariadb"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := r.RenderAll([]rls.Filter{{
		Name: "team", Tables: []string{"sales"}, Column: "team",
		Values: []any{"red"}, GroupKey: "team",
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range out {
		fmt.Printf("%s %v %s: %s\n", f.Name, f.Tables, f.Dialect, f.Clause)
	}
	// Output:
	// team [sales] postgresql: team = 'red'
	// team [warehouse:sales] mysql: CAST(CONVERT(team USING utf8mb4) AS BINARY) = 'red'
}
