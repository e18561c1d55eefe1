package test.authz

default allow := false

roles contains 1 if input.claims.x
