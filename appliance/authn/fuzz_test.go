package authn

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// FuzzVerifyToken feeds arbitrary bearer tokens to the verifier: it must
// never panic, must accept nothing but the one validly signed seed, and its
// error must never repeat the token.
func FuzzVerifyToken(f *testing.F) {
	testKeys(f)
	c := newClock()
	a := newJWTAuth(f, c, JWTConfig{
		Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"ES256", "EdDSA", "RS256"},
		JWKSFile: writeJWKS(f, ec256Key, edKey, rsaKey),
	}, nil)
	valid := sign(f, ec256Key, jose.ES256, claims(c.Now()))
	parts := strings.Split(valid, ".")
	f.Add(valid)
	f.Add(sign(f, edKey, jose.EdDSA, claims(c.Now())))
	f.Add(b64(map[string]string{"alg": "none"}) + "." + parts[1] + ".")
	f.Add(parts[0] + "." + parts[1])
	f.Add(parts[0] + ".." + parts[2])
	f.Add("e30.e30.e30")
	f.Add(`{"payload":"e30","signatures":[]}`)
	f.Add("....")
	accepted := map[string]bool{}
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := a.VerifyToken(context.Background(), tok)
		if err == nil {
			if id == nil || id.Subject == "" {
				t.Fatalf("accepted with identity %+v", id)
			}
			// Only tokens carrying a genuine signature over genuine claims
			// pass; count distinct ones to catch a verifier that accepts
			// mutations (base64 padding variants aside, there are few).
			accepted[tok] = true
			if len(accepted) > 4 {
				t.Fatalf("accepted %d distinct tokens; mutations are passing", len(accepted))
			}
			return
		}
		if !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("error %v does not wrap ErrInvalidCredentials", err)
		}
		if len(tok) >= 16 && strings.Contains(err.Error(), tok) {
			t.Fatal("error repeats the token")
		}
	})
}

// FuzzParseJWKS feeds arbitrary JWKS documents (fetched from the network) to
// the parser: no panics, and whatever it returns is public.
func FuzzParseJWKS(f *testing.F) {
	testKeys(f)
	f.Add(jwksJSON(f, ec256Key, edKey, rsaKey))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseJWKS(b)
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for _, k := range keys {
			if !k.IsPublic() || !k.Valid() {
				t.Fatalf("returned a non-public or invalid key %q", k.KeyID)
			}
		}
	})
}
