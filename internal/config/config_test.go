package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/authzd/authzd/internal/policy"
)

func TestLoadFull(t *testing.T) {
	c, err := Load("testdata/full.yaml", nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := c.GRPCAddr, "127.0.0.1:9191"; got != want {
		t.Errorf("grpc_addr: got %q, want %q", got, want)
	}
	if got, want := c.ClockSkew, 30*time.Second; got != want {
		t.Errorf("clock_skew: got %s, want %s", got, want)
	}
	if got, want := c.Issuers[0].GroupsClaim, "cognito:groups"; got != want {
		t.Errorf("issuers[0].groups_claim: got %q, want %q", got, want)
	}
	if diff := cmp.Diff(map[string]string{"token_use": "id"}, c.Issuers[0].RequiredClaims); diff != "" {
		t.Errorf("required_claims (-want +got):\n%s", diff)
	}
	if got, want := c.Policy.Dialect, "mysql"; got != want {
		t.Errorf("policy.dialect: got %q, want %q", got, want)
	}
	if c.Policy.ResultCacheSize == nil || *c.Policy.ResultCacheSize != 500 {
		t.Errorf("policy.result_cache_size: got %v, want 500", c.Policy.ResultCacheSize)
	}
	if c.DecisionCache.Size == nil || *c.DecisionCache.Size != 0 || c.DecisionCache.TTL != 30*time.Second {
		t.Errorf("decision_cache: got %v, %s; want size 0 (off) and ttl 30s",
			c.DecisionCache.Size, c.DecisionCache.TTL)
	}
	// Defaults fill what the file leaves out.
	if got, want := c.Limits.MaxTokenBytes, DefaultMaxTokenBytes; got != want {
		t.Errorf("limits.max_token_bytes: got %d, want default %d", got, want)
	}
	if got, want := c.ShutdownTimeout, DefaultShutdownTimeout; got != want {
		t.Errorf("shutdown_timeout: got %s, want default %s", got, want)
	}
}

func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  []string
		// want lists substrings that must all appear in the error.
		want []string
	}{
		{
			name: "every problem at once",
			file: "testdata/bad.yaml",
			want: []string{
				`testdata/bad.yaml`,
				`grpc_addr: "nowhere" is not host:port`,
				`clock_skew: 1h0m0s is outside 0s..10m`,
				`issuers[0].issuer: "idp.example.com" is not an http(s) URL`,
				`issuers[0].audiences: at least one audience is required`,
				`issuers[0].algorithms[0]: "HS256" is not allowed`,
				`issuers[0].algorithms[1]: "none" is not allowed`,
				`issuers[1].issuer: "idp.example.com" is listed twice`,
				`policy.result_cache_size: -1 is outside 0..10000000`,
			},
		},
		{
			name: "unknown keys name the key and line",
			file: "testdata/unknown-key.yaml",
			want: []string{`testdata/unknown-key.yaml`, `line 2: field polcy not found`,
				`line 7: field audience not found`},
		},
		{
			name: "bad duration",
			file: "testdata/bad-duration.yaml",
			want: []string{`testdata/bad-duration.yaml`, `soon`},
		},
		{
			name: "bad environment override",
			file: "testdata/full.yaml",
			env:  []string{"AUTHZD_CLOCK_SKEW=forever", "AUTHZD_HTTP_ADDR=127.0.0.1:9191"},
			want: []string{`environment AUTHZD_CLOCK_SKEW`,
				`grpc_addr and http_addr: both are "127.0.0.1:9191"`},
		},
		{
			name: "missing file",
			file: "testdata/nope.yaml",
			want: []string{`read config`, `nope.yaml`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.file, tt.env)
			if err == nil {
				t.Fatal("Load: got nil error, want a refusal")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not mention %q", err, w)
				}
			}
		})
	}
}

func TestDecisionCacheDefaults(t *testing.T) {
	c := Default()
	if c.Policy.ResultCacheSize == nil || *c.Policy.ResultCacheSize != DefaultResultCacheSize {
		t.Errorf("policy.result_cache_size: got %v, want %d", c.Policy.ResultCacheSize, DefaultResultCacheSize)
	}
	if c.DecisionCache.Size == nil || *c.DecisionCache.Size != DefaultDecisionCacheSize {
		t.Errorf("decision_cache.size: got %v, want %d", c.DecisionCache.Size, DefaultDecisionCacheSize)
	}
}

func TestEmptyFileNeedsIssuers(t *testing.T) {
	_, err := Parse("empty.yaml", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "issuers: at least one issuer is required") {
		t.Errorf("got %v, want a missing-issuers error", err)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	c, err := Load("testdata/full.yaml", []string{
		"AUTHZD_HTTP_ADDR=127.0.0.1:7070", "AUTHZD_POLICY_DIR=/etc/authzd/policies",
		"AUTHZD_CLOCK_SKEW=5s", "AUTHZD_POLICY_RESULT_CACHE_SIZE=0", "UNRELATED=1",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.HTTPAddr, c.Policy.Dir, c.ClockSkew, *c.Policy.ResultCacheSize}
	want := []any{"127.0.0.1:7070", "/etc/authzd/policies", 5 * time.Second, 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("overrides (-want +got):\n%s", diff)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:1": true, "[::1]:80": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.1:80": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q): got %v, want %v", addr, got, want)
		}
	}
}

// bundleIssuers is the issuer list that every bundle configuration below
// needs to be valid otherwise.
const bundleIssuers = `
issuers:
  - issuer: https://idp.example.com/
    audiences: [superset]
`

func TestPolicyBundle(t *testing.T) {
	c, err := Parse("bundle.yaml", []byte(`
policy:
  bundle:
    url: https://bundles.example.com/authzd/bundle.tar.gz
    polling: {min_delay_seconds: 5, max_delay_seconds: 15, long_polling_timeout_seconds: 60}
    credentials:
      bearer: {token_file: /var/run/secrets/authzd/bundle-token}
    signing: {public_key_file: /etc/authzd/bundle.pem, scope: write}
`+bundleIssuers), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &policy.BundleConf{
		URL: "https://bundles.example.com/authzd/bundle.tar.gz",
		Polling: policy.BundlePolling{
			MinDelaySeconds: 5, MaxDelaySeconds: 15, LongPollingTimeoutSeconds: 60,
		},
		Credentials: policy.BundleCredentials{Bearer: &policy.BundleBearer{
			TokenFile: "/var/run/secrets/authzd/bundle-token", Scheme: "Bearer",
		}},
		Signing: &policy.BundleSigning{
			PublicKeyFile: "/etc/authzd/bundle.pem", KeyID: policy.DefaultBundleSigningKeyID,
			Algorithm: policy.DefaultBundleSigningAlg, Scope: "write",
		},
	}
	if diff := cmp.Diff(want, c.Policy.Bundle); diff != "" {
		t.Errorf("policy.bundle (-want +got):\n%s", diff)
	}

	c, err = Parse("s3.yaml", []byte(`
policy:
  bundle:
    url: https://my-bucket.s3.eu-west-1.amazonaws.com/authzd/bundle.tar.gz
    credentials:
      s3_signing: {web_identity_credentials: true, aws_region: eu-west-1}
`+bundleIssuers), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := c.Policy.Bundle.Polling
	wantPolling := policy.BundlePolling{
		MinDelaySeconds: policy.DefaultBundleMinDelaySeconds,
		MaxDelaySeconds: policy.DefaultBundleMaxDelaySeconds,
	}
	if diff := cmp.Diff(wantPolling, got); diff != "" {
		t.Errorf("policy.bundle.polling defaults (-want +got):\n%s", diff)
	}

	c, err = Parse("dir.yaml", []byte(bundleIssuers), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Policy.Bundle != nil {
		t.Errorf("policy.bundle without the key: got %+v, want nil", c.Policy.Bundle)
	}
}

func TestPolicyBundleRefuses(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "every problem at once",
			yaml: `
policy:
  bundle:
    polling: {min_delay_seconds: 30, max_delay_seconds: 10}
    credentials:
      bearer: {scheme: Bearer}
    signing: {algorithm: none}
`,
			want: []string{
				"policy.bundle.url: required",
				"policy.bundle.polling: min_delay_seconds 30 and max_delay_seconds 10",
				"policy.bundle.credentials.bearer.token_file: required",
				"policy.bundle.signing.public_key_file: required",
				`policy.bundle.signing.algorithm: "none" is not supported`,
			},
		},
		{
			name: "inline token is not a key",
			yaml: `
policy:
  bundle:
    url: https://bundles.example.com/b.tar.gz
    credentials:
      bearer: {token: s3cret}
`,
			want: []string{"field token not found"},
		},
		{
			name: "password in the url",
			yaml: `
policy:
  bundle: {url: "https://user:pw@bundles.example.com/b.tar.gz"}
`,
			want: []string{"policy.bundle.url: credentials in the URL are not allowed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bundle.yaml", []byte(tt.yaml+bundleIssuers), nil)
			if err == nil {
				t.Fatal("Parse: got nil error, want a refusal")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not mention %q", err, w)
				}
			}
		})
	}
}
