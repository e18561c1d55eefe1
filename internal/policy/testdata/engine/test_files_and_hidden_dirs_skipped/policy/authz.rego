package test.authz

default allow := false

allow if "ops" in input.groups
