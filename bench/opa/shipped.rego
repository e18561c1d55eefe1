# METADATA
# title: The shipped policy's rules in one document
# description: |
#   Reads every rule of authzd's contract from data.superset.authz in one
#   evaluation, together with the subject, as authzd's response carries it.
package bench.shipped

import data.superset.authz

# METADATA
# title: Decision
# description: allow, roles, rls_filters and reasons of the shipped policy.
decision := {
	"allowed": authz.allow,
	"subject": {
		"issuer": input.issuer,
		"subject": input.claims.sub,
		"username": input.username,
		"groups": input.groups,
	},
	"roles": authz.roles,
	"rls_filters": authz.rls_filters,
	"reasons": authz.reasons,
}
