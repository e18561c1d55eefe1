package test.authz

default allow := false

roles := "Admin"
