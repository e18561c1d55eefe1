package test.authz

default allow := false

allow if 1 / input.claims.n > 0
