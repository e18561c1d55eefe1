package test.authz

default allow := false

roles[k] := 1 if {
	input.claims.x
	k := "Admin"
}
