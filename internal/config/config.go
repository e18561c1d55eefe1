// Package config reads authzd's YAML configuration file, applies AUTHZD_*
// environment overrides and defaults, and validates the result, reporting
// every problem at once with the file and the key that holds it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/authzd/authzd/internal/policy"
	"github.com/authzd/authzd/internal/rls"
	"github.com/authzd/authzd/internal/token"
)

// Defaults for the keys that have one.
const (
	DefaultGRPCAddr          = "127.0.0.1:9090"
	DefaultHTTPAddr          = "127.0.0.1:8080"
	DefaultClockSkew         = 60 * time.Second
	DefaultShutdownTimeout   = 15 * time.Second
	DefaultPolicyDir         = "policies"
	DefaultPolicyPackage     = policy.DefaultPackage
	DefaultDialect           = string(rls.DefaultDialect)
	DefaultMaxBodyBytes      = 64 << 10
	DefaultMaxTokenBytes     = 16 << 10
	DefaultDecisionTimeout   = 2 * time.Second
	DefaultDecisionCacheSize = 10000
	DefaultDecisionCacheTTL  = time.Minute
	DefaultResultCacheSize   = policy.DefaultResultCacheSize
)

// Config is the whole configuration of the service. The README documents
// every key; the YAML names are the contract.
type Config struct {
	// GRPCAddr is the gRPC listen address. Default 127.0.0.1:9090.
	GRPCAddr string `yaml:"grpc_addr"`
	// HTTPAddr is the REST gateway, health, metrics and OpenAPI listen
	// address. Default 127.0.0.1:8080.
	HTTPAddr string `yaml:"http_addr"`
	// ClockSkew is the leeway allowed on exp, nbf and iat. Default 60s, at
	// most 10m.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// ShutdownTimeout bounds the drain of in-flight requests on SIGTERM.
	// Default 15s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Policy says where the Rego policies are and which package decides.
	Policy Policy `yaml:"policy"`
	// Issuers lists the trusted identity providers. Required, at least one.
	Issuers []token.IssuerConfig `yaml:"issuers"`
	// Limits bounds request sizes.
	Limits Limits `yaml:"limits"`
	// DecisionLog configures the audit log of decisions.
	DecisionLog DecisionLog `yaml:"decision_log"`
	// TLS configures transport security of both listeners.
	TLS TLS `yaml:"tls"`
	// DecisionCache bounds the cache of whole decisions.
	DecisionCache DecisionCache `yaml:"decision_cache"`

	// file is the path the configuration was read from, for messages.
	file string
}

// Policy configures the policy engine and the rendering of RLS clauses.
type Policy struct {
	// Dir is the policy directory, read with OPA bundle semantics.
	// Default "policies".
	Dir string `yaml:"dir"`
	// Package is the Rego package whose rules make the decision. Default
	// "superset.authz".
	Package string `yaml:"package"`
	// Dialect is the default SQL dialect of rendered RLS clauses:
	// postgresql, mysql or sqlite. Default postgresql.
	Dialect string `yaml:"dialect"`
	// Databases overrides the dialect per Superset database name.
	Databases map[string]string `yaml:"databases"`
	// Tables overrides the dialect per table, keyed "database:table" or
	// "database:schema.table".
	Tables map[string]string `yaml:"tables"`
	// EvalTimeout bounds one policy evaluation. Default 2s.
	EvalTimeout time.Duration `yaml:"eval_timeout"`
	// ResultCacheSize bounds the policy results kept per revision for a
	// policy that declares the input it reads (rule input_paths), shared by
	// everyone whose declared input is equal; 0 turns sharing off. Default
	// 10000.
	ResultCacheSize *int `yaml:"result_cache_size"`
	// Bundle, when set, fetches the policy as an OPA bundle from a URL,
	// polled with the OPA bundle protocol, instead of reading Dir, which is
	// then ignored: url, polling (min_delay_seconds, max_delay_seconds,
	// long_polling_timeout_seconds), credentials (bearer.token_file and
	// scheme, or s3_signing), signing (public_key_file, key_id, algorithm,
	// scope, exclude_files) and ca_cert_file. policy.BundleConf documents
	// each key. Secrets come from files or the environment, never from this
	// file.
	Bundle *policy.BundleConf `yaml:"bundle"`
}

// Limits bounds what a caller may send.
type Limits struct {
	// MaxBodyBytes is the largest REST request body accepted; larger bodies
	// get 413. Default 65536.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MaxTokenBytes is the largest ID token accepted. Default 16384.
	MaxTokenBytes int `yaml:"max_token_bytes"`
}

// DecisionLog configures the one-line-per-decision audit log.
type DecisionLog struct {
	// Output is "stdout" (the default), "stderr", "off" or a file path.
	Output string `yaml:"output"`
	// Claims lists the claims copied into each decision log line; every
	// other claim is left out. Default: none.
	Claims []string `yaml:"claims"`
	// MaskClaims lists claims that are logged as "****" when listed in
	// Claims, for example email.
	MaskClaims []string `yaml:"mask_claims"`
}

// DecisionCache configures the cache that answers a repeated request (the
// same token, context and policy revision) without verifying or evaluating
// again.
type DecisionCache struct {
	// Size is the number of decisions kept; 0 turns the cache off.
	// Default 10000.
	Size *int `yaml:"size"`
	// TTL bounds how long a cached decision answers; never past the
	// token's exp. Default 1m. A cached decision outlives the removal of
	// its signing key from the issuer's JWKS for at most this long.
	TTL time.Duration `yaml:"ttl"`
}

// TLS configures transport security. Certificates are re-read when they
// change on disk.
type TLS struct {
	// CertFile and KeyFile hold the server certificate and its key, PEM.
	// Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, requires clients to present a certificate
	// signed by this CA (mutual TLS).
	ClientCAFile string `yaml:"client_ca_file"`
	// AllowedClients, when set, lists the client certificate identities
	// (DNS or URI SAN, or the subject common name) that may call.
	AllowedClients []string `yaml:"allowed_clients"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Load reads the configuration file at path, applies environment overrides
// from env (use os.Environ()), fills defaults and validates. The error lists
// every problem found, each naming the file and the key.
func Load(path string, env []string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, raw, env)
}

// Parse is Load for configuration text already read; name is used in
// messages.
func Parse(name string, raw []byte, env []string) (*Config, error) {
	c := &Config{file: name}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, decodeError(name, err)
	}
	var problems []string
	problems = append(problems, c.applyEnv(env)...)
	c.applyDefaults()
	problems = append(problems, c.validate()...)
	if len(problems) > 0 {
		return nil, &Error{File: name, Problems: problems}
	}
	return c, nil
}

// Default returns the configuration with every default filled and no
// issuers; dev mode starts from it.
func Default() *Config {
	c := &Config{file: "(defaults)"}
	c.applyDefaults()
	return c
}

// ApplyEnv applies the AUTHZD_* overrides in env (use os.Environ()) to a
// configuration built without a file, such as Default's in dev mode.
func (c *Config) ApplyEnv(env []string) error {
	if problems := c.applyEnv(env); len(problems) > 0 {
		return &Error{File: "(environment)", Problems: problems}
	}
	c.applyDefaults()
	return nil
}

// File is the path the configuration came from.
func (c *Config) File() string { return c.file }

// Error lists every problem of a configuration.
type Error struct {
	File     string
	Problems []string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config %q: %d problem(s)", e.File, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p)
	}
	return b.String()
}

func decodeError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return &Error{File: name, Problems: te.Errors}
	}
	return &Error{File: name, Problems: []string{err.Error()}}
}

// envKeys maps AUTHZD_* variables to the top-level keys they override.
var envKeys = map[string]func(c *Config, v string) error{
	"AUTHZD_GRPC_ADDR": func(c *Config, v string) error { c.GRPCAddr = v; return nil },
	"AUTHZD_HTTP_ADDR": func(c *Config, v string) error { c.HTTPAddr = v; return nil },
	"AUTHZD_CLOCK_SKEW": func(c *Config, v string) (err error) {
		c.ClockSkew, err = time.ParseDuration(v)
		return err
	},
	"AUTHZD_SHUTDOWN_TIMEOUT": func(c *Config, v string) (err error) {
		c.ShutdownTimeout, err = time.ParseDuration(v)
		return err
	},
	"AUTHZD_POLICY_DIR":     func(c *Config, v string) error { c.Policy.Dir = v; return nil },
	"AUTHZD_POLICY_PACKAGE": func(c *Config, v string) error { c.Policy.Package = v; return nil },
	"AUTHZD_POLICY_DIALECT": func(c *Config, v string) error { c.Policy.Dialect = v; return nil },
	"AUTHZD_POLICY_RESULT_CACHE_SIZE": func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		c.Policy.ResultCacheSize = &n
		return err
	},
	"AUTHZD_DECISION_LOG_OUTPUT": func(c *Config, v string) error {
		c.DecisionLog.Output = v
		return nil
	},
	"AUTHZD_TLS_CERT_FILE":      func(c *Config, v string) error { c.TLS.CertFile = v; return nil },
	"AUTHZD_TLS_KEY_FILE":       func(c *Config, v string) error { c.TLS.KeyFile = v; return nil },
	"AUTHZD_TLS_CLIENT_CA_FILE": func(c *Config, v string) error { c.TLS.ClientCAFile = v; return nil },
	"AUTHZD_LIMITS_MAX_BODY_BYTES": func(c *Config, v string) (err error) {
		c.Limits.MaxBodyBytes, err = strconv.Atoi(v)
		return err
	},
	"AUTHZD_LIMITS_MAX_TOKEN_BYTES": func(c *Config, v string) (err error) {
		c.Limits.MaxTokenBytes, err = strconv.Atoi(v)
		return err
	},
}

func (c *Config) applyEnv(env []string) []string {
	var problems []string
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		set, known := envKeys[k]
		if !known {
			continue
		}
		if err := set(c, v); err != nil {
			problems = append(problems, fmt.Sprintf("environment %s: %v", k, err))
		}
	}
	return problems
}

func (c *Config) applyDefaults() {
	if c.GRPCAddr == "" {
		c.GRPCAddr = DefaultGRPCAddr
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Policy.Dir == "" {
		c.Policy.Dir = DefaultPolicyDir
	}
	if c.Policy.Package == "" {
		c.Policy.Package = DefaultPolicyPackage
	}
	if c.Policy.Dialect == "" {
		c.Policy.Dialect = DefaultDialect
	}
	if c.Policy.EvalTimeout == 0 {
		c.Policy.EvalTimeout = DefaultDecisionTimeout
	}
	if c.Policy.ResultCacheSize == nil {
		size := DefaultResultCacheSize
		c.Policy.ResultCacheSize = &size
	}
	if c.Policy.Bundle != nil {
		c.Policy.Bundle.SetDefaults()
	}
	if c.Limits.MaxBodyBytes == 0 {
		c.Limits.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Limits.MaxTokenBytes == 0 {
		c.Limits.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.DecisionCache.Size == nil {
		size := DefaultDecisionCacheSize
		c.DecisionCache.Size = &size
	}
	if c.DecisionCache.TTL == 0 {
		c.DecisionCache.TTL = DefaultDecisionCacheTTL
	}
	if c.DecisionLog.Output == "" {
		c.DecisionLog.Output = "stdout"
	}
	for i := range c.Issuers {
		if c.Issuers[i].GroupsClaim == "" {
			c.Issuers[i].GroupsClaim = "groups"
		}
	}
}

// knownAlgorithms are the signature algorithms an issuer may allow.
var knownAlgorithms = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

func (c *Config) validate() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if err := checkAddr(c.GRPCAddr); err != nil {
		add("grpc_addr: %v", err)
	}
	if err := checkAddr(c.HTTPAddr); err != nil {
		add("http_addr: %v", err)
	}
	if c.GRPCAddr == c.HTTPAddr {
		add("grpc_addr and http_addr: both are %q; they need different ports", c.GRPCAddr)
	}
	if c.ClockSkew < 0 || c.ClockSkew > 10*time.Minute {
		add("clock_skew: %s is outside 0s..10m", c.ClockSkew)
	}
	if c.ShutdownTimeout < 0 {
		add("shutdown_timeout: %s is negative", c.ShutdownTimeout)
	}
	if c.Policy.EvalTimeout < 0 {
		add("policy.eval_timeout: %s is negative", c.Policy.EvalTimeout)
	}
	if c.Policy.Bundle != nil {
		if err := c.Policy.Bundle.Validate(); err != nil {
			// Validate joins one error per problem, each naming its key.
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			for _, e := range errs {
				add("policy.bundle.%v", e)
			}
		}
	}
	if n := c.Policy.ResultCacheSize; n != nil && (*n < 0 || *n > 10_000_000) {
		add("policy.result_cache_size: %d is outside 0..10000000", *n)
	}
	if c.DecisionCache.Size != nil && (*c.DecisionCache.Size < 0 || *c.DecisionCache.Size > 10_000_000) {
		add("decision_cache.size: %d is outside 0..10000000", *c.DecisionCache.Size)
	}
	if c.DecisionCache.TTL < 0 || c.DecisionCache.TTL > time.Hour {
		add("decision_cache.ttl: %s is outside 0s..1h", c.DecisionCache.TTL)
	}
	if c.Limits.MaxBodyBytes < 1024 {
		add("limits.max_body_bytes: %d is below 1024", c.Limits.MaxBodyBytes)
	}
	if c.Limits.MaxTokenBytes < 512 || c.Limits.MaxTokenBytes > c.Limits.MaxBodyBytes {
		add("limits.max_token_bytes: %d is outside 512..max_body_bytes (%d)",
			c.Limits.MaxTokenBytes, c.Limits.MaxBodyBytes)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls: cert_file and key_file must be set together")
	}
	if c.TLS.ClientCAFile != "" && c.TLS.CertFile == "" {
		add("tls.client_ca_file: mutual TLS needs tls.cert_file and tls.key_file")
	}
	if len(c.TLS.AllowedClients) > 0 && c.TLS.ClientCAFile == "" {
		add("tls.allowed_clients: needs tls.client_ca_file to verify client certificates")
	}
	if len(c.Issuers) == 0 {
		add("issuers: at least one issuer is required")
	}
	seen := map[string]bool{}
	for i, is := range c.Issuers {
		key := fmt.Sprintf("issuers[%d]", i)
		switch u, err := url.Parse(is.Issuer); {
		case is.Issuer == "":
			add("%s.issuer: required", key)
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			add("%s.issuer: %q is not an http(s) URL", key, is.Issuer)
		}
		if seen[is.Issuer] {
			add("%s.issuer: %q is listed twice", key, is.Issuer)
		}
		seen[is.Issuer] = true
		if len(is.Audiences) == 0 {
			add("%s.audiences: at least one audience is required", key)
		}
		for j, a := range is.Audiences {
			if strings.TrimSpace(a) == "" {
				add("%s.audiences[%d]: empty", key, j)
			}
		}
		if is.JWKSURL != "" {
			if u, err := url.Parse(is.JWKSURL); err != nil || u.Host == "" ||
				(u.Scheme != "https" && u.Scheme != "http") {
				add("%s.jwks_url: %q is not an http(s) URL", key, is.JWKSURL)
			}
		}
		for j, a := range is.Algorithms {
			if !knownAlgorithms[a] {
				add("%s.algorithms[%d]: %q is not allowed (use RS256, RS384, RS512, "+
					"PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA)", key, j, a)
			}
		}
	}
	return p
}

func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has no valid port", addr)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		if strings.ContainsAny(host, " /") {
			return fmt.Errorf("%q has no valid host", addr)
		}
	}
	return nil
}

// IsLoopback reports whether addr binds to a loopback address only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
