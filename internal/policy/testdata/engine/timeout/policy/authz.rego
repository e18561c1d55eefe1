package test.authz

default allow := false

allow if {
	input.claims.slow
	some i in numbers.range(1, 100000)
	some j in numbers.range(1, 100000)
	i + j < 0
}
