package test.authz

allow if input.claims.never
