package other.authz

default allow := false
