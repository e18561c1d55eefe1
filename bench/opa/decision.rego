# METADATA
# title: Benchmark comparison policy for OPA's server
# description: |
#   What Superset would run on `opa run --server` instead of authzd: verify
#   the RS256 ID token with io.jwt.decode_verify against the JWKS held in
#   data.bench_keys (iss, aud, exp and nbf checked by the built-in), then
#   decide with authzd's own shipped policy (data.superset.authz, loaded
#   from policies/) over the same input document that authzd builds. Both
#   servers therefore apply the same mapping, filters and token checks.
package bench.authz

# METADATA
# title: Decision
# description: The whole answer, shaped like authzd's REST response.
# entrypoint: true
default decision := {
	"allowed": false,
	"roles": [],
	"rls_filters": [],
	"reasons": ["token does not verify"],
}

decision := d if {
	d := data.bench.shipped.decision with input as _input
}

_claims := claims if {
	[valid, _, claims] := io.jwt.decode_verify(input.token, {
		"cert": data.bench_keys.jwks,
		"iss": data.bench_keys.issuer,
		"aud": "superset",
	})
	valid
}

# The input document of authzd's policy contract (DESIGN.md).
_input := {
	"issuer": _claims.iss,
	"claims": _claims,
	"groups": object.get(_claims, "groups", []),
	"groups_overage": false,
	"username": object.get(_claims, "email", _claims.sub),
	"context": object.get(input, "context", {}),
}
