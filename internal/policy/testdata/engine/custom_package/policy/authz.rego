package acme.superset.decide

allow if input.username == "root"

roles contains "Admin" if allow
