// Package server exposes decisions over gRPC and, through grpc-gateway, over
// REST, together with health, readiness, metrics and the OpenAPI document.
//
// The REST gateway calls the service in-process, through the very
// interceptor that wraps every gRPC call, so both paths share the decision
// id, panic recovery, error mapping, metrics and the decision log, without
// paying for a second gRPC hop. This package alone knows gRPC status codes.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	authzv1 "github.com/authzd/authzd/gen/authz/v1"
	"github.com/authzd/authzd/internal/audit"
	"github.com/authzd/authzd/internal/tracing"
)

// Options configures a Server.
type Options struct {
	// Decider makes decisions. Required.
	Decider Decider
	// Policy describes the serving policy. Required.
	Policy PolicyInfo
	// Ready reports whether the service can decide: nil when the policy is
	// compiled and every issuer's keys were fetched, else why not.
	Ready func() error
	// Logger receives operational log lines. Required.
	Logger *slog.Logger
	// DecisionLog receives one record per decision. Nil discards.
	DecisionLog *audit.Logger
	// Registry holds the metrics served on /metrics. Nil creates one.
	Registry *prometheus.Registry
	// MaxBodyBytes bounds a REST request body.
	MaxBodyBytes int
	// OpenAPI is the document served on /openapi.json.
	OpenAPI []byte
	// Dev, when set, is mounted under /dev/ (dev mode only).
	Dev http.Handler
	// GRPCCreds, when set, secures the gRPC listener.
	GRPCCreds credentials.TransportCredentials
	// HTTPTLS, when set, secures the HTTP listener.
	HTTPTLS *tls.Config
	// PeerCheck, when set, wraps the REST API so that it refuses the
	// clients the gRPC listener refuses (mutual TLS allow-list).
	PeerCheck func(http.Handler) http.Handler
	// ShutdownTimeout bounds the drain on shutdown.
	ShutdownTimeout time.Duration
}

// Server serves the decision API. Create it with New, run it with Serve.
type Server struct {
	opts    Options
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	metrics *metrics
	// svc is the service both listeners call; the REST gateway calls it
	// directly, through the same interceptor as gRPC (see gatewayService).
	svc  *decisionService
	http *http.Server
}

// New builds a Server and registers its services; it does not listen.
func New(opts Options) (*Server, error) {
	if opts.Decider == nil || opts.Policy == nil || opts.Logger == nil {
		return nil, errors.New("server: decider, policy and logger are required")
	}
	if opts.Ready == nil {
		opts.Ready = func() error { return nil }
	}
	if opts.DecisionLog == nil {
		opts.DecisionLog = audit.New(nil, audit.Options{})
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	s := &Server{opts: opts, log: opts.Logger}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	s.metrics = m

	gopts := []grpc.ServerOption{
		tracing.GRPCServerOption(),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		// Clients reconnect now and then, so that they spread over new
		// replicas and pick up a rotated client CA.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      30 * time.Minute,
			MaxConnectionAgeGrace: time.Minute,
		}),
		// Above the token limit, so that an oversized token gets
		// INVALID_ARGUMENT naming the limit rather than a transport error.
		grpc.MaxRecvMsgSize(max(4*opts.MaxBodyBytes, 1<<20)),
		// Calls run on a fixed pool of goroutines whose stacks have already
		// grown through the policy evaluator's recursion and the RSA
		// arithmetic; a goroutine per call grows its stack again every
		// time, about 10% of the CPU of a decision (BENCHMARKS.md). The
		// pool is large enough for the usual number of calls in flight
		// (16 per CPU); beyond it gRPC falls back to a new goroutine, so
		// nothing queues behind the pool.
		grpc.NumStreamWorkers(uint32(16 * runtime.GOMAXPROCS(0))),
	}
	if opts.GRPCCreds != nil {
		gopts = append(gopts, grpc.Creds(opts.GRPCCreds))
	}
	s.grpc = grpc.NewServer(gopts...)
	s.svc = &decisionService{decider: opts.Decider, policy: opts.Policy}
	authzv1.RegisterDecisionServiceServer(s.grpc, s.svc)
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(authzv1.DecisionService_ServiceDesc.ServiceName,
		healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s, nil
}

// Serve serves gRPC on grpcLis and HTTP on httpLis until ctx ends, then
// drains in-flight requests within the shutdown timeout and returns nil.
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener) error {
	handler, err := s.httpHandler(ctx)
	if err != nil {
		return err
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         s.opts.HTTPTLS,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}

	errc := make(chan error, 3)
	var wg sync.WaitGroup
	serve := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) &&
				!errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("server: %s: %w", name, err)
			}
		}()
	}
	serve("grpc", func() error { return s.grpc.Serve(grpcLis) })
	serve("http", func() error {
		if s.opts.HTTPTLS != nil {
			return s.http.ServeTLS(httpLis, "", "")
		}
		return s.http.Serve(httpLis)
	})
	go s.watchReadiness(ctx)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.shutdown()
	wg.Wait()
	return serveErr
}

// watchReadiness keeps the gRPC health status in step with readiness.
func (s *Server) watchReadiness(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		st := healthpb.HealthCheckResponse_SERVING
		if s.opts.Ready() != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if st != last {
			s.health.SetServingStatus("", st)
			s.health.SetServingStatus(authzv1.DecisionService_ServiceDesc.ServiceName, st)
			last = st
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) shutdown() {
	s.health.Shutdown()
	timeout := s.opts.ShutdownTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.log.Info("draining in-flight requests", "timeout", timeout.String())
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Warn("http drain did not finish in time", "error", err)
	}
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("grpc drain did not finish in time; stopping")
		s.grpc.Stop()
	}
}

// jsonSafe converts json.Number values, as verified claims hold them, to
// float64 so that structpb can carry them.
func jsonSafe(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = jsonSafeValue(v)
	}
	return out
}

func jsonSafeValue(v any) any {
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return v.String()
		}
		return f
	case map[string]any:
		return jsonSafe(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = jsonSafeValue(e)
		}
		return out
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = e
		}
		return out
	default:
		return v
	}
}
