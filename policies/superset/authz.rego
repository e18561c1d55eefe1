# METADATA
# title: Superset authorization
# description: |
#   Decides whether a person may use Superset, with which roles and which
#   row-level security filters, from the verified claims of their ID token.
#   The mapping lives in data.superset.mappings (mappings/data.json), so
#   that administrators change a table, not this code.
package superset.authz

import data.superset.mappings

# METADATA
# title: Allow
# description: A person may use Superset when at least one role is granted.
# entrypoint: true
default allow := false

allow if count(roles) > 0

# METADATA
# title: Roles
# description: Superset role names granted by groups and by claim values.
# entrypoint: true
roles contains grant.role if some grant in _grants

# METADATA
# title: Row-level security filters
# description: |
#   Structured filters, never SQL: one per claim mapping with an "rls"
#   entry whose claim the person has, and a match-nothing filter for each
#   governed table that no other filter of the person covers.
# entrypoint: true
rls_filters contains f if some f in _claim_filters

rls_filters contains f if some f in _governed_filters

# METADATA
# title: Reasons
# description: Human-readable reasons for every grant, filter and refusal.
# entrypoint: true
reasons contains grant.reason if some grant in _grants

reasons contains r if {
	some f in _claim_filters
	count(f.values) > 0
	r := sprintf("claim mapping '%s' limits %s to rows where %s is one of %v", [
		f.name, concat(", ", f.tables), f.column, f.values,
	])
}

reasons contains r if {
	some f in _claim_filters
	count(f.values) == 0
	r := sprintf("claim mapping '%s' is required on %s and this person has no such claim: no rows", [
		f.name, concat(", ", f.tables),
	])
}

reasons contains r if {
	some f in _governed_filters
	r := sprintf("table %s is governed and no filter of this person applies to it: no rows", [f.tables[0]])
}

reasons contains r if {
	some role in _exempting_roles
	r := sprintf("role %s is exempt from the deny on governed tables", [role])
}

reasons contains "no group or claim of this person maps to a role" if count(roles) == 0

reasons contains concat(" ", [
	"the identity provider left this person's groups out of the token (group overage),",
	"so group mappings could not apply; administrators: have the IdP send only the",
	"groups assigned to the application, or map a claim instead",
]) if {
	input.groups_overage == true
}

# METADATA
# title: Matches
# description: The data entries that matched, for explanations.
# entrypoint: true
matches contains {"kind": "group", "entry": key, "value": group} if some [key, group] in _matched_groups

matches contains {"kind": "claim", "entry": hit.mapping, "claim": hit.claim, "value": hit.value} if {
	some hit in _claim_hits
}

matches contains {"kind": "governed_table", "entry": f.tables[0]} if some f in _governed_filters

# METADATA
# title: Input paths
# description: |
#   The parts of the input this policy reads: the groups, the overage flag
#   and every claim named by a claim mapping. authzd hands the policy only
#   these, and evaluates it once for everyone whose values are equal. A
#   rule that reads another part of the input must add its path here.
# entrypoint: true
input_paths contains ["groups"]

input_paths contains ["groups_overage"]

input_paths contains ["claims", claim] if {
	some mapping in mappings.claims
	some claim in mapping.claims
}

# The person's groups: input.groups as an array, or a single string, with
# options.strip_group_prefix (such as Keycloak's "/" of full group paths)
# taken off.
_groups contains g if {
	some raw in _as_array(input.groups)
	is_string(raw)
	g := trim_prefix(raw, _group_prefix)
	g != ""
}

default _group_prefix := ""

_group_prefix := p if {
	p := mappings.options.strip_group_prefix
	is_string(p)
}

_as_array(x) := x if {
	is_array(x)
} else := [x]

# [data key, person's group] for each group entry that matched.
_matched_groups contains [g, g] if {
	not mappings.options.case_insensitive_groups == true
	some g in _groups
	mappings.groups[g]
}

_matched_groups contains [key, g] if {
	mappings.options.case_insensitive_groups == true
	some key, _ in mappings.groups
	some g in _groups
	lower(key) == lower(g)
}

_grants contains {"role": role, "reason": reason} if {
	not mappings.options.case_insensitive_groups == true
	some group in _groups
	some role in mappings.groups[group].roles
	reason := sprintf("group '%s' grants role %s", [group, role])
}

_grants contains {"role": role, "reason": reason} if {
	mappings.options.case_insensitive_groups == true
	some [key, group] in _matched_groups
	key == group
	some role in mappings.groups[key].roles
	reason := sprintf("group '%s' grants role %s", [group, role])
}

_grants contains {"role": role, "reason": reason} if {
	mappings.options.case_insensitive_groups == true
	some [key, group] in _matched_groups
	key != group
	some role in mappings.groups[key].roles
	reason := sprintf("group '%s' (matched '%s' ignoring case) grants role %s", [group, key, role])
}

# Claim grants, filters and hits each walk the mapping's claims themselves
# (the same test as _claim_hits): a decision then never builds the hit
# objects, which only the matches of an explanation need.
_grants contains {"role": role, "reason": reason} if {
	some mapping in mappings.claims
	table := mapping.roles
	some claim in mapping.claims
	some value in _as_array(input.claims[claim])
	type_name(value) in {"string", "number", "boolean"}
	value != ""
	key := _key(value)
	some role in table[key]
	reason := sprintf("claim %s '%s' grants role %s", [claim, key, role])
}

# One hit per claim value of a claim mapping: claims may hold a string, a
# number, a boolean, or an array of them; empty strings count as absent.
_claim_hits contains {"mapping": name, "claim": claim, "value": value} if {
	some name, mapping in mappings.claims
	some claim in mapping.claims
	some value in _as_array(input.claims[claim])
	type_name(value) in {"string", "number", "boolean"}
	value != ""
}

# Role tables are keyed by strings; numbers and booleans match their JSON
# text ("1000", "true").
_key(v) := v if {
	is_string(v)
} else := json.marshal(v)

_claim_filters contains f if {
	some name, mapping in mappings.claims
	rls := mapping.rls
	values := {v | some claim in mapping.claims; some v in _as_array(input.claims[claim]); type_name(v) in {"string", "number", "boolean"}; v != ""}
	count(values) > 0
	f := {
		"name": name,
		"tables": rls.tables,
		"column": rls.column,
		"operator": object.get(rls, "operator", "in"),
		"values": sort(_one_kind(values)),
		"group_key": object.get(rls, "group_key", name),
		"filter_type": object.get(rls, "filter_type", "REGULAR"),
	}
}

# A mapping whose rls says "required": true denies its tables to a person
# without the claim, even when other filters cover them.
_claim_filters contains f if {
	some name, mapping in mappings.claims
	mapping.rls.required == true
	not _hit_mappings[name]
	rls := mapping.rls
	f := {
		"name": name,
		"tables": rls.tables,
		"column": rls.column,
		"operator": object.get(rls, "operator", "in"),
		"values": [],
		"group_key": object.get(rls, "group_key", name),
		"filter_type": object.get(rls, "filter_type", "REGULAR"),
	}
}

_hit_mappings contains hit.mapping if some hit in _claim_hits

# The values of one filter must be of one kind for the SQL renderer: when
# claims mix kinds (["Sales", 7]), all become strings ("7").
_one_kind(values) := values if {
	count(values) == 1
} else := values if {
	count({type_name(v) | some v in values}) == 1
} else := {_key(v) | some v in values}

_exempting_roles contains role if {
	some role in mappings.governed_tables_exempt_roles
	role in roles
}

# A governed table that no filter of the person covers gets a filter with
# no values, which matches no row: deny by default, unlike Superset's own
# row-level security.
_governed_filters contains f if {
	count(_exempting_roles) == 0
	covered := {t | some f in _claim_filters; some t in f.tables}
	some table, governed in mappings.governed_tables
	not table in covered
	f := {
		"name": concat("", ["governed:", table]),
		"tables": [table],
		"column": governed.column,
		"operator": "in",
		"values": [],
		"group_key": "",
		"filter_type": "REGULAR",
	}
}
