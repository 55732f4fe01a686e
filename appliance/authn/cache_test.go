package authn

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func verifierOf(a *Authenticator) *jwtVerifier { return a.methods[0].(*jwtVerifier) }

// TestTokenCache checks that a remembered token is still subject to its time
// claims and to key rotation, and that the cache is bounded.
func TestTokenCache(t *testing.T) {
	testKeys(t)
	c := newClock()
	srv := newJWKSServer(t, jwksJSON(t, ec256Key))
	a := newJWTAuth(t, c, JWTConfig{
		Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"ES256", "EdDSA"},
		JWKSURL: srv.URL, Refresh: "1h", Leeway: "30s",
	}, srv.Client())
	v := verifierOf(a)
	ctx := context.Background()
	tok := sign(t, ec256Key, jose.ES256, claims(c.Now())) // exp in 5 minutes

	first, err := a.VerifyToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := a.VerifyToken(ctx, tok)
	if err != nil || second != first {
		t.Fatalf("second verification: %v (same identity: %v); want a cache hit", err, second == first)
	}
	if v.cache.len() != 1 {
		t.Fatalf("cache holds %d tokens", v.cache.len())
	}

	t.Run("expiry still applies", func(t *testing.T) {
		c.Advance(5*time.Minute + 31*time.Second)
		defer c.Advance(-(5*time.Minute + 31*time.Second))
		if _, err := a.VerifyToken(ctx, tok); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("cached token after exp: %v", err)
		}
		if v.cache.len() != 0 {
			t.Fatal("expired token left in the cache")
		}
	})

	t.Run("key removed from the JWKS", func(t *testing.T) {
		if _, err := a.VerifyToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		// The issuer retires the EC key and publishes an Ed25519 one; a
		// token naming the new kid makes the verifier refetch.
		srv.set(jwksJSON(t, edKey), false)
		c.Advance(MinRefetchInterval + time.Second)
		if _, err := a.VerifyToken(ctx, sign(t, edKey, jose.EdDSA, claims(c.Now()))); err != nil {
			t.Fatal(err)
		}
		if _, err := a.VerifyToken(ctx, tok); err == nil {
			t.Fatal("token signed by a retired key still accepted from the cache")
		}
	})

	t.Run("unchanged refetch keeps the cache", func(t *testing.T) {
		tok := sign(t, edKey, jose.EdDSA, claims(c.Now()))
		if _, err := a.VerifyToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		gen := v.issuers[testIssuer].keys.generation()
		c.Advance(MinRefetchInterval + time.Second)
		a.VerifyToken(ctx, sign(t, testKey{"ghost", edKey.priv}, jose.EdDSA, claims(c.Now()))) // refetch, same set
		if v.issuers[testIssuer].keys.generation() != gen {
			t.Fatal("an identical key set bumped the generation")
		}
		if _, ok := v.cache.get(sha256.Sum256([]byte(tok))); !ok {
			t.Fatal("cache entry lost on an unchanged refetch")
		}
	})

	t.Run("bounded", func(t *testing.T) {
		for i := range TokenCacheSize + 50 {
			var k [sha256.Size]byte
			k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
			v.cache.put(k, cachedToken{iss: v.only})
		}
		if n := v.cache.len(); n > TokenCacheSize {
			t.Fatalf("cache holds %d entries, bound is %d", n, TokenCacheSize)
		}
	})
}
