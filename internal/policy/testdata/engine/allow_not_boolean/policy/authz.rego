package test.authz

allow := "yes" if input.claims.x
