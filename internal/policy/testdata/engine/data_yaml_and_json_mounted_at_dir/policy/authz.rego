package test.authz

default allow := false

allow if input.groups[0] in data.cfg.admins

roles contains data.cfg.more.role if allow
