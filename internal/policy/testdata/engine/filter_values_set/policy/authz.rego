package test.authz

default allow := false

rls_filters contains f if {
	input.claims.x
	f := object.union({"name": "f", "tables": ["t"], "column": "c", "values": ["v"]}, {"values": {"a"}})
}
