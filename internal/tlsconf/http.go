package tlsconf

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Codes of the error body, as the gateway writes them (gRPC status codes).
const (
	codePermissionDenied = 7
	codeUnauthenticated  = 16
)

// RequireAllowed wraps the handler of the HTTP listener so that it applies
// Authorize to every request: a verified client that is not on the
// allow-list gets 403 with the gateway's error body, {"code": 7, "message":
// "client certificate \"x\" is not allowed", "details": []}; a request
// without a verified client certificate (possible only when the listener
// does not use ServerTLS) gets 401 with code 16. Without a client CA every
// request passes.
func (m *Manager) RequireAllowed(next http.Handler) http.Handler {
	if !m.MutualTLS() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := m.Authorize(r.TLS)
		if err == nil {
			next.ServeHTTP(w, r)
			return
		}
		m.refused("http", r.TLS, err)
		status, code := http.StatusUnauthorized, codeUnauthenticated
		var na *NotAllowedError
		if errors.As(err, &na) {
			status, code = http.StatusForbidden, codePermissionDenied
		}
		body, _ := json.Marshal(errorBody{Code: code, Message: err.Error(), Details: []any{}})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(status)
		_, _ = w.Write(append(body, '\n'))
	})
}

// errorBody is the gateway's status JSON.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []any  `json:"details"`
}
