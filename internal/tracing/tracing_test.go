package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/emptypb"
)

// otelEnv lists every variable Setup reads, cleared before each case.
var otelEnv = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
}

// isolate clears the OTEL environment and restores the globals afterwards.
func isolate(t *testing.T) {
	t.Helper()
	for _, k := range otelEnv {
		t.Setenv(k, "")
	}
	consoleOut = io.Discard
	t.Cleanup(func() {
		consoleOut = os.Stderr
		Disable()
		otel.SetTracerProvider(noop.NewTracerProvider())
	})
}

// recorder turns tracing on with a provider that records into memory.
func recorder(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	Enable(tp)
	return exp
}

func TestSetupFromEnvironment(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantOn  bool
		wantErr string
	}{
		{name: "nothing set is off"},
		{name: "none is off", env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}},
		{name: "SDK disabled wins", env: map[string]string{"OTEL_SDK_DISABLED": "TRUE",
			"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{name: "endpoint alone turns OTLP on",
			env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, wantOn: true},
		{name: "traces endpoint alone turns OTLP on",
			env:    map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"},
			wantOn: true},
		{name: "OTLP over gRPC", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
			wantOn: true},
		{name: "traces protocol overrides protocol", env: map[string]string{
			"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, wantOn: true},
		{name: "console", env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, wantOn: true},
		{name: "a list", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp, console"}, wantOn: true},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"},
			wantErr: `OTEL_TRACES_EXPORTER entry "zipkin" is not one of otlp, console, none`},
		{name: "unknown protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
			wantErr: `OTLP protocol "http/json" is not one of grpc, http/protobuf`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			otel.SetTracerProvider(noop.NewTracerProvider())
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			shutdown, err := Setup(context.Background(), "authzd", "v0.0.0-test")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Setup: got error %v, want %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			if got := Enabled(); got != tt.wantOn {
				t.Errorf("Enabled: got %v, want %v", got, tt.wantOn)
			}
			_, isSDK := otel.GetTracerProvider().(*sdktrace.TracerProvider)
			if isSDK != tt.wantOn {
				t.Errorf("global provider is the SDK: got %v, want %v", isSDK, tt.wantOn)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			if Enabled() {
				t.Errorf("Enabled after shutdown: got true, want false")
			}
		})
	}
}

func TestSetupResource(t *testing.T) {
	isolate(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
	shutdown, err := Setup(context.Background(), "authzd", "v1.2.3")
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	defer shutdown(context.Background())
	// Record what the provider stamps on a span by adding a second,
	// in-memory processor to it.
	exp := tracetest.NewInMemoryExporter()
	otel.GetTracerProvider().(*sdktrace.TracerProvider).RegisterSpanProcessor(
		sdktrace.NewSimpleSpanProcessor(exp))
	_, span := StartSpan(context.Background(), "evaluate")
	span.End()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	got := map[string]string{}
	for _, kv := range spans[0].Resource.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	for k, want := range map[string]string{"service.name": "authzd", "service.version": "v1.2.3",
		"deployment.environment.name": "staging", "telemetry.sdk.language": "go"} {
		if got[k] != want {
			t.Errorf("resource %s: got %q, want %q", k, got[k], want)
		}
	}
}

// pingDesc is a one-method gRPC service, traced unlike health checks.
var pingDesc = grpc.ServiceDesc{
	ServiceName: "authzd.test.Ping",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Ping",
		Handler: func(_ any, ctx context.Context, dec func(any) error,
			ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) { return &emptypb.Empty{}, nil }
			if ic == nil {
				return h(ctx, in)
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/authzd.test.Ping/Ping"}, h)
		},
	}},
}

// decide is the interceptor a server would install: it names the decision
// on the server span and traces an internal step; health checks pass.
func decide(ctx context.Context, req any, info *grpc.UnaryServerInfo,
	h grpc.UnaryHandler) (any, error) {
	if strings.HasPrefix(info.FullMethod, "/grpc.health.v1.") {
		return h(ctx, req)
	}
	SetDecisionID(ctx, "0b6c1e2a-decision")
	sctx, span := StartSpan(ctx, "evaluate")
	defer span.End()
	return h(sctx, req)
}

// startGRPC serves the ping and health services over loopback with the
// hooks of this package and returns a client connection.
func startGRPC(t *testing.T) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(GRPCServerOption(), grpc.ChainUnaryInterceptor(decide))
	srv.RegisterService(&pingDesc, struct{}{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), GRPCClientOption())
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func call(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Invoke(ctx, "/authzd.test.Ping/Ping", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check: %v", err)
	}
}

// spansEventually waits until exp holds n spans; the server span ends just
// after the client has its answer.
func spansEventually(t *testing.T, exp *tracetest.InMemoryExporter, n int) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := exp.GetSpans()
		if len(spans) >= n || time.Now().After(deadline) {
			return spans
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type spanShape struct {
	Name       string
	Kind       trace.SpanKind
	DecisionID string
	Parent     string
}

func shapes(spans tracetest.SpanStubs) []spanShape {
	names := map[trace.SpanID]string{}
	for _, s := range spans {
		names[s.SpanContext.SpanID()] = s.Name
	}
	var out []spanShape
	for _, s := range spans {
		sh := spanShape{Name: s.Name, Kind: s.SpanKind, Parent: names[s.Parent.SpanID()]}
		for _, kv := range s.Attributes {
			if kv.Key == DecisionIDKey {
				sh.DecisionID = kv.Value.AsString()
			}
		}
		out = append(out, sh)
	}
	return out
}

func TestGRPCServerSpanCarriesDecisionID(t *testing.T) {
	isolate(t)
	exp := recorder(t)
	conn := startGRPC(t)
	call(t, conn)

	spans := spansEventually(t, exp, 3)
	want := []spanShape{
		{Name: "evaluate", Kind: trace.SpanKindInternal, Parent: "authzd.test.Ping/Ping"},
		{Name: "authzd.test.Ping/Ping", Kind: trace.SpanKindServer, DecisionID: "0b6c1e2a-decision",
			Parent: "authzd.test.Ping/Ping"},
		{Name: "authzd.test.Ping/Ping", Kind: trace.SpanKindClient},
	}
	// The client span may end before or after the server span.
	got := shapes(spans)
	sortShapes(got)
	sortShapes(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
	traceID := spans[0].SpanContext.TraceID()
	for _, s := range spans {
		if s.SpanContext.TraceID() != traceID {
			t.Errorf("span %q: got trace %s, want %s", s.Name, s.SpanContext.TraceID(), traceID)
		}
	}
}

func sortShapes(s []spanShape) {
	key := func(x spanShape) string { return fmt.Sprint(x.Name, x.Kind) }
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if key(s[j]) < key(s[i]) {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

func TestHTTPMiddleware(t *testing.T) {
	isolate(t)
	exp := recorder(t)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/decisions", func(w http.ResponseWriter, r *http.Request) {
		SetDecisionID(r.Context(), "rest-decision")
		w.WriteHeader(http.StatusOK)
	})
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		mux.HandleFunc("GET "+p, func(http.ResponseWriter, *http.Request) {})
	}
	srv := httptest.NewServer(HTTPMiddleware(mux))
	defer srv.Close()

	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/decisions", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", parent)
	for _, r := range []*http.Request{req, get(t, srv.URL+"/healthz"), get(t, srv.URL+"/readyz"),
		get(t, srv.URL+"/metrics")} {
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatalf("%s: %v", r.URL.Path, err)
		}
		resp.Body.Close()
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1 (health, readiness and metrics are not traced): %v",
			len(spans), shapes(spans))
	}
	s := spans[0]
	if got, want := s.SpanContext.TraceID().String(), "4bf92f3577b34da6a3ce929d0e0e4736"; got != want {
		t.Errorf("trace id: got %s, want the caller's %s", got, want)
	}
	if got, want := s.Name, "POST /v1/decisions"; got != want {
		t.Errorf("span name: got %q, want %q", got, want)
	}
	if got := attr(s.Attributes, DecisionIDKey); got != "rest-decision" {
		t.Errorf("decision id: got %q, want %q", got, "rest-decision")
	}
}

func get(t *testing.T, url string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func attr(kvs []attribute.KeyValue, k attribute.Key) string {
	for _, kv := range kvs {
		if kv.Key == k {
			return kv.Value.Emit()
		}
	}
	return ""
}

// handlerPtr is a comparable handler, to check that HTTPMiddleware returns
// it unchanged.
type handlerPtr struct{ http.Handler }

func TestOffByDefaultCreatesNoSpans(t *testing.T) {
	isolate(t)
	shutdown, err := Setup(context.Background(), "authzd", "test")
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	defer shutdown(context.Background())
	if Enabled() {
		t.Fatalf("Enabled with no OTEL variables: got true, want false")
	}
	// Even with a recording global provider, installed by someone else,
	// the hooks of this package stay out of the way while tracing is off.
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	otel.SetTracerProvider(tp)

	if _, ok := GRPCServerOption().(grpc.EmptyServerOption); !ok {
		t.Errorf("GRPCServerOption: got %T, want grpc.EmptyServerOption", GRPCServerOption())
	}
	if _, ok := GRPCClientOption().(grpc.EmptyDialOption); !ok {
		t.Errorf("GRPCClientOption: got %T, want grpc.EmptyDialOption", GRPCClientOption())
	}
	h := &handlerPtr{http.NotFoundHandler()}
	if got := HTTPMiddleware(h); got != http.Handler(h) {
		t.Errorf("HTTPMiddleware: got %T, want the handler itself", got)
	}

	conn := startGRPC(t)
	call(t, conn)
	ctx, span := StartSpan(context.Background(), "verify")
	SetDecisionID(ctx, "x")
	RecordError(span, errors.New("boom"))
	span.End()
	if got := exp.GetSpans(); len(got) != 0 {
		t.Errorf("got %d spans, want none: %v", len(got), shapes(got))
	}
	allocs := testing.AllocsPerRun(100, func() {
		ctx, span := StartSpan(ctx, "evaluate")
		SetDecisionID(ctx, "x")
		span.End()
	})
	if allocs != 0 {
		t.Errorf("StartSpan while off: got %v allocations, want 0", allocs)
	}
}

func TestRecordError(t *testing.T) {
	isolate(t)
	exp := recorder(t)
	_, span := StartSpan(context.Background(), "verify")
	RecordError(span, nil)
	RecordError(span, errors.New(`token: issuer "x" is not trusted`))
	span.End()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	if got, want := spans[0].Status.Description, `token: issuer "x" is not trusted`; got != want {
		t.Errorf("status: got %q, want %q", got, want)
	}
	if got := len(spans[0].Events); got != 1 {
		t.Errorf("events: got %d, want 1 exception event", got)
	}
}
