package test.authz

default allow := false

allow if {
	input.groups[
}
