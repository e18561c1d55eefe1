package token

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestKeyRotationWithoutRestart(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1")
	v := startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{RefetchInterval: time.Millisecond, RefreshInterval: 20 * time.Millisecond,
			MinRefreshInterval: 20 * time.Millisecond}, p.issuer)

	old := mint(t, ks["rs1"], "RS256", nil, claims(p.issuer, nil))
	if _, err := v.Verify(context.Background(), old); err != nil {
		t.Fatalf("got error %v before rotation, want none", err)
	}

	// The identity provider publishes the next key beside the old one, then
	// signs with it: the unknown kid triggers a refetch.
	p.setKeys(t, "rs1", "rs2")
	next := mint(t, ks["rs2"], "RS256", nil, claims(p.issuer, nil))
	if _, err := v.Verify(context.Background(), next); err != nil {
		t.Fatalf("got error %v for a token of the new key, want none", err)
	}

	// Then it retires the old key. Tokens of the old key, even one that sits
	// in the cache, fail once a background refresh has seen the new set.
	p.setKeys(t, "rs2")
	waitFor(t, "a background refresh", func() bool {
		_, err := v.Verify(context.Background(), mint(t, ks["rs1"], "RS256", nil, claims(p.issuer, map[string]any{"sub": "x"})))
		return err != nil
	})
	_, err := v.Verify(context.Background(), old)
	wantRefusal(t, err, ReasonUnknownKey, `"rs1"`)
	if _, err := v.Verify(context.Background(), next); err != nil {
		t.Fatalf("got error %v for the new key after retirement, want none", err)
	}
}

func TestBackgroundRefreshFollowsCacheControl(t *testing.T) {
	p := newTestIdP(t, "rs1")
	p.cacheControl = "public, max-age=0"
	startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{MinRefreshInterval: 20 * time.Millisecond}, p.issuer)
	// max-age=0 is raised to the 20ms minimum, so refreshes keep coming.
	waitFor(t, "three background refreshes", func() bool { return p.jwksHits.Load() >= 3 })
	if got := p.discoveryHits.Load(); got < 1 {
		t.Errorf("got %d discovery requests, want at least 1", got)
	}
}

func TestOutageKeepsCachedKeys(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1")
	var logs syncBuffer
	reg := prometheus.NewPedanticRegistry()
	v := startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{
			MinRefreshInterval: 10 * time.Millisecond, RefreshInterval: 10 * time.Millisecond,
			RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
			CacheSize: -1, Logger: testLogger(&logs), Registerer: reg,
		}, p.issuer)

	p.fail.Store(true)
	failures := func() float64 {
		return counterValue(v.metrics.fetches.WithLabelValues(p.issuer, "failure"))
	}
	waitFor(t, "several failed refreshes", func() bool { return failures() >= 3 })

	if _, err := v.Verify(context.Background(), mint(t, ks["rs1"], "RS256", nil, claims(p.issuer, nil))); err != nil {
		t.Fatalf("got error %v during the outage, want none: the cached keys must keep working", err)
	}
	if !v.Ready() {
		t.Errorf("got Ready() false during an outage with cached keys, want true")
	}
	st := v.Status()[0]
	if st.Keys != 1 || !strings.Contains(st.LastError, "status") {
		t.Errorf("got status %+v, want 1 key and a last error naming the HTTP status", st)
	}
	if got, ok := gathered(t, reg, "authzd_token_issuer_up", p.issuer); !ok || got != 0 {
		t.Errorf("got authzd_token_issuer_up %v (present %v), want 0 during the outage", got, ok)
	}
	if got := logs.count("WARN", "identity provider keys unavailable"); got != 1 {
		t.Errorf("got %d outage warnings after %v failures, want 1 (once per transition)", got, failures())
	}

	p.fail.Store(false)
	waitFor(t, "recovery", func() bool { return v.Status()[0].LastError == "" })
	waitFor(t, "recovery log", func() bool { return logs.count("INFO", "identity provider keys available again") == 1 })
	if strings.Contains(logs.String(), "eyJ") {
		t.Errorf("logs contain something that looks like a token:\n%s", logs.String())
	}
}

func TestIssuerUnavailable(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1")
	p.fail.Store(true)
	v := startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{RetryMin: 10 * time.Millisecond, RetryMax: 10 * time.Millisecond})
	waitFor(t, "a failed fetch", func() bool { return v.Status()[0].LastError != "" })

	if v.Ready() {
		t.Errorf("got Ready() true, want false before the issuer answered")
	}
	_, err := v.Verify(context.Background(), mint(t, ks["rs1"], "RS256", nil, claims(p.issuer, nil)))
	wantRefusal(t, err, ReasonIssuerUnavailable, "status")

	// The service becomes ready as soon as the identity provider answers.
	p.fail.Store(false)
	waitFor(t, "readiness", v.Ready)
	if _, err := v.Verify(context.Background(), mint(t, ks["rs1"], "RS256", nil, claims(p.issuer, nil))); err != nil {
		t.Fatalf("got error %v after recovery, want none", err)
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	p := newTestIdP(t, "rs1")
	p.docIssuer = "https://impostor.example.com"
	v := startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{RetryMin: 10 * time.Millisecond, RetryMax: 10 * time.Millisecond})
	waitFor(t, "a failed fetch", func() bool { return v.Status()[0].LastError != "" })
	if v.Ready() {
		t.Errorf("got Ready() true, want false when discovery names another issuer")
	}
	if got, want := v.Status()[0].LastError, `names issuer "https://impostor.example.com"`; !strings.Contains(got, want) {
		t.Errorf("got last error %q, want it to contain %q", got, want)
	}
	if n := p.jwksHits.Load(); n != 0 {
		t.Errorf("got %d JWKS requests, want 0 after a discovery mismatch", n)
	}
}

func TestExplicitJWKSURL(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "ec1")
	v := startVerifier(t, []IssuerConfig{{
		Issuer: "https://idp.example.com", Audiences: []string{"superset"}, JWKSURL: p.srv.URL + "/realm/jwks",
	}}, Options{}, "https://idp.example.com")
	if _, err := v.Verify(context.Background(), mint(t, ks["ec1"], "ES256", nil, claims("https://idp.example.com", nil))); err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	if n := p.discoveryHits.Load(); n != 0 {
		t.Errorf("got %d discovery requests with an explicit jwks_url, want 0", n)
	}
}

func TestRefetchStormBounded(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1")
	reg := prometheus.NewRegistry()
	v := startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{Registerer: reg}, p.issuer)
	before := p.jwksHits.Load()

	forged := make([]string, 200)
	for i := range forged {
		k := *ks["attacker"]
		k.kid = fmt.Sprintf("forged-%d", i)
		forged[i] = mint(t, &k, "RS256", nil, claims(p.issuer, nil))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(forged))
	for i, raw := range forged {
		wg.Go(func() { _, errs[i] = v.Verify(context.Background(), raw) })
	}
	wg.Wait()
	for _, err := range errs {
		wantRefusal(t, err, ReasonUnknownKey, "forged-")
	}
	// All 200 share at most one refetch; the rest are rate-limited.
	if got := p.jwksHits.Load() - before; got > 1 {
		t.Errorf("got %d JWKS fetches for 200 forged kids, want at most 1", got)
	}
	// Whether the storm's requests joined the one fetch or came after it,
	// the next forged kid within the interval is refused without a fetch.
	_, err := v.Verify(context.Background(), forged[0])
	wantRefusal(t, err, ReasonUnknownKey, "rate-limited")
	if got := counterValue(v.metrics.limited.WithLabelValues(p.issuer)); got == 0 {
		t.Errorf("got %v rate-limited refetches, want some", got)
	}
	if got := p.jwksHits.Load() - before; got > 1 {
		t.Errorf("got %d JWKS fetches after the storm, want at most 1", got)
	}
}

func TestRefetchWaitHonoursContext(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1")
	v := startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}}, Options{}, p.issuer)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k := *ks["attacker"]
	k.kid = "new"
	_, err := v.Verify(ctx, mint(t, &k, "RS256", nil, claims(p.issuer, nil)))
	wantRefusal(t, err, ReasonUnknownKey, `"new"`)
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// gathered returns the value of the metric name, as reg exposes it, whose
// label values are exactly labels, given in the order of the label names.
func gathered(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetValue() != labels[i] {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}
