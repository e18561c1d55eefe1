package tlsconf

import (
	"crypto/tls"
	"net"

	"google.golang.org/grpc/credentials"
)

// InProcessNetwork is the network name of the in-process (bufconn)
// connections through which the REST gateway calls the gRPC service.
const InProcessNetwork = "bufconn"

// InProcessInfo is the AuthInfo of an in-process connection, which carries
// no TLS: the REST request it serves was authorized by RequireAllowed.
type InProcessInfo struct {
	credentials.CommonAuthInfo
}

// AuthType implements credentials.AuthInfo.
func (InProcessInfo) AuthType() string { return "inprocess" }

// GRPCCredentials returns the transport credentials of the gRPC listener.
// The handshake uses the current certificate, requires a client
// certificate verified by the current client CA when one is set, and
// applies the allow-list: a client that is not on it fails the handshake
// with a "bad certificate" alert (the caller sees UNAVAILABLE) and is
// logged at WARN with its identity; it never reaches a handler.
//
// Connections accepted from an in-process listener (network
// InProcessNetwork, the gateway's bufconn) skip TLS, so one grpc.Server can
// serve both the TCP listener and the gateway's in-process listener.
func (m *Manager) GRPCCredentials() credentials.TransportCredentials {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m.maybeReload()
			return m.mat.Load().grpc, nil
		},
	}
	return &grpcCreds{TransportCredentials: credentials.NewTLS(base)}
}

// grpcCreds is TLS credentials that let in-process connections through.
type grpcCreds struct {
	credentials.TransportCredentials
}

// ServerHandshake implements credentials.TransportCredentials.
func (c *grpcCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if raw.LocalAddr().Network() == InProcessNetwork {
		return raw, InProcessInfo{credentials.CommonAuthInfo{
			SecurityLevel: credentials.NoSecurity,
		}}, nil
	}
	return c.TransportCredentials.ServerHandshake(raw)
}

// Clone implements credentials.TransportCredentials.
func (c *grpcCreds) Clone() credentials.TransportCredentials {
	return &grpcCreds{TransportCredentials: c.TransportCredentials.Clone()}
}
