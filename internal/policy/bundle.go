package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// Defaults for BundleConf.
const (
	DefaultBundleMinDelaySeconds = 10
	DefaultBundleMaxDelaySeconds = 30
	DefaultBundleSigningAlg      = "RS256"
	DefaultBundleSigningKeyID    = "default"
)

// BundleConf is the policy.bundle section of the configuration file: an
// OPA bundle polled over HTTP with the OPA bundle protocol instead of a
// policy directory. Its names follow OPA's own service and bundle
// configuration where they mean the same. Secrets never appear in it: a
// bearer token is read from a file, AWS credentials come from the
// environment, the web identity token file or the instance metadata.
type BundleConf struct {
	// URL is the bundle's http(s) URL, for example
	// "https://bundles.example.com/authzd/bundle.tar.gz". Required.
	URL string `yaml:"url"`
	// CACertFile, when set, is a PEM file of the CAs that the bundle server's
	// certificate must chain to, instead of the system's.
	CACertFile string `yaml:"ca_cert_file"`
	// Polling says how often the bundle is fetched.
	Polling BundlePolling `yaml:"polling"`
	// Credentials authenticate the requests; at most one kind.
	Credentials BundleCredentials `yaml:"credentials"`
	// Signing, when set, requires every bundle to be signed (opa build
	// --signing-key) by the configured key; an unsigned or tampered bundle
	// is refused.
	Signing *BundleSigning `yaml:"signing"`
}

// BundlePolling says how often the bundle is fetched, as in OPA.
type BundlePolling struct {
	// MinDelaySeconds and MaxDelaySeconds bound the jittered wait between
	// two fetches. Default 10 and 30.
	MinDelaySeconds int64 `yaml:"min_delay_seconds"`
	MaxDelaySeconds int64 `yaml:"max_delay_seconds"`
	// LongPollingTimeoutSeconds, when set, asks a server that supports
	// long polling to hold the request up to this long until the bundle
	// changes. Zero (the default) polls.
	LongPollingTimeoutSeconds int64 `yaml:"long_polling_timeout_seconds"`
}

// BundleCredentials authenticate bundle requests. At most one of Bearer
// and S3Signing may be set.
type BundleCredentials struct {
	// Bearer sends "Authorization: <scheme> <token>".
	Bearer *BundleBearer `yaml:"bearer"`
	// S3Signing signs requests with AWS Signature Version 4, for a bundle
	// in an S3 bucket.
	S3Signing *BundleS3Signing `yaml:"s3_signing"`
}

// BundleBearer is bearer-token authentication with the token in a file.
type BundleBearer struct {
	// TokenFile holds the token. It is read at every request, so a rotated
	// token (a projected service account token, a mounted Secret) is
	// picked up. Required.
	TokenFile string `yaml:"token_file"`
	// Scheme is the authorization scheme. Default "Bearer".
	Scheme string `yaml:"scheme"`
}

// BundleS3Signing signs requests for a bundle in S3. The credential sources
// that are switched on are tried in the order environment, web identity,
// metadata. At least one must be on.
type BundleS3Signing struct {
	// EnvironmentCredentials reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
	// AWS_SESSION_TOKEN and AWS_REGION from the environment.
	EnvironmentCredentials bool `yaml:"environment_credentials"`
	// WebIdentityCredentials exchanges the token file named by
	// AWS_WEB_IDENTITY_TOKEN_FILE for the role AWS_ROLE_ARN (EKS IAM roles
	// for service accounts).
	WebIdentityCredentials bool `yaml:"web_identity_credentials"`
	// MetadataCredentials reads credentials from the EC2 or ECS metadata
	// service; it needs AWSRegion.
	MetadataCredentials bool `yaml:"metadata_credentials"`
	// AWSRegion is the bucket's region for the web identity and metadata
	// sources; the environment source reads AWS_REGION.
	AWSRegion string `yaml:"aws_region"`
	// Service is the signed service name. Default "s3".
	Service string `yaml:"service"`
	// SignatureVersion is "4" (the default) or "4a".
	SignatureVersion string `yaml:"signature_version"`
}

// BundleSigning configures bundle signature verification, as OPA's
// keys and bundles.*.signing.
type BundleSigning struct {
	// PublicKeyFile is the PEM public key (or, for HS256, the secret) that
	// verifies the bundle's signature. Required.
	PublicKeyFile string `yaml:"public_key_file"`
	// KeyID names the key. The signature's "keyid" claim is not trusted to
	// pick another key: this key is always used. Default "default".
	KeyID string `yaml:"key_id"`
	// Algorithm is the signing algorithm, as in opa build --signing-alg.
	// Default RS256.
	Algorithm string `yaml:"algorithm"`
	// Scope, when set, must equal the signature's "scope" claim.
	Scope string `yaml:"scope"`
	// ExcludeFiles are bundle file patterns left out of verification.
	ExcludeFiles []string `yaml:"exclude_files"`
}

// SetDefaults fills the empty fields of c with their defaults.
func (c *BundleConf) SetDefaults() {
	if c.Polling.MinDelaySeconds == 0 && c.Polling.MaxDelaySeconds == 0 {
		c.Polling.MinDelaySeconds = DefaultBundleMinDelaySeconds
		c.Polling.MaxDelaySeconds = DefaultBundleMaxDelaySeconds
	}
	if b := c.Credentials.Bearer; b != nil && b.Scheme == "" {
		b.Scheme = "Bearer"
	}
	if s := c.Signing; s != nil {
		if s.KeyID == "" {
			s.KeyID = DefaultBundleSigningKeyID
		}
		if s.Algorithm == "" {
			s.Algorithm = DefaultBundleSigningAlg
		}
	}
}

// signingAlgs are the algorithms opa build --signing-alg accepts.
var signingAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"HS256": true, "HS384": true, "HS512": true,
}

// Validate reports every problem of c at once, each naming its key below
// policy.bundle.
func (c BundleConf) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u, err := url.Parse(c.URL); c.URL == "" {
		add("url: required")
	} else if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		add("url: %q is not an http(s) URL", c.URL)
	} else if u.User != nil {
		add("url: credentials in the URL are not allowed; use credentials.bearer.token_file")
	}
	p := c.Polling
	if p.MinDelaySeconds < 1 || p.MaxDelaySeconds < p.MinDelaySeconds {
		add("polling: min_delay_seconds %d and max_delay_seconds %d: want 1 <= min <= max",
			p.MinDelaySeconds, p.MaxDelaySeconds)
	}
	if p.LongPollingTimeoutSeconds < 0 {
		add("polling.long_polling_timeout_seconds: %d is negative", p.LongPollingTimeoutSeconds)
	}
	cr := c.Credentials
	if cr.Bearer != nil && cr.S3Signing != nil {
		add("credentials: set bearer or s3_signing, not both")
	}
	if b := cr.Bearer; b != nil && b.TokenFile == "" {
		add("credentials.bearer.token_file: required (a token is never written in the file itself)")
	}
	if s := cr.S3Signing; s != nil {
		if !s.EnvironmentCredentials && !s.WebIdentityCredentials && !s.MetadataCredentials {
			add("credentials.s3_signing: switch on environment_credentials, " +
				"web_identity_credentials or metadata_credentials")
		}
		if s.MetadataCredentials && s.AWSRegion == "" {
			add("credentials.s3_signing.aws_region: required with metadata_credentials")
		}
		if v := s.SignatureVersion; v != "" && v != "4" && v != "4a" {
			add("credentials.s3_signing.signature_version: %q is not \"4\" or \"4a\"", v)
		}
	}
	if s := c.Signing; s != nil {
		if s.PublicKeyFile == "" {
			add("signing.public_key_file: required")
		}
		if s.Algorithm != "" && !signingAlgs[s.Algorithm] {
			add("signing.algorithm: %q is not supported", s.Algorithm)
		}
	}
	return errors.Join(errs...)
}

// ErrNotLoaded is returned by Evaluate while a bundle engine has not
// activated its first bundle.
var ErrNotLoaded = errors.New("policy not loaded yet")

// bundleSource is the state of an engine whose policy comes from a bundle
// server.
type bundleSource struct {
	downloader *download.Downloader
	// query is the URL's query, which may carry a credential (a signed S3
	// URL), so that scrub removes it from error messages.
	query string

	// The fields below are guarded by Engine.mu.

	// last is the snapshot of the serving bundle, for Reload.
	last *snapshot
	// fetchErr is the last failure to reach the server or get a bundle
	// from it, cleared by the next answer.
	fetchErr string
	// refusedErr is the last bundle that could not be read or verified, so
	// that the same bad bundle is logged and counted once.
	refusedErr string
}

// newBundleSource builds the downloader of c; it does not fetch yet.
func (e *Engine) newBundleSource(c BundleConf) (*bundleSource, error) {
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("policy bundle: %w", err)
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("policy bundle: url: %w", err)
	}
	base := (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
	resource := strings.TrimPrefix(u.EscapedPath(), "/")
	if u.RawQuery != "" {
		resource += "?" + u.RawQuery
	}

	svc := map[string]any{"name": "authzd-bundle", "url": base}
	if c.CACertFile != "" {
		svc["tls"] = map[string]any{"ca_cert": c.CACertFile}
	}
	creds := map[string]any{}
	if b := c.Credentials.Bearer; b != nil {
		creds["bearer"] = map[string]any{"token_path": b.TokenFile, "scheme": b.Scheme}
	}
	if s := c.Credentials.S3Signing; s != nil {
		s3 := map[string]any{}
		if s.EnvironmentCredentials {
			s3["environment_credentials"] = map[string]any{}
		}
		if s.WebIdentityCredentials {
			s3["web_identity_credentials"] = map[string]any{"aws_region": s.AWSRegion, "session_name": "authzd"}
		}
		if s.MetadataCredentials {
			s3["metadata_credentials"] = map[string]any{"aws_region": s.AWSRegion}
		}
		if s.Service != "" {
			s3["service"] = s.Service
		}
		if s.SignatureVersion != "" {
			s3["signature_version"] = s.SignatureVersion
		}
		creds["s3_signing"] = s3
	}
	svc["credentials"] = creds
	raw, err := json.Marshal(svc)
	if err != nil {
		return nil, fmt.Errorf("policy bundle: client config: %w", err)
	}
	client, err := rest.New(raw, nil, rest.Logger(&opaLogger{log: e.log}))
	if err != nil {
		return nil, fmt.Errorf("policy bundle: client config: %w", err)
	}

	trigger := plugins.TriggerPeriodic
	dc := download.Config{Trigger: &trigger}
	dc.Polling.MinDelaySeconds = &c.Polling.MinDelaySeconds
	dc.Polling.MaxDelaySeconds = &c.Polling.MaxDelaySeconds
	if c.Polling.LongPollingTimeoutSeconds > 0 {
		dc.Polling.LongPollingTimeoutSeconds = &c.Polling.LongPollingTimeoutSeconds
	}
	if err := dc.ValidateAndInjectDefaults(); err != nil {
		return nil, fmt.Errorf("policy bundle: polling: %w", err)
	}

	src := &bundleSource{query: u.RawQuery}
	d := download.New(dc, client, resource).
		WithCallback(e.onBundle).
		WithSizeLimitBytes(maxFileSize).
		WithBundleParserOpts(ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	if s := c.Signing; s != nil {
		key, err := os.ReadFile(s.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("policy bundle: signing.public_key_file: %w", err)
		}
		vc := bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{
			s.KeyID: {Key: string(key), Algorithm: s.Algorithm, Scope: s.Scope},
		}, s.KeyID, s.Scope, s.ExcludeFiles)
		d = d.WithBundleVerificationConfig(vc)
	}
	src.downloader = d
	return src, nil
}

// redactURL drops the query and user information of a URL, for logs and
// Info.Source, since either may carry a credential.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "bundle"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// scrub removes the URL's query from an error message, for logs, Info and
// readiness.
func (b *bundleSource) scrub(err error) string {
	msg := err.Error()
	if b.query != "" {
		msg = strings.ReplaceAll(msg, "?"+b.query, "")
	}
	return msg
}

// runBundle fetches bundles until ctx is done.
func (e *Engine) runBundle(ctx context.Context) {
	e.log.Info("polling the policy bundle", "source", e.opts.Source)
	e.bundle.downloader.Start(ctx)
	<-ctx.Done()
	e.bundle.downloader.Stop(context.Background())
}

// onBundle is the downloader's callback for every fetch.
func (e *Engine) onBundle(_ context.Context, u download.Update) error {
	switch {
	case u.Error != nil && unreachable(u.Error):
		e.mu.Lock()
		defer e.mu.Unlock()
		msg := e.bundle.scrub(u.Error)
		if e.bundle.fetchErr == "" {
			e.log.Warn("policy bundle server unavailable; the serving revision stays",
				"source", e.opts.Source, "revision", e.revisionID(), "error", msg)
		} else {
			e.log.Debug("policy bundle server still unavailable", "source", e.opts.Source, "error", msg)
		}
		e.bundle.fetchErr = msg
		return nil
	case u.Error != nil:
		// The server answered with a bundle that cannot be read or whose
		// signature does not verify.
		e.mu.Lock()
		defer e.mu.Unlock()
		e.bundle.fetchErr = ""
		msg := e.bundle.scrub(u.Error)
		if msg == e.bundle.refusedErr {
			e.log.Debug("policy bundle still refused", "source", e.opts.Source, "error", msg)
			return nil
		}
		e.bundle.refusedErr = msg
		// The message, not the error, so that the query stays out of it.
		_ = e.refuse("", fmt.Errorf("read policy bundle: %s", msg))
		return nil
	case u.Bundle == nil:
		// Not modified.
		e.mu.Lock()
		defer e.mu.Unlock()
		e.bundle.fetchErr = ""
		return nil
	}
	snap, err := bundleSnapshot(u.Bundle, e.pkg)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bundle.fetchErr = ""
	e.bundle.refusedErr = ""
	if err != nil {
		if snap != nil && snap.hash == e.refused {
			return nil
		}
		hash := ""
		if snap != nil {
			hash = snap.hash
		}
		_ = e.refuse(hash, err)
		return nil
	}
	_ = e.apply(snap, false) // logged and recorded by apply
	return nil
}

// unreachable reports whether err means that no bundle came from the
// server, as opposed to a bundle that was refused.
func unreachable(err error) bool {
	var he download.HTTPError
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &he) || errors.As(err, &ne) || errors.As(err, &ue) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// bundleSnapshot turns a downloaded bundle into the snapshot of its
// serving files: the Rego modules except tests, at their paths in the
// bundle, and the bundle's data as one data.json at the root. The content
// hash over these is the revision.
func bundleSnapshot(b *bundle.Bundle, pkg ast.Ref) (*snapshot, error) {
	var files []sourceFile
	for _, m := range b.Modules {
		name := strings.TrimPrefix(m.Path, "/")
		if !isPolicyFile(path.Base(name)) {
			continue
		}
		files = append(files, sourceFile{name: name, data: m.Raw})
	}
	var dataErr error
	if len(b.Data) > 0 {
		data, err := json.Marshal(b.Data)
		if err != nil {
			return nil, fmt.Errorf("read policy bundle: data: %w", err)
		}
		files = append(files, sourceFile{name: "data.json", data: data})
		// DESIGN.md: data goes beside a package, never at its path.
		var node any = b.Data
		for _, part := range refStrings(pkg[1:]) {
			obj, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node = obj[part]
		}
		if node != nil {
			dataErr = fmt.Errorf("load policy bundle: data is mounted at %q, inside package %q; "+
				"move it beside the package", pkg.String(), pkg.String())
		}
	}
	snap := newSnapshot(files)
	snap.bundleRevision = b.Manifest.Revision
	return snap, dataErr
}

// opaLogger passes the log lines of OPA's REST client and downloader to
// slog: OPA's errors and warnings as WARN (the engine logs what needs
// action itself), the rest as DEBUG.
type opaLogger struct {
	log   *slog.Logger
	level logging.Level
}

func (l *opaLogger) Debug(f string, a ...any) { l.log.Debug("opa: " + fmt.Sprintf(f, a...)) }
func (l *opaLogger) Info(f string, a ...any)  { l.log.Debug("opa: " + fmt.Sprintf(f, a...)) }
func (l *opaLogger) Warn(f string, a ...any)  { l.log.Warn("opa: " + fmt.Sprintf(f, a...)) }
func (l *opaLogger) Error(f string, a ...any) { l.log.Warn("opa: " + fmt.Sprintf(f, a...)) }

func (l *opaLogger) WithFields(fields map[string]any) logging.Logger {
	attrs := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		attrs = append(attrs, k, v)
	}
	return &opaLogger{log: l.log.With(attrs...), level: l.level}
}

// GetLevel is Info, so that OPA does not read response bodies for debug
// output.
func (l *opaLogger) GetLevel() logging.Level { return logging.Info }

func (l *opaLogger) SetLevel(level logging.Level) { l.level = level }

// Loaded reports whether a policy revision is serving. It is true from
// New on for a directory or a file system, and from the first activated
// bundle on for a bundle.
func (e *Engine) Loaded() bool {
	return e.current.Load() != nil
}

// Ready returns nil when a policy revision is serving, and otherwise why
// not, for a readiness check.
func (e *Engine) Ready() error {
	if e.Loaded() {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	why := "no answer from the server yet"
	switch {
	case e.lastError != "":
		why = "last bundle refused: " + e.lastError
	case e.bundle != nil && e.bundle.fetchErr != "":
		why = e.bundle.fetchErr
	}
	return fmt.Errorf("waiting for the first policy bundle from %q: %s", e.opts.Source, why)
}

// bundleWaitTick is how often WaitLoaded checks.
const bundleWaitTick = 20 * time.Millisecond

// WaitLoaded waits until a policy revision serves or ctx is done, and
// returns Ready's reason in the latter case.
func (e *Engine) WaitLoaded(ctx context.Context) error {
	t := time.NewTicker(bundleWaitTick)
	defer t.Stop()
	for !e.Loaded() {
		select {
		case <-ctx.Done():
			if err := e.Ready(); err != nil {
				return fmt.Errorf("%w: %w", ctx.Err(), err)
			}
			return nil
		case <-t.C:
		}
	}
	return nil
}
