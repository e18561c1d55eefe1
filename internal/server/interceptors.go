package server

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	authzv1 "github.com/authzd/authzd/gen/authz/v1"
	"github.com/authzd/authzd/internal/decision"
	"github.com/authzd/authzd/internal/tracing"
)

// decisionIDHeader carries the decision id to the caller, on both paths.
const decisionIDHeader = "x-decision-id"

// call is what the interceptor learns about one RPC while it runs.
type call struct {
	decisionID string
	method     string
	decision   *decision.Decision
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		return c
	}
	return &call{}
}

var decideMethod = "/" + authzv1.DecisionService_ServiceDesc.ServiceName + "/Decide"

// unaryInterceptor wraps every unary RPC: it assigns the decision id and
// returns it in the header, recovers panics, maps errors to statuses with
// ErrorInfo, counts the call and, for Decide, writes the decision log line.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler) (resp any, err error) {
	if strings.HasPrefix(info.FullMethod, "/grpc.health.v1.") ||
		strings.HasPrefix(info.FullMethod, "/grpc.reflection.") {
		return handler(ctx, req)
	}
	start := time.Now()
	c := &call{decisionID: s.incomingDecisionID(ctx), method: info.FullMethod}
	ctx = context.WithValue(ctx, callKey{}, c)
	_ = grpc.SetHeader(ctx, metadata.Pairs(decisionIDHeader, c.decisionID))
	tracing.SetDecisionID(ctx, c.decisionID)

	func() {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic in handler", "decision_id", c.decisionID,
					"method", info.FullMethod, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				resp, err = nil, status.Error(codes.Internal, "internal error")
			}
		}()
		resp, err = handler(ctx, req)
	}()

	code, reason := codes.OK, ""
	if err != nil {
		st := statusOf(err, c.decisionID)
		code, reason = st.Code(), reasonOf(st)
		if code == codes.Internal {
			s.log.Error("decision failed", "decision_id", c.decisionID,
				"method", info.FullMethod, "reason", reason, "error", st.Message())
		}
		err = st.Err()
	}
	latency := time.Since(start)
	s.metrics.observe(info.FullMethod, code, reason, c.decision, latency)
	if info.FullMethod == decideMethod {
		s.opts.DecisionLog.Log(ctx, auditRecord(c, code.String(), reason, latency))
	}
	return resp, err
}

// incomingDecisionID returns the id the REST middleware assigned when the
// call comes through the gateway (a Go context value, which no remote
// caller can set), else a new UUID.
func (s *Server) incomingDecisionID(ctx context.Context) string {
	if c, ok := ctx.Value(httpCallKey{}).(*httpCall); ok && c.decisionID != "" {
		return c.decisionID
	}
	return uuid.NewString()
}

func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(interface{ GetReason() string }); ok {
			return info.GetReason()
		}
	}
	return ""
}

// metrics are the server's own Prometheus metrics.
type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	decisions *prometheus.CounterVec
	steps     *prometheus.HistogramVec
	// The step series, looked up once rather than per decision.
	total, verify, evaluate, render prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	buckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "RPCs completed on the server, by method and status code.",
		}, []string{"grpc_service", "grpc_method", "grpc_code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Time to handle an RPC, by method.",
			Buckets: buckets,
		}, []string{"grpc_service", "grpc_method"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authzd_decisions_total",
			Help: "Decisions by outcome (allowed, denied, error) and status code.",
		}, []string{"outcome", "code", "reason"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authzd_decision_duration_seconds",
			Help:    "Time spent per decision step: total, verify, evaluate, render.",
			Buckets: buckets,
		}, []string{"step"}),
	}
	m.total = m.steps.WithLabelValues("total")
	m.verify = m.steps.WithLabelValues("verify")
	m.evaluate = m.steps.WithLabelValues("evaluate")
	m.render = m.steps.WithLabelValues("render")
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.decisions, m.steps} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observe(fullMethod string, code codes.Code, reason string,
	d *decision.Decision, latency time.Duration) {
	svc, method := splitMethod(fullMethod)
	m.requests.WithLabelValues(svc, method, code.String()).Inc()
	m.latency.WithLabelValues(svc, method).Observe(latency.Seconds())
	if fullMethod != decideMethod {
		return
	}
	outcome := "error"
	if d != nil {
		outcome = "denied"
		if d.Allowed {
			outcome = "allowed"
		}
		m.verify.Observe(d.Timing.Verify.Seconds())
		m.evaluate.Observe(d.Timing.Evaluate.Seconds())
		m.render.Observe(d.Timing.Render.Seconds())
	}
	m.total.Observe(latency.Seconds())
	m.decisions.WithLabelValues(outcome, code.String(), reason).Inc()
}

func splitMethod(full string) (string, string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndex(full, "/"); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}
