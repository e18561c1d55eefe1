package devidp

import "net/http"

// oauthState holds the authorization-code flow's state. The OAuth endpoints
// arrive with the Superset integration; until then the provider only mints.
type oauthState struct{}

func (p *Provider) initOAuth() error { p.oauth = &oauthState{}; return nil }

func (p *Provider) registerOAuth(*http.ServeMux) {}

func (p *Provider) oauthMetadata() map[string]any { return nil }
