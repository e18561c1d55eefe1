package devidp

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

// newTestServer starts the provider on a loopback listener.
func newTestServer(t *testing.T, usersFile string) (*Provider, *httptest.Server) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	p, err := New(Options{BaseURL: base, UsersFile: usersFile})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv.Config.Handler = p.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return p, srv
}

// noRedirect is an HTTP client that returns redirects instead of following.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

// authorize runs the authorize request and returns the redirect's query.
func authorize(t *testing.T, p *Provider, params url.Values) (int, url.Values) {
	t.Helper()
	resp, err := noRedirect.Get(p.Issuer() + "/authorize?" + params.Encode())
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return resp.StatusCode, nil
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("authorize: Location: %v", err)
	}
	return resp.StatusCode, loc.Query()
}

// exchange posts the token request and decodes the JSON answer.
func exchange(t *testing.T, p *Provider, form url.Values, basicUser string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.Issuer()+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(basicUser, "secret")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("token: decode: %v", err)
	}
	return resp.StatusCode, body
}

// verify checks an ID token against the provider's JWKS and returns its claims.
func verify(t *testing.T, p *Provider, raw string) map[string]any {
	t.Helper()
	resp, err := http.Get(p.Issuer() + "/jwks.json")
	if err != nil {
		t.Fatalf("jwks: %v", err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("jwks: %v", err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse id_token: %v", err)
	}
	var claims map[string]any
	if err := tok.Claims(set.Keys[0].Key, &claims); err != nil {
		t.Fatalf("verify id_token: %v", err)
	}
	return claims
}

func TestAuthorizationCodeFlow(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.yaml")
	err := os.WriteFile(users, []byte(`
- sub: alice
  email: alice@example.com
  name: Alice Smith
  groups: [Data Engineers]
  claims: {department: Finance}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := newTestServer(t, users)
	const redirect = "http://127.0.0.1:8088/oauth-authorized/authzd"
	verifier := "a-verifier-long-enough-for-pkce-0123456789abcdef"
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])

	tests := []struct {
		name   string
		params url.Values
		want   map[string]any
	}{
		{
			name:   "users file entry",
			params: url.Values{"login_hint": {"alice"}},
			want: map[string]any{
				"sub": "alice", "email": "alice@example.com", "name": "Alice Smith",
				"given_name": "Alice", "family_name": "Smith", "department": "Finance",
				"groups": []any{"Data Engineers"},
			},
		},
		{
			name: "ad hoc user from the request",
			params: url.Values{
				"user": {"bob"}, "groups": {"Analytics Users, Other"},
				"claim": {"department=x' OR '1'='1 {{ 7*7 }} :name"},
			},
			want: map[string]any{
				"sub": "bob", "email": "bob@example.com",
				"department": "x' OR '1'='1 {{ 7*7 }} :name",
				"groups":     []any{"Analytics Users", "Other"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := url.Values{
				"response_type": {"code"}, "client_id": {"superset"}, "redirect_uri": {redirect},
				"state": {"st-1"}, "nonce": {"n-1"}, "scope": {"openid email profile"},
				"code_challenge": {challenge}, "code_challenge_method": {"S256"},
			}
			for k, v := range tt.params {
				params[k] = v
			}
			status, q := authorize(t, p, params)
			if status != http.StatusFound || q.Get("code") == "" {
				t.Fatalf("authorize: got status %d query %v, want 302 with a code", status, q)
			}
			if got := q.Get("state"); got != "st-1" {
				t.Errorf("state: got %q, want %q", got, "st-1")
			}
			form := url.Values{
				"grant_type": {"authorization_code"}, "code": {q.Get("code")},
				"redirect_uri": {redirect}, "code_verifier": {verifier},
			}
			status, body := exchange(t, p, form, "superset")
			if status != http.StatusOK {
				t.Fatalf("token: got status %d body %v, want 200", status, body)
			}
			claims := verify(t, p, body["id_token"].(string))
			if claims["nonce"] != "n-1" || claims["iss"] != p.Issuer() || claims["aud"] != Audience {
				t.Errorf("id_token: got nonce %v iss %v aud %v, want n-1 %s %s",
					claims["nonce"], claims["iss"], claims["aud"], p.Issuer(), Audience)
			}
			for k, want := range tt.want {
				if diff := cmp.Diff(want, claims[k]); diff != "" {
					t.Errorf("id_token claim %q (-want +got):\n%s", k, diff)
				}
			}
			// The code works once.
			if status, _ := exchange(t, p, form, "superset"); status != http.StatusBadRequest {
				t.Errorf("second exchange: got status %d, want 400", status)
			}
			req, _ := http.NewRequest(http.MethodGet, p.Issuer()+"/userinfo", nil)
			req.Header.Set("Authorization", "Bearer "+body["access_token"].(string))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var info map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
				t.Fatal(err)
			}
			if info["sub"] != tt.want["sub"] {
				t.Errorf("userinfo sub: got %v, want %v", info["sub"], tt.want["sub"])
			}
		})
	}
}

func TestAuthorizationCodeFlowRefusals(t *testing.T) {
	p, _ := newTestServer(t, "")
	const redirect = "http://localhost:8088/cb"
	base := func() url.Values {
		return url.Values{
			"response_type": {"code"}, "client_id": {"superset"}, "redirect_uri": {redirect},
			"user": {"carol"}, "state": {"s"},
		}
	}
	tests := []struct {
		name       string
		edit       func(authz url.Values, form url.Values) string
		wantStatus int
		wantError  string
	}{
		{
			name:       "wrong client",
			edit:       func(_, _ url.Values) string { return "someone-else" },
			wantStatus: http.StatusUnauthorized, wantError: "invalid_client",
		},
		{
			name:       "client other than the audience",
			edit:       func(a, _ url.Values) string { a.Set("client_id", "other"); return "other" },
			wantStatus: http.StatusUnauthorized, wantError: "invalid_client",
		},
		{
			name:       "redirect_uri mismatch",
			edit:       func(_, f url.Values) string { f.Set("redirect_uri", "http://localhost:1/x"); return "superset" },
			wantStatus: http.StatusBadRequest, wantError: "invalid_grant",
		},
		{
			name: "missing PKCE verifier",
			edit: func(a, _ url.Values) string {
				a.Set("code_challenge", "abc")
				a.Set("code_challenge_method", "S256")
				return "superset"
			},
			wantStatus: http.StatusBadRequest, wantError: "invalid_grant",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := base()
			f := url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {redirect}}
			client := tt.edit(a, f)
			status, q := authorize(t, p, a)
			if status != http.StatusFound {
				t.Fatalf("authorize: got status %d, want 302", status)
			}
			f.Set("code", q.Get("code"))
			status, body := exchange(t, p, f, client)
			if status != tt.wantStatus || body["error"] != tt.wantError {
				t.Errorf("token: got %d %v, want %d %s", status, body, tt.wantStatus, tt.wantError)
			}
		})
	}
}

func TestAuthorizeRefusesForeignRedirect(t *testing.T) {
	p, _ := newTestServer(t, "")
	tests := []struct {
		name     string
		redirect string
	}{
		{name: "public host", redirect: "https://evil.example.com/cb"},
		{name: "not http", redirect: "javascript:alert(1)"},
		{name: "missing", redirect: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _ := authorize(t, p, url.Values{
				"response_type": {"code"}, "client_id": {"superset"},
				"redirect_uri": {tt.redirect}, "user": {"x"},
			})
			if status != http.StatusBadRequest {
				t.Errorf("got status %d, want 400", status)
			}
		})
	}
}

func TestAuthorizeWithoutUserShowsPicker(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.json")
	if err := os.WriteFile(users, []byte(`[{"sub":"dave","groups":["Analytics Users"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _ := newTestServer(t, users)
	resp, err := noRedirect.Get(p.Issuer() + "/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {"superset"}, "redirect_uri": {"http://127.0.0.1:1/cb"},
	}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "dave (Analytics Users)") {
		t.Errorf("got status %d body %q, want 200 listing dave", resp.StatusCode, b)
	}
}

func TestLoadUsersErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string
	}{
		{name: "no sub", content: `[{"email":"a@b"}]`, want: `has no "sub"`},
		{name: "duplicate", content: "- sub: a\n- sub: a\n", want: "appears twice"},
		{name: "unknown field", content: "- sub: a\n  role: x\n", want: "role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "u.yaml")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadUsers(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestDiscoveryListsOAuthEndpoints(t *testing.T) {
	p, _ := newTestServer(t, "")
	resp, err := http.Get(p.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"authorization_endpoint": p.Issuer() + "/authorize",
		"token_endpoint":         p.Issuer() + "/oauth/token",
		"userinfo_endpoint":      p.Issuer() + "/userinfo",
	} {
		if doc[k] != want {
			t.Errorf("discovery %q: got %v, want %q", k, doc[k], want)
		}
	}
}

// FuzzAuthorize sends arbitrary query strings to the authorize endpoint: it
// must never panic, and a redirect must only ever go to a loopback host.
func FuzzAuthorize(f *testing.F) {
	for _, seed := range []string{
		"response_type=code&client_id=superset&redirect_uri=http://127.0.0.1:1/cb&user=a&state=s",
		"response_type=code&client_id=superset&redirect_uri=http://localhost/cb&user=a&claim=department%3Dx%27%20OR%201%3D1",
		"response_type=code&client_id=superset&redirect_uri=http://[::1]:8/cb&login_hint=b&ttl=5s&code_challenge=abc",
		"redirect_uri=https://evil.example.com/&user=a",
		"response_type=code&client_id=superset&redirect_uri=http://127.0.0.1@evil.example.com/&user=a",
		"response_type=token&redirect_uri=http://127.0.0.1/&claim=exp=1&user=x",
		"%zz&&==;",
	} {
		f.Add(seed)
	}
	p, err := New(Options{BaseURL: "http://127.0.0.1:1"})
	if err != nil {
		f.Fatal(err)
	}
	h := p.Handler()
	f.Fuzz(func(t *testing.T, query string) {
		req := httptest.NewRequest(http.MethodGet, "/dev/authorize", nil)
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusFound {
			return
		}
		loc, err := url.Parse(rec.Header().Get("Location"))
		if err != nil {
			t.Fatalf("Location %q: %v", rec.Header().Get("Location"), err)
		}
		if _, err := loopbackRedirect(loc.String()); err != nil {
			t.Errorf("redirect to %q: %v", loc, err)
		}
	})
}
