package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	authzv1 "github.com/authzd/authzd/gen/authz/v1"
	"github.com/authzd/authzd/gen/openapi"
	"github.com/authzd/authzd/internal/audit"
	"github.com/authzd/authzd/internal/decision"
	"github.com/authzd/authzd/internal/devidp"
	"github.com/authzd/authzd/internal/policy"
	"github.com/authzd/authzd/internal/rls"
	"github.com/authzd/authzd/internal/server"
	"github.com/authzd/authzd/internal/token"
	"github.com/authzd/authzd/policies"
)

// stack is a whole authzd on loopback listeners: dev issuer, verifier,
// shipped policy, renderer, decision service, gRPC and REST.
type stack struct {
	httpURL  string
	grpcAddr string
	idp      *devidp.Provider
	conn     *grpc.ClientConn
	client   authzv1.DecisionServiceClient
	auditBuf *syncBuffer
}

func startStack(t testing.TB) *stack {
	t.Helper()
	return startStackCaching(t, 0)
}

// startStackCaching starts a stack whose verifier and decision caches have
// the given size; -1 turns both off, 0 keeps their defaults.
func startStackCaching(t testing.TB, cacheSize int) *stack {
	t.Helper()
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := "http://" + httpLis.Addr().String()
	idp, err := devidp.New(devidp.Options{BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := policy.New(policy.Options{FS: policies.FS, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := token.NewVerifier([]token.IssuerConfig{{
		Issuer: idp.Issuer(), Audiences: []string{devidp.Audience},
	}}, token.Options{Logger: log, CacheSize: cacheSize})
	if err != nil {
		t.Fatal(err)
	}
	renderer, err := rls.NewRenderer(rls.Conf{})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := decision.New(decision.Options{Verifier: verifier, Evaluator: engine,
		Renderer: renderer, MaxTokenBytes: 16 << 10, CacheSize: cacheSize})
	if err != nil {
		t.Fatal(err)
	}
	buf := &syncBuffer{}
	srv, err := server.New(server.Options{
		Decider: dec, Policy: engine, Logger: log, OpenAPI: openapi.JSON,
		DecisionLog: audit.New(buf, audit.Options{}),
		Dev:         idp.Handler(), MaxBodyBytes: 64 << 10,
		Ready: func() error {
			if !verifier.Ready() {
				return context.DeadlineExceeded
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	verifier.Start(ctx)
	go func() { done <- srv.Serve(ctx, grpcLis, httpLis) }()
	conn, err := grpc.NewClient(grpcLis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	s := &stack{httpURL: base, grpcAddr: grpcLis.Addr().String(), idp: idp, conn: conn,
		client: authzv1.NewDecisionServiceClient(conn), auditBuf: buf}
	s.waitReady(t)
	return s
}

func (s *stack) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.httpURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("server not ready within 15s")
}

func (s *stack) mint(t testing.TB, claims map[string]any) string {
	t.Helper()
	tok, err := s.idp.Mint(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// post sends body to a REST path and returns status, header and JSON body.
func (s *stack) post(t *testing.T, path string, body []byte) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := http.Post(s.httpURL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response %d is not JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, out
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var alice = map[string]any{
	"sub": "alice", "email": "alice@example.com", "given_name": "Alice",
	"family_name": "Smith", "groups": []string{"Data Engineers"}, "department": "Finance",
}

func TestRESTAndGRPCAgree(t *testing.T) {
	s := startStack(t)
	tok := s.mint(t, alice)

	code, hdr, rest := s.post(t, "/v1/decisions", []byte(`{"id_token":"`+tok+`"}`))
	if code != http.StatusOK {
		t.Fatalf("REST status: got %d, want 200: %v", code, rest)
	}
	if got := hdr.Get("x-decision-id"); got == "" || got != rest["decision_id"] {
		t.Errorf("x-decision-id header %q, want the body's decision_id %q", got, rest["decision_id"])
	}

	var md metadata.MD
	resp, err := s.client.Decide(context.Background(), &authzv1.DecideRequest{IdToken: tok},
		grpc.Header(&md))
	if err != nil {
		t.Fatalf("gRPC Decide: %v", err)
	}
	if got := md.Get("x-decision-id"); len(got) != 1 || got[0] != resp.GetDecisionId() {
		t.Errorf("gRPC x-decision-id %v, want [%q]", got, resp.GetDecisionId())
	}
	raw, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var grpcJSON map[string]any
	if err := json.Unmarshal(raw, &grpcJSON); err != nil {
		t.Fatal(err)
	}
	if rest["decision_id"] == grpcJSON["decision_id"] {
		t.Error("two decisions share one decision id")
	}
	restID := rest["decision_id"]
	delete(rest, "decision_id")
	delete(grpcJSON, "decision_id")
	if diff := cmp.Diff(rest, grpcJSON); diff != "" {
		t.Errorf("REST and gRPC answers differ (-rest +grpc):\n%s", diff)
	}
	rest["decision_id"] = restID
	if got, want := rest["roles"], []any{"Alpha", "Dept Finance"}; !cmp.Equal(got, want) {
		t.Errorf("roles: got %v, want %v", got, want)
	}
	filters, _ := rest["rls_filters"].([]any)
	if len(filters) == 0 || !strings.Contains(filters[0].(map[string]any)["clause"].(string), "Finance") {
		t.Errorf("rls_filters: got %v, want a department filter on Finance", rest["rls_filters"])
	}
}

func TestEveryFieldPresent(t *testing.T) {
	s := startStack(t)
	tok := s.mint(t, map[string]any{"sub": "nobody", "groups": []string{"Unmapped"}})
	code, _, body := s.post(t, "/v1/decisions", []byte(`{"id_token":"`+tok+`"}`))
	if code != http.StatusOK {
		t.Fatalf("status: got %d, want 200: %v", code, body)
	}
	for _, k := range []string{"decision_id", "allowed", "subject", "roles", "rls_filters",
		"reasons", "policy_revision", "expires_at"} {
		if _, ok := body[k]; !ok {
			t.Errorf("field %q missing from %v", k, body)
		}
	}
	if body["allowed"] != false {
		t.Errorf("allowed: got %v, want false", body["allowed"])
	}
	if roles, ok := body["roles"].([]any); !ok || len(roles) != 0 {
		t.Errorf("roles: got %#v, want []", body["roles"])
	}
	if reasons, _ := body["reasons"].([]any); len(reasons) == 0 {
		t.Error("a denial carries no reason")
	}
}

func TestErrorStatusTable(t *testing.T) {
	s := startStack(t)
	expired := s.mint(t, map[string]any{"sub": "a", "iat": time.Now().Add(-3 * time.Hour).Unix(),
		"exp": time.Now().Add(-2 * time.Hour).Unix()})
	wrongAud := s.mint(t, map[string]any{"sub": "a", "aud": "grafana"})
	unknownIss := s.mint(t, map[string]any{"sub": "a", "iss": "https://evil.example.com/"})
	huge := strings.Repeat("a", 17<<10)

	tests := []struct {
		name     string
		body     string
		grpcReq  *authzv1.DecideRequest // nil: REST only
		httpCode int
		grpcCode codes.Code
		reason   string
	}{
		{name: "not json", body: `{"id_token":`, httpCode: 400, reason: "INVALID_REQUEST"},
		{name: "unknown field", body: `{"id_token":"x","admin":true}`, httpCode: 400,
			reason: "INVALID_REQUEST"},
		{name: "token missing", body: `{}`, grpcReq: &authzv1.DecideRequest{},
			httpCode: 400, grpcCode: codes.InvalidArgument, reason: "TOKEN_MISSING"},
		{name: "token too large", body: `{"id_token":"` + huge + `"}`,
			grpcReq:  &authzv1.DecideRequest{IdToken: huge},
			httpCode: 400, grpcCode: codes.InvalidArgument, reason: "TOKEN_TOO_LARGE"},
		{name: "body too large", body: `{"id_token":"` + strings.Repeat("a", 70<<10) + `"}`,
			httpCode: 413, reason: "BODY_TOO_LARGE"},
		{name: "malformed", body: `{"id_token":"not-a-jwt"}`,
			grpcReq:  &authzv1.DecideRequest{IdToken: "not-a-jwt"},
			httpCode: 401, grpcCode: codes.Unauthenticated, reason: "TOKEN_MALFORMED"},
		{name: "expired", body: `{"id_token":"` + expired + `"}`,
			grpcReq:  &authzv1.DecideRequest{IdToken: expired},
			httpCode: 401, grpcCode: codes.Unauthenticated, reason: "TOKEN_EXPIRED"},
		{name: "wrong audience", body: `{"id_token":"` + wrongAud + `"}`,
			grpcReq:  &authzv1.DecideRequest{IdToken: wrongAud},
			httpCode: 401, grpcCode: codes.Unauthenticated, reason: "AUDIENCE_MISMATCH"},
		{name: "unknown issuer", body: `{"id_token":"` + unknownIss + `"}`,
			grpcReq:  &authzv1.DecideRequest{IdToken: unknownIss},
			httpCode: 401, grpcCode: codes.Unauthenticated, reason: "UNKNOWN_ISSUER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, body := s.post(t, "/v1/decisions", []byte(tt.body))
			if code != tt.httpCode {
				t.Errorf("HTTP status: got %d, want %d (%v)", code, tt.httpCode, body)
			}
			id := hdr.Get("x-decision-id")
			if id == "" {
				t.Error("no x-decision-id header on an error")
			}
			details, _ := body["details"].([]any)
			if len(details) != 1 {
				t.Fatalf("details: got %v, want one ErrorInfo", body["details"])
			}
			info := details[0].(map[string]any)
			if info["reason"] != tt.reason {
				t.Errorf("reason: got %v, want %s", info["reason"], tt.reason)
			}
			if md, _ := info["metadata"].(map[string]any); md["decision_id"] != id {
				t.Errorf("ErrorInfo decision_id %v, want header's %q", md["decision_id"], id)
			}
			if msg, _ := body["message"].(string); msg == "" {
				t.Error("error message is empty")
			}
			if tt.grpcReq == nil {
				return
			}
			_, err := s.client.Decide(context.Background(), tt.grpcReq)
			st := status.Convert(err)
			if st.Code() != tt.grpcCode {
				t.Errorf("gRPC code: got %s, want %s (%v)", st.Code(), tt.grpcCode, err)
			}
			var got string
			for _, d := range st.Details() {
				if ei, ok := d.(*errdetails.ErrorInfo); ok {
					got = ei.GetReason()
				}
			}
			if got != tt.reason {
				t.Errorf("gRPC reason: got %q, want %q", got, tt.reason)
			}
		})
	}
	// The server keeps serving after every bad request.
	code, _, _ := s.post(t, "/v1/decisions", []byte(`{"id_token":"`+s.mint(t, alice)+`"}`))
	if code != http.StatusOK {
		t.Errorf("after bad requests: got %d, want 200", code)
	}
	if strings.Contains(s.auditBuf.String(), expired) {
		t.Error("decision log holds a raw token")
	}
}

func TestHealthAndReflection(t *testing.T) {
	s := startStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(s.conn)
	var last healthpb.HealthCheckResponse_ServingStatus
	for ctx.Err() == nil {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{
			Service: authzv1.DecisionService_ServiceDesc.ServiceName})
		if err == nil {
			last = resp.GetStatus()
			if last == healthpb.HealthCheckResponse_SERVING {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: got %s, want SERVING", last)
	}

	stream, err := rpb.NewServerReflectionClient(s.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range resp.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "authz.v1.DecisionService") {
		t.Errorf("reflection lists %v, want authz.v1.DecisionService among them", names)
	}
}

func TestHTTPEndpoints(t *testing.T) {
	s := startStack(t)
	tests := []struct {
		name, path string
		want       int
		contains   string
	}{
		{"healthz", "/healthz", 200, "ok"},
		{"readyz", "/readyz", 200, "ready"},
		{"openapi", "/openapi.json", 200, `"swagger": "2.0"`},
		{"policy", "/v1/policy", 200, `"revision":"sha256:`},
		{"policy without a bundle", "/v1/policy", 200, `"bundle_revision":"","bundle_error":""`},
		{"unknown path", "/v1/nothing", 404, `"code":5`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(s.httpURL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want {
				t.Errorf("status: got %d, want %d", resp.StatusCode, tt.want)
			}
			compact := strings.ReplaceAll(string(raw), " ", "")
			want := strings.ReplaceAll(tt.contains, " ", "")
			if !strings.Contains(compact, want) {
				t.Errorf("body %q does not contain %q", raw, tt.contains)
			}
		})
	}
	// Metrics count the decisions made through either path.
	s.post(t, "/v1/decisions", []byte(`{"id_token":"`+s.mint(t, alice)+`"}`))
	resp, err := http.Get(s.httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`authzd_decisions_total{code="OK",outcome="allowed",reason=""} 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Decide"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestDecisionLogOneLinePerDecision(t *testing.T) {
	s := startStack(t)
	tok := s.mint(t, alice)
	s.post(t, "/v1/decisions", []byte(`{"id_token":"`+tok+`"}`))
	if _, err := s.client.Decide(context.Background(), &authzv1.DecideRequest{IdToken: "x.y.z"}); err == nil {
		t.Fatal("a malformed token was accepted")
	}
	lines := strings.Split(strings.TrimSpace(s.auditBuf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("decision log has %d lines, want 2:\n%s", len(lines), s.auditBuf.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"decision_id", "subject", "issuer", "allowed", "roles",
		"policy_revision", "latency_ms", "code"} {
		if _, ok := first[k]; !ok {
			t.Errorf("decision log line lacks %q: %s", k, lines[0])
		}
	}
	if strings.Contains(s.auditBuf.String(), tok) {
		t.Error("decision log holds the raw token")
	}
}
