package devidp

// This file holds the part of the OpenID Connect authorization-code flow that
// a local Superset (Flask-AppBuilder's AUTH_OAUTH, through Authlib) needs to
// log a person in through the dev provider:
//
//	GET  /dev/authorize    approves a dev user named in the request
//	POST /dev/oauth/token  exchanges the code for an ID token and access token
//	GET  /dev/userinfo     returns the claims for an access token
//
// The person is named by login_hint or user. A name found in the users file
// (Options.UsersFile) takes that entry's claims; any other name is built from
// the request itself: groups from group= or groups= (comma-separated), other
// claims from claim=key=value, as `authzd token --dev` does. Without a name
// the endpoint shows a page to pick one. There is no password: this is a
// stand-in for an identity provider, for a first try and for tests.

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// codeTTL is how long an authorization code may wait for its exchange.
const codeTTL = time.Minute

// maxPending bounds the codes and access tokens kept in memory.
const maxPending = 10000

// User is one entry of the dev users file, a YAML or JSON list.
type User struct {
	// Sub is the subject; required and unique in the file.
	Sub string `yaml:"sub" json:"sub"`
	// Email is the person's address; optional.
	Email string `yaml:"email" json:"email"`
	// Name is the full name; its first word becomes given_name and the rest
	// family_name unless Claims sets them.
	Name string `yaml:"name" json:"name"`
	// Groups becomes the groups claim.
	Groups []string `yaml:"groups" json:"groups"`
	// Claims are further claims, for example department or team. They win
	// over the fields above.
	Claims map[string]any `yaml:"claims" json:"claims"`
}

// claims returns the ID token claims of u, without iss, aud, iat and exp.
func (u User) claims() map[string]any {
	c := map[string]any{"sub": u.Sub, "preferred_username": u.Sub}
	if u.Email != "" {
		c["email"] = u.Email
		c["email_verified"] = true
	}
	if u.Name != "" {
		c["name"] = u.Name
		first, last, _ := strings.Cut(strings.TrimSpace(u.Name), " ")
		c["given_name"] = first
		if last != "" {
			c["family_name"] = strings.TrimSpace(last)
		}
	}
	if u.Groups != nil {
		c["groups"] = u.Groups
	}
	for k, v := range u.Claims {
		c[k] = v
	}
	return c
}

// grant is an issued authorization code waiting for its exchange.
type grant struct {
	clientID      string
	redirectURI   string
	nonce         string
	scope         string
	claims        map[string]any
	ttl           time.Duration
	codeChallenge string
	method        string
	expires       time.Time
}

// session is an issued access token, for userinfo.
type session struct {
	claims  map[string]any
	expires time.Time
}

// oauthState holds the users file and the codes and access tokens issued.
type oauthState struct {
	users []User

	mu     sync.Mutex
	codes  map[string]*grant
	tokens map[string]*session
}

// initOAuth loads the users file, when one is configured.
func (p *Provider) initOAuth() error {
	st := &oauthState{codes: map[string]*grant{}, tokens: map[string]*session{}}
	if p.opts.UsersFile != "" {
		users, err := LoadUsers(p.opts.UsersFile)
		if err != nil {
			return err
		}
		st.users = users
	}
	p.oauth = st
	return nil
}

// LoadUsers reads a dev users file: a YAML or JSON list of users.
func LoadUsers(path string) ([]User, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("devidp: read users file: %w", err)
	}
	var users []User
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&users); err != nil {
		return nil, fmt.Errorf("devidp: users file %q: %w", path, err)
	}
	seen := map[string]bool{}
	for i, u := range users {
		if u.Sub == "" {
			return nil, fmt.Errorf("devidp: users file %q: entry %d has no \"sub\"", path, i+1)
		}
		if seen[u.Sub] {
			return nil, fmt.Errorf("devidp: users file %q: sub %q appears twice", path, u.Sub)
		}
		seen[u.Sub] = true
	}
	return users, nil
}

// oauthMetadata returns the discovery document's fields for the
// authorization-code flow.
func (p *Provider) oauthMetadata() map[string]any {
	return map[string]any{
		"authorization_endpoint":                p.issuer + "/authorize",
		"token_endpoint":                        p.issuer + "/oauth/token",
		"userinfo_endpoint":                     p.issuer + "/userinfo",
		"scopes_supported":                      []string{"openid", "email", "profile", "groups"},
		"grant_types_supported":                 []string{"authorization_code"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"code_challenge_methods_supported":      []string{"S256", "plain"},
		"claims_supported": []string{
			"sub", "email", "email_verified", "name", "given_name", "family_name",
			"preferred_username", "groups", "nonce",
		},
	}
}

// registerOAuth mounts the authorize, token and userinfo endpoints.
func (p *Provider) registerOAuth(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathPrefix+"/authorize", p.serveAuthorize)
	mux.HandleFunc("POST "+PathPrefix+"/oauth/token", p.serveOAuthToken)
	mux.HandleFunc("GET "+PathPrefix+"/userinfo", p.serveUserinfo)
	mux.HandleFunc("POST "+PathPrefix+"/userinfo", p.serveUserinfo)
}

// loopbackRedirect reports whether raw is an absolute http(s) URL on a
// loopback host: the dev provider sends codes nowhere else.
func loopbackRedirect(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("redirect_uri %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("redirect_uri %q: scheme must be http or https", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return u, nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return u, nil
	}
	return nil, fmt.Errorf("redirect_uri %q: host must be loopback (localhost, 127.0.0.0/8, ::1)", raw)
}

func (p *Provider) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := loopbackRedirect(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "devidp authorize: "+err.Error(), http.StatusBadRequest)
		return
	}
	fail := func(code, desc string) {
		v := redirect.Query()
		v.Set("error", code)
		v.Set("error_description", desc)
		if s := q.Get("state"); s != "" {
			v.Set("state", s)
		}
		redirect.RawQuery = v.Encode()
		http.Redirect(w, r, redirect.String(), http.StatusFound)
	}
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	}
	if q.Get("client_id") == "" {
		fail("invalid_request", "client_id is required")
		return
	}
	method := q.Get("code_challenge_method")
	if q.Get("code_challenge") != "" && method == "" {
		method = "plain"
	}
	if method != "" && method != "S256" && method != "plain" {
		fail("invalid_request", fmt.Sprintf("code_challenge_method %q is not supported", method))
		return
	}
	name := q.Get("login_hint")
	if name == "" {
		name = q.Get("user")
	}
	if name == "" {
		p.servePicker(w, r)
		return
	}
	claims, err := p.userClaims(name, q)
	if err != nil {
		fail("invalid_request", err.Error())
		return
	}
	var ttl time.Duration
	if s := q.Get("ttl"); s != "" {
		ttl, err = parseTTL(s)
		if err != nil {
			fail("invalid_request", err.Error())
			return
		}
	}
	code, err := randomToken()
	if err != nil {
		fail("server_error", "cannot create a code")
		return
	}
	g := &grant{
		clientID:      q.Get("client_id"),
		redirectURI:   q.Get("redirect_uri"),
		nonce:         q.Get("nonce"),
		scope:         q.Get("scope"),
		claims:        claims,
		ttl:           ttl,
		codeChallenge: q.Get("code_challenge"),
		method:        method,
		expires:       p.opts.Now().Add(codeTTL),
	}
	if !p.oauth.putCode(code, g, p.opts.Now()) {
		fail("temporarily_unavailable", "too many pending codes")
		return
	}
	p.log.Info("dev login approved", "sub", claims["sub"], "client_id", g.clientID)
	v := redirect.Query()
	v.Set("code", code)
	if s := q.Get("state"); s != "" {
		v.Set("state", s)
	}
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// parseTTL reads a token lifetime: a Go duration ("90s") or whole seconds.
func parseTTL(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		s = strconv.Itoa(n) + "s"
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > 24*time.Hour {
		return 0, fmt.Errorf("ttl %q: want a duration between 1s and 24h", s)
	}
	return d, nil
}

// userClaims returns the claims of the person named name: the users file
// entry whose sub or email equals name, or else one built from the request.
func (p *Provider) userClaims(name string, q url.Values) (map[string]any, error) {
	for _, u := range p.oauth.users {
		if u.Sub == name || (u.Email != "" && u.Email == name) {
			return u.claims(), nil
		}
	}
	u := User{Sub: name, Email: name}
	if !strings.Contains(name, "@") {
		u.Email = name + "@example.com"
	}
	if n := q.Get("name"); n != "" {
		u.Name = n
	}
	for _, g := range q["group"] {
		u.Groups = append(u.Groups, g)
	}
	for _, gs := range q["groups"] {
		for _, g := range strings.Split(gs, ",") {
			if g = strings.TrimSpace(g); g != "" {
				u.Groups = append(u.Groups, g)
			}
		}
	}
	for _, kv := range q["claim"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("claim %q: want key=value", kv)
		}
		switch k {
		case "iss", "aud", "exp", "iat", "nbf", "nonce":
			return nil, fmt.Errorf("claim %q: set by the provider", k)
		}
		if u.Claims == nil {
			u.Claims = map[string]any{}
		}
		u.Claims[k] = v
	}
	return u.claims(), nil
}

var pickerPage = template.Must(template.New("picker").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>authzd dev login</title></head>
<body>
<h1>authzd dev identity provider</h1>
<p><strong>Not for production:</strong> anyone reaching this page can sign in as anyone.</p>
{{if .Users}}<h2>Users from the users file</h2><ul>
{{range .Users}}<li><a href="{{.Link}}">{{.Label}}</a></li>
{{end}}</ul>{{end}}
<h2>Any user</h2>
<form method="get" action="">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<label>user <input name="user" required></label>
<label>groups (comma-separated) <input name="groups"></label>
<label>claim (key=value) <input name="claim"></label>
<button type="submit">Sign in</button>
</form>
</body></html>
`))

type pickerUser struct{ Label, Link string }

type pickerField struct{ Name, Value string }

// servePicker shows a page to choose the person to sign in as.
func (p *Provider) servePicker(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var data struct {
		Users  []pickerUser
		Hidden []pickerField
	}
	for _, u := range p.oauth.users {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("user", u.Sub)
		label := u.Sub
		if len(u.Groups) > 0 {
			label += " (" + strings.Join(u.Groups, ", ") + ")"
		}
		data.Users = append(data.Users, pickerUser{Label: label, Link: "?" + v.Encode()})
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range q[k] {
			data.Hidden = append(data.Hidden, pickerField{Name: k, Value: v})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = pickerPage.Execute(w, data)
}

// putCode stores a code, dropping expired entries first. It reports false
// when too many codes are pending.
func (s *oauthState) putCode(code string, g *grant, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.codes {
		if now.After(v.expires) {
			delete(s.codes, k)
		}
	}
	if len(s.codes) >= maxPending {
		return false
	}
	s.codes[code] = g
	return true
}

// takeCode removes and returns a code's grant; a code works once.
func (s *oauthState) takeCode(code string) *grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.codes[code]
	delete(s.codes, code)
	return g
}

func (s *oauthState) putToken(tok string, sess *session, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.tokens {
		if now.After(v.expires) {
			delete(s.tokens, k)
		}
	}
	if len(s.tokens) >= maxPending {
		for k := range s.tokens {
			delete(s.tokens, k)
			break
		}
	}
	s.tokens[tok] = sess
}

func (s *oauthState) token(tok string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.tokens[tok]
	if sess == nil || now.After(sess.expires) {
		return nil
	}
	return sess
}

// oauthError writes an RFC 6749 error response.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="authzd-dev"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (p *Provider) serveOAuthToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "cannot parse the form: "+err.Error())
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "authorization_code" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type",
			fmt.Sprintf("grant_type %q is not supported; use authorization_code", gt))
		return
	}
	clientID := r.PostForm.Get("client_id")
	if id, _, ok := r.BasicAuth(); ok {
		if u, err := url.QueryUnescape(id); err == nil {
			id = u
		}
		clientID = id
	}
	g := p.oauth.takeCode(r.PostForm.Get("code"))
	now := p.opts.Now()
	if g == nil || now.After(g.expires) {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown, used or expired code")
		return
	}
	if clientID != g.clientID {
		oauthError(w, http.StatusUnauthorized, "invalid_client",
			fmt.Sprintf("client_id %q does not match the code's %q", clientID, g.clientID))
		return
	}
	if g.clientID != Audience {
		oauthError(w, http.StatusUnauthorized, "invalid_client",
			fmt.Sprintf("client_id %q: the dev provider's tokens are for audience %q; use it as client_id",
				g.clientID, Audience))
		return
	}
	if r.PostForm.Get("redirect_uri") != g.redirectURI {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorize request")
		return
	}
	if err := checkPKCE(g, r.PostForm.Get("code_verifier")); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", err.Error())
		return
	}
	ttl := g.ttl
	if ttl == 0 {
		ttl = DefaultTTL
	}
	claims := make(map[string]any, len(g.claims)+3)
	for k, v := range g.claims {
		claims[k] = v
	}
	claims["exp"] = now.Add(ttl).Unix()
	claims["azp"] = g.clientID
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	idToken, err := p.Mint(claims)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	access, err := randomToken()
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "cannot create an access token")
		return
	}
	p.oauth.putToken(access, &session{claims: g.claims, expires: now.Add(ttl)}, now)
	p.log.Info("dev token issued", "sub", g.claims["sub"], "client_id", g.clientID)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	scope := g.scope
	if scope == "" {
		scope = "openid"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access,
		"token_type":   "Bearer",
		"expires_in":   int64(ttl / time.Second),
		"id_token":     idToken,
		"scope":        scope,
	})
}

// checkPKCE verifies the code verifier against the authorize request's
// challenge, when there was one.
func checkPKCE(g *grant, verifier string) error {
	if g.codeChallenge == "" {
		return nil
	}
	if verifier == "" {
		return errors.New("code_verifier is required: the authorize request had a code_challenge")
	}
	want := verifier
	if g.method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		want = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(g.codeChallenge)) != 1 {
		return errors.New("code_verifier does not match the code_challenge")
	}
	return nil
}

func (p *Provider) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(auth, "bearer ")
	}
	sess := p.oauth.token(strings.TrimSpace(tok), p.opts.Now())
	if !ok || sess == nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "invalid_token", "error_description": "missing, unknown or expired access token",
		})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, sess.claims)
}

// randomToken returns 32 random bytes, base64url-encoded.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("devidp: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
