package test.authz

default allow := false

rls_filters contains f if {
	input.claims.x
	f := object.remove({"name": "f", "tables": ["t"], "column": "c", "values": ["v"]}, ["values"])
}
