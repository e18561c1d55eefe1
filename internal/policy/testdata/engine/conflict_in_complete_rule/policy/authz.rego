package test.authz

allow := true if input.claims.a

allow := false if input.claims.b
