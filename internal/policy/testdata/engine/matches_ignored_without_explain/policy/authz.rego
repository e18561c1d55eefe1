package test.authz

default allow := false

matches := "x" if input.claims.x
