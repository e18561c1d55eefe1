package test.authz

default allow := false

reasons contains {"why": 1} if input.claims.x
