package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/uuid"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	authzv1 "github.com/authzd/authzd/gen/authz/v1"
	"github.com/authzd/authzd/internal/tracing"
)

// httpCall is the REST request's own state, shared between the middleware
// and the gateway's error handler.
type httpCall struct {
	decisionID string
	// overflow is set when the body exceeded the limit while being read.
	overflow bool
}

type httpCallKey struct{}

func httpCallFrom(ctx context.Context) *httpCall {
	if c, ok := ctx.Value(httpCallKey{}).(*httpCall); ok {
		return c
	}
	return &httpCall{}
}

// marshaler writes every field, defaults included, with proto field names,
// and refuses unknown fields, as DESIGN.md requires.
var marshaler = &runtime.JSONPb{
	MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
	UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
}

func (s *Server) httpHandler(ctx context.Context) (http.Handler, error) {
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithErrorHandler(s.gatewayError),
		runtime.WithRoutingErrorHandler(s.routingError),
		// The middleware has already set x-decision-id on the response.
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
	)
	if err := authzv1.RegisterDecisionServiceHandlerServer(ctx, gw, &gatewayService{s: s}); err != nil {
		return nil, fmt.Errorf("server: register gateway: %w", err)
	}

	api := s.apiMiddleware(gw)
	if s.opts.PeerCheck != nil {
		api = s.opts.PeerCheck(api)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.opts.OpenAPI)
	})
	if s.opts.Dev != nil {
		mux.Handle("/dev/", s.opts.Dev)
	}
	return tracing.HTTPMiddleware(mux), nil
}

// apiMiddleware assigns the decision id of a REST call, returns it in the
// x-decision-id header, and bounds the request body.
func (s *Server) apiMiddleware(next http.Handler) http.Handler {
	limit := int64(s.opts.MaxBodyBytes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &httpCall{decisionID: uuid.NewString()}
		w.Header().Set(decisionIDHeader, c.decisionID)
		tracing.SetDecisionID(r.Context(), c.decisionID)
		ctx := context.WithValue(r.Context(), httpCallKey{}, c)
		r = r.WithContext(ctx)
		if r.ContentLength > limit {
			s.writeStatus(w, withInfo(codes.InvalidArgument, reasonBodyTooLarge,
				fmt.Sprintf("request body is %d bytes, over the limit of %d", r.ContentLength, limit),
				c.decisionID))
			return
		}
		if r.Body != nil {
			r.Body = &limitedBody{rc: r.Body, left: limit, call: c}
		}
		next.ServeHTTP(w, r)
	})
}

// gatewayService is the service as the REST gateway calls it: in-process,
// each call through the interceptor that gRPC calls pass through. (The
// gateway's own in-process registration skips gRPC interceptors; this
// wrapper is why REST and gRPC behave the same.)
type gatewayService struct {
	authzv1.UnimplementedDecisionServiceServer
	s *Server
}

var getPolicyMethod = "/" + authzv1.DecisionService_ServiceDesc.ServiceName + "/GetPolicy"

func (g *gatewayService) Decide(ctx context.Context, req *authzv1.DecideRequest) (*authzv1.DecideResponse, error) {
	resp, err := g.s.unaryInterceptor(ctx, req, &grpc.UnaryServerInfo{FullMethod: decideMethod},
		func(ctx context.Context, req any) (any, error) {
			return g.s.svc.Decide(ctx, req.(*authzv1.DecideRequest))
		})
	if err != nil {
		return nil, err
	}
	return resp.(*authzv1.DecideResponse), nil
}

func (g *gatewayService) GetPolicy(ctx context.Context, req *authzv1.GetPolicyRequest) (*authzv1.GetPolicyResponse, error) {
	resp, err := g.s.unaryInterceptor(ctx, req, &grpc.UnaryServerInfo{FullMethod: getPolicyMethod},
		func(ctx context.Context, req any) (any, error) {
			return g.s.svc.GetPolicy(ctx, req.(*authzv1.GetPolicyRequest))
		})
	if err != nil {
		return nil, err
	}
	return resp.(*authzv1.GetPolicyResponse), nil
}

// limitedBody fails a read past the limit and records that it did, so that
// the error handler answers 413 instead of a decoding error.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
	call *httpCall
}

var errBodyTooLarge = errors.New("request body over the limit")

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		b.call.overflow = true
		return n, errBodyTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// gatewayError writes an error of the REST path: the gRPC status as JSON,
// with ErrorInfo carrying the reason and the decision id. Errors raised by
// the gateway itself (a body that is not JSON, an unknown field) never
// reached the interceptor, so they are counted and logged here.
func (s *Server) gatewayError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler,
	w http.ResponseWriter, r *http.Request, err error) {
	c := httpCallFrom(r.Context())
	st := statusOf(err, c.decisionID)
	if c.overflow {
		st = withInfo(codes.InvalidArgument, reasonBodyTooLarge,
			fmt.Sprintf("request body is over the limit of %d bytes", s.opts.MaxBodyBytes),
			c.decisionID)
	}
	// The interceptor gives every error it returns an ErrorInfo; an error
	// without one was raised by the gateway before the call reached it.
	if gs, _ := status.FromError(err); reasonOf(gs) == "" {
		s.recordGatewayError(r, st)
	}
	s.writeStatus(w, st)
}

// recordGatewayError counts and logs a REST call refused before it reached
// the service.
func (s *Server) recordGatewayError(r *http.Request, st *status.Status) {
	method := getPolicyMethod
	if r.URL.Path == "/v1/decisions" {
		method = decideMethod
	}
	s.metrics.observe(method, st.Code(), reasonOf(st), nil, 0)
	if method == decideMethod {
		c := &call{decisionID: httpCallFrom(r.Context()).decisionID, method: method}
		s.opts.DecisionLog.Log(r.Context(), auditRecord(c, st.Code().String(), reasonOf(st), 0))
	}
}

func (s *Server) routingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler,
	w http.ResponseWriter, r *http.Request, httpStatus int) {
	c := httpCallFrom(r.Context())
	if httpStatus == http.StatusMethodNotAllowed {
		s.writeStatusCode(w, http.StatusMethodNotAllowed, withInfo(codes.Unimplemented,
			reasonNotFound, "method "+r.Method+" is not allowed on "+r.URL.Path, c.decisionID))
		return
	}
	s.writeStatus(w, withInfo(codes.NotFound, reasonNotFound, "no such path: "+r.URL.Path,
		c.decisionID))
}

func (s *Server) writeStatus(w http.ResponseWriter, st *status.Status) {
	s.writeStatusCode(w, httpStatus(st), st)
}

func (s *Server) writeStatusCode(w http.ResponseWriter, code int, st *status.Status) {
	body, err := marshaler.Marshal(st.Proto())
	if err != nil {
		body = []byte(`{"code": 13, "message": "internal error", "details": []}`)
		code = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// serveReady answers 200 when the service can decide, else 503 with why.
func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	if err := s.opts.Ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{
			"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
