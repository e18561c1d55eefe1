package test.authz

default allow := false

roles := "Admin" if input.claims.x
