package superset.authz_test

import data.superset.authz

# A person from the shipped data's point of view.
person(groups, claims) := {
	"issuer": "https://idp.example.com/",
	"claims": claims,
	"groups": groups,
	"groups_overage": false,
	"username": "alice@example.com",
	"context": {},
}

refusal := "no group or claim of this person maps to a role"

filter_named(name, fs) := [f | some f in fs; f.name == name][0]

test_empty_input_is_refused if {
	not authz.allow with input as {}
	count(authz.roles) == 0 with input as {}
	refusal in authz.reasons with input as {}
}

test_data_engineers_get_alpha if {
	p := person(["Data Engineers"], {})
	authz.allow with input as p
	authz.roles == {"Alpha"} with input as p
	"group 'Data Engineers' grants role Alpha" in authz.reasons with input as p
	not refusal in authz.reasons with input as p
}

test_analytics_users_get_gamma if {
	p := person(["Analytics Users"], {})
	authz.roles == {"Gamma"} with input as p
	"group 'Analytics Users' grants role Gamma" in authz.reasons with input as p
}

test_superset_admins_get_admin if {
	p := person(["Superset Admins"], {})
	authz.roles == {"Admin"} with input as p
	"group 'Superset Admins' grants role Admin" in authz.reasons with input as p
}

test_several_groups_grant_several_roles if {
	p := person(["Data Engineers", "Analytics Users", "Everyone"], {})
	authz.roles == {"Alpha", "Gamma"} with input as p
}

test_unknown_group_is_refused if {
	p := person(["Everyone"], {})
	not authz.allow with input as p
	authz.reasons == {
		refusal,
		"table sales is governed and no filter of this person applies to it: no rows",
		"table finance.revenue is governed and no filter of this person applies to it: no rows",
	} with input as p
}

test_group_as_a_single_string if {
	p := person("Data Engineers", {})
	authz.roles == {"Alpha"} with input as p
}

test_groups_ignore_non_strings_and_empty if {
	p := person([1, "", null, {"x": 1}], {})
	not authz.allow with input as p
}

test_missing_groups_and_claims if {
	p := {"issuer": "https://idp.example.com/", "username": "x"}
	not authz.allow with input as p
	refusal in authz.reasons with input as p
}

test_group_match_is_exact_by_default if {
	p := person(["data engineers", "DATA ENGINEERS"], {})
	not authz.allow with input as p
}

test_group_match_ignores_case_when_enabled if {
	p := person(["data engineers"], {})
	authz.roles == {"Alpha"} with input as p
		with data.superset.mappings.options.case_insensitive_groups as true
	r := "group 'data engineers' (matched 'Data Engineers' ignoring case) grants role Alpha"
	r in authz.reasons with input as p
		with data.superset.mappings.options.case_insensitive_groups as true
}

test_exact_case_in_insensitive_mode if {
	p := person(["Data Engineers"], {})
	"group 'Data Engineers' grants role Alpha" in authz.reasons with input as p
		with data.superset.mappings.options.case_insensitive_groups as true
}

test_department_grants_role_and_filter if {
	p := person([], {"department": "Finance"})
	authz.allow with input as p
	authz.roles == {"Dept Finance"} with input as p
	"claim department 'Finance' grants role Dept Finance" in authz.reasons with input as p
	f := filter_named("department", authz.rls_filters) with input as p
	f == {
		"name": "department",
		"tables": ["sales", "finance.revenue"],
		"column": "department",
		"operator": "in",
		"values": ["Finance"],
		"group_key": "department",
		"filter_type": "REGULAR",
	}
}

test_cognito_custom_department if {
	p := person([], {"custom:department": "Sales"})
	authz.roles == {"Dept Sales"} with input as p
	"claim custom:department 'Sales' grants role Dept Sales" in authz.reasons with input as p
	f := filter_named("department", authz.rls_filters) with input as p
	f.values == ["Sales"]
}

test_unlisted_department_filters_without_role if {
	p := person(["Analytics Users"], {"department": "Marketing"})
	authz.roles == {"Gamma"} with input as p
	f := filter_named("department", authz.rls_filters) with input as p
	f.values == ["Marketing"]
}

test_department_as_array if {
	p := person([], {"department": ["Sales", "Finance", "Sales"]})
	authz.roles == {"Dept Finance", "Dept Sales"} with input as p
	f := filter_named("department", authz.rls_filters) with input as p
	f.values == ["Finance", "Sales"]
}

test_department_from_both_claims if {
	p := person([], {"department": "Sales", "custom:department": "Finance"})
	f := filter_named("department", authz.rls_filters) with input as p
	f.values == ["Finance", "Sales"]
}

test_empty_and_object_claims_are_absent if {
	p := person(["Data Engineers"], {"department": "", "team": {"name": "x"}, "cost_center": [null, ""]})
	fs := authz.rls_filters with input as p
	count(fs) == 2
	every f in fs {
		startswith(f.name, "governed:")
		f.values == []
	}
}

test_team_filters_sales if {
	p := person(["Analytics Users"], {"team": "payments"})
	f := filter_named("team", authz.rls_filters) with input as p
	f == {
		"name": "team",
		"tables": ["sales"],
		"column": "team",
		"operator": "in",
		"values": ["payments"],
		"group_key": "team",
		"filter_type": "REGULAR",
	}
	r := "claim mapping 'team' limits sales to rows where team is one of [\"payments\"]"
	r in authz.reasons with input as p

	# finance.revenue is governed and not covered by team.
	g := filter_named("governed:finance.revenue", authz.rls_filters) with input as p
	g.values == []
}

test_cognito_custom_team if {
	p := person([], {"custom:team": "payments"})
	f := filter_named("team", authz.rls_filters) with input as p
	f.values == ["payments"]
	not authz.allow with input as p
}

test_cost_center_number_and_string if {
	num := person([], {"cost_center": 1000})
	authz.roles == {"Cost Center Reviewer"} with input as num
	"claim cost_center '1000' grants role Cost Center Reviewer" in authz.reasons with input as num
	f := filter_named("cost_center", authz.rls_filters) with input as num
	f.values == [1000]
	f.tables == ["finance.revenue"]

	str := person([], {"custom:cost_center": "1000"})
	authz.roles == {"Cost Center Reviewer"} with input as str
	g := filter_named("cost_center", authz.rls_filters) with input as str
	g.values == ["1000"]
}

test_boolean_claim_value if {
	p := person(["Analytics Users"], {"team": true})
	f := filter_named("team", authz.rls_filters) with input as p
	f.values == [true]
}

test_governed_tables_deny_without_filter if {
	p := person(["Analytics Users"], {})
	authz.allow with input as p
	authz.rls_filters == {
		{
			"name": "governed:sales", "tables": ["sales"], "column": "department",
			"operator": "in", "values": [], "group_key": "", "filter_type": "REGULAR",
		},
		{
			"name": "governed:finance.revenue", "tables": ["finance.revenue"], "column": "department",
			"operator": "in", "values": [], "group_key": "", "filter_type": "REGULAR",
		},
	} with input as p
	"table sales is governed and no filter of this person applies to it: no rows" in authz.reasons with input as p
	m := {"kind": "governed_table", "entry": "sales"}
	m in authz.matches with input as p
}

test_department_covers_both_governed_tables if {
	p := person(["Analytics Users"], {"department": "Finance"})
	count(authz.rls_filters) == 1 with input as p
}

test_admin_is_exempt_from_governed_deny if {
	p := person(["Superset Admins"], {})
	count(authz.rls_filters) == 0 with input as p
	"role Admin is exempt from the deny on governed tables" in authz.reasons with input as p
}

test_admin_with_claims_keeps_claim_filters if {
	p := person(["Superset Admins"], {"team": "payments"})
	{f.name | some f in authz.rls_filters} == {"team"} with input as p
}

test_group_overage_reason if {
	p := object.union(person([], {"department": "Sales"}), {"groups_overage": true})
	authz.roles == {"Dept Sales"} with input as p
	rs := authz.reasons with input as p
	some r in rs
	contains(r, "group overage")
}

test_no_overage_reason_without_overage if {
	p := person(["Data Engineers"], {})
	rs := authz.reasons with input as p
	every r in rs {
		not contains(r, "group overage")
	}
}

test_matches_lists_data_entries if {
	p := person(["Data Engineers"], {"custom:department": "Finance"})
	authz.matches == {
		{"kind": "group", "entry": "Data Engineers", "value": "Data Engineers"},
		{"kind": "claim", "entry": "department", "claim": "custom:department", "value": "Finance"},
	} with input as p
}

test_rls_defaults_and_not_in if {
	mappings := {"claims": {"region": {
		"claims": ["region"],
		"rls": {"column": "region", "tables": ["t"], "operator": "not_in", "filter_type": "BASE"},
	}}}
	p := person([], {"region": "EU"})
	authz.rls_filters == {{
		"name": "region", "tables": ["t"], "column": "region", "operator": "not_in",
		"values": ["EU"], "group_key": "region", "filter_type": "BASE",
	}} with input as p
		with data.superset.mappings as mappings
}

test_mapping_without_rls_gives_no_filter if {
	mappings := {"claims": {"level": {"claims": ["level"], "roles": {"3": ["Senior"]}}}}
	p := person([], {"level": 3})
	authz.roles == {"Senior"} with input as p with data.superset.mappings as mappings
	count(authz.rls_filters) == 0 with input as p with data.superset.mappings as mappings
}

test_no_data_refuses if {
	p := person(["Data Engineers"], {"department": "Finance"})
	not authz.allow with input as p with data.superset.mappings as {}
	authz.reasons == {refusal} with input as p with data.superset.mappings as {}
}

test_group_prefix_stripped_when_configured if {
	p := person(["/Data Engineers", "/analytics/EU"], {})
	not authz.allow with input as p
	authz.roles == {"Alpha"} with input as p
		with data.superset.mappings.options.strip_group_prefix as "/"
	"group 'Data Engineers' grants role Alpha" in authz.reasons with input as p
		with data.superset.mappings.options.strip_group_prefix as "/"
}

test_group_prefix_must_be_a_string if {
	p := person(["Data Engineers"], {})
	authz.roles == {"Alpha"} with input as p
		with data.superset.mappings.options.strip_group_prefix as 1
}

test_mixed_value_kinds_become_strings if {
	p := person([], {"department": ["Sales", 7, true]})
	f := filter_named("department", authz.rls_filters) with input as p
	f.values == ["7", "Sales", "true"]
}

test_one_kind_of_numbers_stays_numbers if {
	p := person([], {"cost_center": [1000, 2000]})
	f := filter_named("cost_center", authz.rls_filters) with input as p
	f.values == [1000, 2000]
}

test_required_mapping_denies_without_claim if {
	mappings := json.patch(data.superset.mappings, [{"op": "add", "path": "/claims/department/rls/required", "value": true}])
	p := person(["Analytics Users"], {"team": "payments"})
	fs := authz.rls_filters with input as p with data.superset.mappings as mappings
	filter_named("department", fs) == {
		"name": "department",
		"tables": ["sales", "finance.revenue"],
		"column": "department",
		"operator": "in",
		"values": [],
		"group_key": "department",
		"filter_type": "REGULAR",
	}
	filter_named("team", fs).values == ["payments"]
	r := "claim mapping 'department' is required on sales, finance.revenue and this person has no such claim: no rows"
	r in authz.reasons with input as p with data.superset.mappings as mappings

	# With the claim, the required mapping filters as usual.
	q := person(["Analytics Users"], {"department": "Sales"})
	gs := authz.rls_filters with input as q with data.superset.mappings as mappings
	filter_named("department", gs).values == ["Sales"]
}

test_claim_mapping_without_role_table_only_filters if {
	p := person([], {"team": 7})
	not authz.allow with input as p
	filter_named("team", authz.rls_filters).values == [7] with input as p
	r := "claim mapping 'team' limits sales to rows where team is one of [7]"
	r in authz.reasons with input as p
	{"kind": "claim", "entry": "team", "claim": "team", "value": 7} in authz.matches with input as p
}

test_case_insensitive_matches_every_key_of_that_name if {
	groups := object.union(data.superset.mappings.groups, {"data engineers": {"roles": ["Lower"]}})
	p := person(["DATA ENGINEERS"], {})
	authz.roles == {"Alpha", "Lower"} with input as p
		with data.superset.mappings.groups as groups
		with data.superset.mappings.options.case_insensitive_groups as true
	authz.reasons == {
		"group 'DATA ENGINEERS' (matched 'Data Engineers' ignoring case) grants role Alpha",
		"group 'DATA ENGINEERS' (matched 'data engineers' ignoring case) grants role Lower",
		"table sales is governed and no filter of this person applies to it: no rows",
		"table finance.revenue is governed and no filter of this person applies to it: no rows",
	} with input as p
		with data.superset.mappings.groups as groups
		with data.superset.mappings.options.case_insensitive_groups as true
}

test_mixed_value_kinds_reason_and_roles if {
	p := person([], {"department": ["Sales", 7, true]})
	authz.roles == {"Dept Sales"} with input as p
	r := "claim mapping 'department' limits sales, finance.revenue to rows where department is one of [\"7\", \"Sales\", \"true\"]"
	r in authz.reasons with input as p
}

test_input_paths_name_every_mapped_claim if {
	authz.input_paths == {
		["groups"], ["groups_overage"],
		["claims", "department"], ["claims", "custom:department"],
		["claims", "team"], ["claims", "custom:team"],
		["claims", "cost_center"], ["claims", "custom:cost_center"],
	}
}

test_input_paths_follow_the_data if {
	m := {"claims": {"org": {"claims": ["org", "https://example.com/org"], "roles": {"x": ["X"]}}}}
	authz.input_paths == {["groups"], ["groups_overage"], ["claims", "org"], ["claims", "https://example.com/org"]} with data.superset.mappings as m
}

# The decision with only the declared parts of the input is the decision
# with all of it: what authzd relies on when it hands over only those.
decision := [authz.allow, authz.roles, authz.rls_filters, authz.reasons]

test_declared_input_decides_alone if {
	full := {
		"issuer": "https://idp.example.com/",
		"claims": {"sub": "u1", "email": "a@example.com", "department": "Sales", "team": "Retail", "exp": 1},
		"groups": ["Data Engineers"],
		"groups_overage": false,
		"username": "a@example.com",
		"context": {"dashboard": 7},
	}
	part := {
		"claims": {"department": "Sales", "team": "Retail"},
		"groups": ["Data Engineers"],
		"groups_overage": false,
	}
	d := decision with input as full
	d[0] == true
	d == decision with input as part
}
