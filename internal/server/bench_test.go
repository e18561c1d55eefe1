package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	authzv1 "github.com/authzd/authzd/gen/authz/v1"
)

// benchTokens mints n tokens of people who differ in name only, as the
// many users of a few groups and departments do.
func benchTokens(b *testing.B, s *stack, n int) []string {
	b.Helper()
	depts := []string{"Finance", "Sales", "Marketing"}
	out := make([]string, n)
	for i := range out {
		out[i] = s.mint(b, map[string]any{
			"sub": fmt.Sprint("user-", i), "email": fmt.Sprint("user-", i, "@example.com"),
			"groups":     []string{"Analytics Users"},
			"department": depts[i%len(depts)],
		})
	}
	return out
}

// BenchmarkServe measures whole decisions through the real servers over
// loopback, client included, with the verifier and decision caches off so
// that every request verifies its token as a new one would. It runs 16
// requests in flight per CPU.
func BenchmarkServe(b *testing.B) {
	s := startStackCaching(b, -1)
	tokens := benchTokens(b, s, 256)
	b.Run("grpc", func(b *testing.B) {
		var next atomic.Uint64
		b.SetParallelism(16)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				tok := tokens[next.Add(1)%uint64(len(tokens))]
				resp, err := s.client.Decide(ctx, &authzv1.DecideRequest{IdToken: tok})
				if err != nil || !resp.GetAllowed() {
					b.Errorf("Decide: %v, %v", resp, err)
					return
				}
			}
		})
	})
	b.Run("rest", func(b *testing.B) {
		var next atomic.Uint64
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		b.SetParallelism(16)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				tok := tokens[next.Add(1)%uint64(len(tokens))]
				body := []byte(`{"id_token":"` + tok + `"}`)
				resp, err := client.Post(s.httpURL+"/v1/decisions", "application/json", bytes.NewReader(body))
				if err != nil {
					b.Errorf("POST: %v", err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("POST: status %d", resp.StatusCode)
					return
				}
			}
		})
	})
}
