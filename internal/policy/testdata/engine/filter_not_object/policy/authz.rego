package test.authz

default allow := false

rls_filters contains f if {
	input.claims.x
	f := "department = 'x'"
}
