package tlsconf_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/authzd/authzd/internal/tlsconf"
)

// Example shows the wiring of both listeners: the same Manager secures the
// gRPC listener through its transport credentials and the HTTP listener
// through ServerTLS and RequireAllowed, so both apply the same rule.
func Example() {
	ctx := context.Background()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	m, err := tlsconf.New(tlsconf.Options{
		CertFile:       "/etc/authzd/tls/tls.crt",
		KeyFile:        "/etc/authzd/tls/tls.key",
		ClientCAFile:   "/etc/authzd/tls/client-ca.crt",
		AllowedClients: []string{"superset", "spiffe://example.org/ns/bi/sa/reporter"},
		Logger:         log.With("component", "tls"),
		Registerer:     prometheus.NewRegistry(),
	})
	if err != nil {
		log.Error("tls", "error", err)
		return
	}
	go m.Run(ctx) // optional: pick up rotation even when no client connects

	gs := grpc.NewServer(grpc.Creds(m.GRPCCredentials()))
	hs := &http.Server{Handler: m.RequireAllowed(http.NewServeMux()), TLSConfig: m.ServerTLS()}

	gl, _ := net.Listen("tcp", "0.0.0.0:9090")
	hl, _ := net.Listen("tcp", "0.0.0.0:8080")
	go func() { _ = gs.Serve(gl) }()
	_ = hs.ServeTLS(hl, "", "") // certificates come from TLSConfig
}
