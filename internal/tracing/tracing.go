// Package tracing sets up OpenTelemetry traces for authzd from the
// standard OTEL_* environment variables and provides the hooks that the
// server installs: a gRPC stats handler, an HTTP middleware, the decision
// id on the current span, and spans for internal steps.
//
// Tracing is off unless the environment asks for it: OTEL_TRACES_EXPORTER
// set to otlp or console, or OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set. OTEL_SDK_DISABLED=true turns it
// off whatever else is set. While it is off, the hooks install nothing and
// StartSpan returns a shared no-op span, so tracing costs nothing.
//
// Setup must run before the server asks for GRPCServerOption,
// GRPCClientOption or HTTPMiddleware, since those decide once whether to
// install anything.
package tracing

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// ScopeName is the instrumentation scope of the spans StartSpan creates.
const ScopeName = "github.com/authzd/authzd"

// DecisionIDKey is the span attribute that carries the decision id.
const DecisionIDKey = attribute.Key("authzd.decision_id")

// state is what Enable installed; nil while tracing is off.
type state struct {
	tp     trace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

var current atomic.Pointer[state]

// consoleOut receives the spans of the console exporter.
var consoleOut io.Writer = os.Stderr

// noopSpan is returned by StartSpan while tracing is off.
var noopSpan trace.Span = noop.Span{}

// Enabled reports whether tracing is on.
func Enabled() bool { return current.Load() != nil }

// Setup configures tracing from the environment. When the environment
// does not ask for traces it changes nothing and returns a shutdown that
// does nothing. Otherwise it builds a tracer provider with a batching
// exporter per OTEL_TRACES_EXPORTER entry (otlp, console; a list is
// allowed, "none" alone means off) and the resource service.name and
// service.version (OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win),
// sets it and the W3C trace-context and baggage propagator as the globals,
// and turns the hooks of this package on.
//
// The OTLP exporter speaks grpc or http/protobuf, as
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL says
// (default http/protobuf); endpoint, headers, TLS, timeout and compression
// come from the exporters' own OTEL_EXPORTER_OTLP_* variables, and the
// sampler and batching from OTEL_TRACES_SAMPLER* and OTEL_BSP_*. The
// console exporter writes to standard error, so that standard output
// carries only the decision log.
//
// The returned shutdown flushes pending spans and stops the exporters; call
// it once, on the way out, with a bounded context.
func Setup(ctx context.Context, serviceName, version string) (shutdown func(context.Context) error, err error) {
	off := func(context.Context) error { return nil }
	exporters, err := exportersFromEnv()
	if err != nil || len(exporters) == 0 {
		return off, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", serviceName),
			attribute.String("service.version", version),
		),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return off, fmt.Errorf("tracing: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	var made []sdktrace.SpanExporter
	for _, name := range exporters {
		exp, err := newExporter(ctx, name)
		if err != nil {
			for _, e := range made {
				_ = e.Shutdown(ctx)
			}
			return off, err
		}
		made = append(made, exp)
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	Enable(tp)
	return func(ctx context.Context) error {
		Disable()
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("tracing: shutdown: %w", err)
		}
		return nil
	}, nil
}

// exportersFromEnv returns the exporters the environment asks for, none
// when tracing is off.
func exportersFromEnv() ([]string, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	list := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))
	if list == "" {
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
			os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
			return []string{"otlp"}, nil
		}
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		switch name {
		case "none":
			continue
		case "otlp", "console":
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		default:
			return nil, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER entry %q is not one of otlp, console, none", name)
		}
	}
	return out, nil
}

func newExporter(ctx context.Context, name string) (sdktrace.SpanExporter, error) {
	if name == "console" {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(consoleOut))
		if err != nil {
			return nil, fmt.Errorf("tracing: console exporter: %w", err)
		}
		return exp, nil
	}
	proto := strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if proto == "" {
		proto = strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch proto {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("tracing: OTLP protocol %q is not one of grpc, http/protobuf", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP %s exporter: %w", proto, err)
	}
	return exp, nil
}

// Enable turns tracing on with tp: it becomes the global tracer provider,
// the W3C trace-context and baggage propagator the global propagator, and
// the hooks of this package use both. Setup calls it; tests call it with a
// provider that records into memory.
func Enable(tp trace.TracerProvider) {
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{},
		propagation.Baggage{})
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(prop)
	current.Store(&state{tp: tp, tracer: tp.Tracer(ScopeName), prop: prop})
}

// Disable turns the hooks of this package off again. Spans already
// started end normally; hooks installed while tracing was on stay
// installed but record nothing once the provider is shut down.
func Disable() { current.Store(nil) }

// GRPCServerOption returns the option that traces the RPCs of a gRPC
// server: a server span per RPC, continuing the caller's trace from the
// W3C traceparent metadata. Health checks and reflection are not traced.
// While tracing is off it returns an option that does nothing.
func GRPCServerOption() grpc.ServerOption {
	s := current.Load()
	if s == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(s.tp),
		otelgrpc.WithPropagators(s.prop),
		otelgrpc.WithFilter(traced),
	))
}

// GRPCClientOption returns the dial option that traces the calls of a gRPC
// client and passes the trace on to the server. The REST gateway's
// in-process connection should use it, so that a REST request's server
// span is the child of its HTTP span. While tracing is off it returns an
// option that does nothing.
func GRPCClientOption() grpc.DialOption {
	s := current.Load()
	if s == nil {
		return grpc.EmptyDialOption{}
	}
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(s.tp),
		otelgrpc.WithPropagators(s.prop),
		otelgrpc.WithFilter(traced),
	))
}

// traced reports whether an RPC gets a span: all but health checks and
// reflection.
func traced(info *stats.RPCTagInfo) bool {
	return !strings.HasPrefix(info.FullMethodName, "/grpc.health.v1.") &&
		!strings.HasPrefix(info.FullMethodName, "/grpc.reflection.")
}

// HTTPMiddleware wraps an HTTP handler so that every request but
// /healthz, /readyz and /metrics gets a server span, continuing the
// caller's trace from the W3C traceparent header. While tracing is off it
// returns next itself.
func HTTPMiddleware(next http.Handler) http.Handler {
	s := current.Load()
	if s == nil {
		return next
	}
	return otelhttp.NewHandler(next, "authzd",
		otelhttp.WithTracerProvider(s.tp),
		otelhttp.WithPropagators(s.prop),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				return false
			}
			return true
		}),
	)
}

// SetDecisionID puts the decision id on the span of ctx as the attribute
// authzd.decision_id. It does nothing when ctx has no recording span.
func SetDecisionID(ctx context.Context, id string) {
	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		span.SetAttributes(DecisionIDKey.String(id))
	}
}

// StartSpan starts a span for an internal step (verify, evaluate, render)
// as a child of the span of ctx. The caller must End it. While tracing is
// off it returns ctx and a no-op span without allocating.
func StartSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	s := current.Load()
	if s == nil {
		return ctx, noopSpan
	}
	return s.tracer.Start(ctx, name)
}

// RecordError marks span as failed with err. It does nothing for a nil
// error.
func RecordError(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetStatus(otelcodes.Error, err.Error())
}
