package tlsconf

import (
	"crypto/tls"

	"google.golang.org/grpc/credentials"
)

// GRPCCredentials returns the transport credentials of the gRPC listener.
// The handshake uses the current certificate, requires a client
// certificate verified by the current client CA when one is set, and
// applies the allow-list: a client that is not on it fails the handshake
// with a "bad certificate" alert (the caller sees UNAVAILABLE) and is
// logged at WARN with its identity; it never reaches a handler.
func (m *Manager) GRPCCredentials() credentials.TransportCredentials {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m.maybeReload()
			return m.mat.Load().grpc, nil
		},
	}
	return credentials.NewTLS(base)
}
