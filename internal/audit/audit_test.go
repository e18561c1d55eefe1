package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLogLine(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		wantClaims map[string]any // nil: no claims key at all
	}{
		{name: "no claims by default", opts: Options{}},
		{name: "chosen claims", opts: Options{Claims: []string{"department", "email", "absent"}},
			wantClaims: map[string]any{"department": "Finance", "email": "alice@example.com"}},
		{name: "masked claims", opts: Options{Claims: []string{"department", "email"},
			MaskClaims: []string{"email"}},
			wantClaims: map[string]any{"department": "Finance", "email": "****"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			New(&buf, tt.opts).Log(context.Background(), Record{
				DecisionID: "d-1", Method: "/authz.v1.DecisionService/Decide",
				Issuer: "https://idp.example.com/", Subject: "alice", Username: "alice@example.com",
				Allowed: true, Roles: []string{"Alpha"},
				Filters:  []FilterRecord{{Name: "department", Tables: []string{"sales"}}},
				Reasons:  []string{"group 'Data Engineers' grants role Alpha"},
				Revision: "sha256:abc", Latency: 1500 * time.Microsecond, Code: "OK",
				Claims: map[string]any{"email": "alice@example.com", "department": "Finance",
					"secret_claim": "do not log"},
			})
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("line is not JSON: %v: %q", err, buf.String())
			}
			if bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
				t.Errorf("got %d lines, want exactly one", bytes.Count(buf.Bytes(), []byte("\n")))
			}
			for k, want := range map[string]any{"decision_id": "d-1", "subject": "alice",
				"allowed": true, "policy_revision": "sha256:abc", "latency_ms": 1.5, "code": "OK"} {
				if got := line[k]; got != want {
					t.Errorf("%s: got %v, want %v", k, got, want)
				}
			}
			got, _ := line["claims"].(map[string]any)
			if diff := cmp.Diff(tt.wantClaims, got, cmp.AllowUnexported()); tt.wantClaims != nil && diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			if tt.wantClaims == nil && line["claims"] != nil {
				t.Errorf("claims logged without being chosen: %v", line["claims"])
			}
			if bytes.Contains(buf.Bytes(), []byte("do not log")) {
				t.Error("an unchosen claim reached the log")
			}
		})
	}
}

func TestNilWriterDiscards(t *testing.T) {
	New(nil, Options{}).Log(context.Background(), Record{DecisionID: "x"})
}
