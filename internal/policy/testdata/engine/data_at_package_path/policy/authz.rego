package test.authz

default allow := false
