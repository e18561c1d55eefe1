package policy_test

import (
	"context"
	"fmt"

	"github.com/authzd/authzd/internal/policy"
	"github.com/authzd/authzd/policies"
)

// Example evaluates the shipped policy, embedded in the binary, for a
// person in "Data Engineers" whose Cognito token carries a department.
func Example() {
	engine, err := policy.New(policy.Options{FS: policies.FS})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := engine.Evaluate(context.Background(), policy.Input{
		Issuer:   "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
		Claims:   map[string]any{"custom:department": "Finance"},
		Groups:   []string{"Data Engineers"},
		Username: "alice@example.com",
	}, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("allow:", res.Allow)
	fmt.Println("roles:", res.Roles)
	for _, f := range res.Filters {
		fmt.Printf("filter %s on %v: %s %s %v\n", f.Name, f.Tables, f.Column, f.Operator, f.Values)
	}
	for _, r := range res.Reasons {
		fmt.Println("reason:", r)
	}
	// Output:
	// allow: true
	// roles: [Alpha Dept Finance]
	// filter department on [sales finance.revenue]: department in [Finance]
	// reason: claim custom:department 'Finance' grants role Dept Finance
	// reason: claim mapping 'department' limits sales, finance.revenue to rows where department is one of ["Finance"]
	// reason: group 'Data Engineers' grants role Alpha
}
