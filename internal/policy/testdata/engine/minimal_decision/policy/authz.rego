package test.authz

default allow := false

allow if "Data Engineers" in input.groups

roles contains "Alpha" if allow

rls_filters contains {
	"name": "region",
	"tables": ["sales"],
	"column": "region",
	"values": [input.claims.region, 7, true],
} if input.claims.region

reasons contains "ok" if allow
