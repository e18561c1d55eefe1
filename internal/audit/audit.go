// Package audit writes the decision log: exactly one JSON line per
// decision, successful or not, with what an auditor needs to answer "who
// could see what, and why" and nothing that could be replayed. The raw ID
// token never reaches this package; claims are copied only when the
// configuration names them, and masked when it says so.
package audit

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// Record is one decision as the log keeps it.
type Record struct {
	DecisionID string
	Method     string
	Issuer     string
	Subject    string
	Username   string
	Allowed    bool
	Roles      []string
	// Filters lists the RLS filters as "name on table, table".
	Filters  []FilterRecord
	Reasons  []string
	Revision string
	Latency  time.Duration
	// Code is the gRPC status code name, "OK" for a decision.
	Code string
	// ErrorReason is the stable error reason when Code is not OK.
	ErrorReason string
	// Claims is the full claim set; only configured claims are logged.
	Claims map[string]any
}

// FilterRecord is an RLS filter in the decision log.
type FilterRecord struct {
	Name   string   `json:"name"`
	Tables []string `json:"tables"`
}

// Options configures a Logger.
type Options struct {
	// Claims lists the claims copied into each line.
	Claims []string
	// MaskClaims lists claims, among Claims, logged as "****".
	MaskClaims []string
}

// Logger writes decision log lines. It is safe for concurrent use.
type Logger struct {
	log    *slog.Logger
	claims []string
	mask   map[string]bool
}

// New returns a Logger writing JSON lines to w. A nil w discards.
func New(w io.Writer, opts Options) *Logger {
	var h slog.Handler = slog.DiscardHandler
	if w != nil {
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{})
	}
	mask := make(map[string]bool, len(opts.MaskClaims))
	for _, c := range opts.MaskClaims {
		mask[c] = true
	}
	return &Logger{log: slog.New(h), claims: opts.Claims, mask: mask}
}

// Log writes one line for r.
func (l *Logger) Log(ctx context.Context, r Record) {
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("decision_id", r.DecisionID),
		slog.String("method", r.Method),
		slog.String("issuer", r.Issuer),
		slog.String("subject", r.Subject),
		slog.String("username", r.Username),
		slog.Bool("allowed", r.Allowed),
		slog.Any("roles", nonNil(r.Roles)),
		slog.Any("rls_filters", nonNilFilters(r.Filters)),
		slog.Any("reasons", nonNil(r.Reasons)),
		slog.String("policy_revision", r.Revision),
		slog.Float64("latency_ms", float64(r.Latency.Microseconds())/1000),
		slog.String("code", r.Code),
	)
	if r.ErrorReason != "" {
		attrs = append(attrs, slog.String("error_reason", r.ErrorReason))
	}
	if len(l.claims) > 0 && r.Claims != nil {
		claims := make(map[string]any, len(l.claims))
		for _, name := range l.claims {
			v, ok := r.Claims[name]
			if !ok {
				continue
			}
			if l.mask[name] {
				v = "****"
			}
			claims[name] = v
		}
		attrs = append(attrs, slog.Any("claims", claims))
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "decision", attrs...)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilFilters(s []FilterRecord) []FilterRecord {
	if s == nil {
		return []FilterRecord{}
	}
	return s
}
