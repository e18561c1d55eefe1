package test.authz

allow := true if input.username == ""

allow := false if count(input.groups) == 0
