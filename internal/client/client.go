// Package client is a small REST client of authzd, used by the `check` and
// `token` commands: it asks a running server for a decision, and asks a dev
// server to mint a token.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client talks to one authzd server over REST.
type Client struct {
	// BaseURL is the server's HTTP address, for example
	// "http://127.0.0.1:8080".
	BaseURL string
	// HTTP is the client used; nil means a client with a 10 s timeout.
	HTTP *http.Client
}

// Decision is a decision as the REST API returns it.
type Decision struct {
	DecisionID string `json:"decision_id"`
	Allowed    bool   `json:"allowed"`
	Subject    struct {
		Issuer        string   `json:"issuer"`
		Subject       string   `json:"subject"`
		Username      string   `json:"username"`
		Email         string   `json:"email"`
		FirstName     string   `json:"first_name"`
		LastName      string   `json:"last_name"`
		Groups        []string `json:"groups"`
		GroupsOverage bool     `json:"groups_overage"`
	} `json:"subject"`
	Roles      []string `json:"roles"`
	RLSFilters []struct {
		Name       string   `json:"name"`
		Tables     []string `json:"tables"`
		GroupKey   string   `json:"group_key"`
		FilterType string   `json:"filter_type"`
		Clause     string   `json:"clause"`
		Dialect    string   `json:"dialect"`
	} `json:"rls_filters"`
	Reasons        []string `json:"reasons"`
	PolicyRevision string   `json:"policy_revision"`
	ExpiresAt      string   `json:"expires_at"`
	Explanation    *struct {
		Matches []map[string]any `json:"matches"`
		Groups  []string         `json:"groups"`
		Claims  map[string]any   `json:"claims"`
	} `json:"explanation"`
}

// Error is an error answer of the server.
type Error struct {
	HTTPStatus int
	Code       int    `json:"code"`
	Message    string `json:"message"`
	Details    []struct {
		Reason   string            `json:"reason"`
		Metadata map[string]string `json:"metadata"`
	} `json:"details"`
}

func (e *Error) Error() string {
	reason, id := "", ""
	for _, d := range e.Details {
		if d.Reason != "" {
			reason, id = d.Reason, d.Metadata["decision_id"]
		}
	}
	return fmt.Sprintf("server answered %d %s: %s (decision %s)", e.HTTPStatus, reason, e.Message, id)
}

// Decide asks for a decision about idToken.
func (c *Client) Decide(ctx context.Context, idToken string, explain bool) (*Decision, error) {
	body := map[string]any{"id_token": idToken}
	if explain {
		body["explain"] = true
	}
	var d Decision
	if err := c.post(ctx, "/v1/decisions", body, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// MintDevToken asks a dev server to sign a token with claims.
func (c *Client) MintDevToken(ctx context.Context, claims map[string]any, ttl time.Duration) (string, error) {
	req := map[string]any{"claims": claims}
	if ttl > 0 {
		req["ttl_seconds"] = int64(ttl / time.Second)
	}
	var out struct {
		IDToken string `json:"id_token"`
		Error   string `json:"error"`
	}
	if err := c.post(ctx, "/dev/token", req, &out); err != nil {
		return "", err
	}
	return out.IDToken, nil
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	raw, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	url := strings.TrimSuffix(c.BaseURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reach authzd at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusNotFound && path == "/dev/token" {
		return fmt.Errorf("%s has no dev token endpoint: is it running with --dev?", c.BaseURL)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{HTTPStatus: resp.StatusCode}
		if json.Unmarshal(body, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(body))
		}
		return e
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", url, err)
	}
	return nil
}
