package authn

import (
	"log/slog"
	"testing"
	"time"
)

// TestBackgroundRefresh runs a key source with a short interval against a
// loopback TLS server: it keeps fetching on its own, picks up a rotated key
// without any token asking for it, and stops fetching once closed.
func TestBackgroundRefresh(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksJSON(t, ec256Key))
	s, err := JWTConfig{Issuer: testIssuer, Audience: []string{"a"}, Algorithms: []string{"ES256", "EdDSA"}, JWKSURL: srv.URL}.settings()
	if err != nil {
		t.Fatal(err)
	}
	s.refresh = 20 * time.Millisecond
	ks := newKeySource(s, httpsOnly(srv.Client()), time.Now, slog.New(slog.DiscardHandler))
	ks.start()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("the first load", func() bool { return len(ks.lookup(ec256Key.kid, "ES256")) == 1 })
	srv.set(jwksJSON(t, ec256Key, edKey), false)
	waitFor("the rotated key", func() bool { return len(ks.lookup(edKey.kid, "EdDSA")) == 1 })
	srv.set(nil, true)
	waitFor("the outage to show", func() bool { return ks.status().LastError != "" })
	if len(ks.lookup(edKey.kid, "EdDSA")) != 1 {
		t.Fatal("keys dropped during the outage")
	}
	ks.close()
	n := srv.fetches.Load()
	time.Sleep(100 * time.Millisecond)
	if srv.fetches.Load() != n {
		t.Fatal("still fetching after close")
	}
	ks.close() // idempotent
}
