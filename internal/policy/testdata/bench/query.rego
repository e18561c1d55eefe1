allow := [x | x = data.superset.authz.allow]; roles := [x | x = data.superset.authz.roles]; rls_filters := [x | x = data.superset.authz.rls_filters]; reasons := [x | x = data.superset.authz.reasons]
