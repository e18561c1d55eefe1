package test.authz

allow := 42
