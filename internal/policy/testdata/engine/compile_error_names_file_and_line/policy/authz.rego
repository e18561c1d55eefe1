package test.authz

default allow := false

allow if undefined_function(input)
