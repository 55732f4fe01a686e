package authn

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	testIssuer   = "https://issuer.example"
	testAudience = "customers-api"
)

// clock is a fake time source safe for concurrent use.
type clock = testutil.Clock

func newClock() *clock { return testutil.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)) }

// testKey is a signing key with its kid.
type testKey struct {
	kid  string
	priv crypto.Signer
}

func (k testKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Use: "sig"}
}

var (
	keysOnce sync.Once
	rsaKey   testKey
	ec256Key testKey
	ec384Key testKey
	edKey    testKey
	otherRSA testKey // not in any JWKS
	otherEC  testKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		must := func(k crypto.Signer, err error) crypto.Signer {
			if err != nil {
				panic(err)
			}
			return k
		}
		rsaKey = testKey{"rsa-1", must(rsa.GenerateKey(rand.Reader, 2048))}
		otherRSA = testKey{"rsa-1", must(rsa.GenerateKey(rand.Reader, 2048))}
		ec256Key = testKey{"ec256-1", must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))}
		otherEC = testKey{"ec256-1", must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))}
		ec384Key = testKey{"ec384-1", must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))}
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		edKey = testKey{"ed-1", must(ed, err)}
	})
}

func jwksJSON(t testing.TB, keys ...testKey) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.public())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeJWKS(t testing.TB, keys ...testKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, jwksJSON(t, keys...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// claims returns valid claims at now.
func claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer, "aud": []string{testAudience}, "sub": "c-1001",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"scope": "customers:read customers:list", "roles": []string{"reader"},
	}
}

func sign(t testing.TB, k testKey, alg jose.SignatureAlgorithm, c map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func newJWTAuth(t testing.TB, c *clock, cfg JWTConfig, client *http.Client) *Authenticator {
	t.Helper()
	a, err := New(Config{Methods: []string{"jwt"}, JWT: []JWTConfig{cfg}}, Options{Now: c.Now, HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func allAlgs() []string {
	return []string{"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}
}

func TestVerifyJWT(t *testing.T) {
	testKeys(t)
	c := newClock()
	now := c.Now()
	path := writeJWKS(t, rsaKey, ec256Key, ec384Key, edKey)
	a := newJWTAuth(t, c, JWTConfig{
		Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: allAlgs(),
		JWKSFile: path, Leeway: "30s",
	}, nil)
	modify := func(f func(map[string]any)) map[string]any {
		m := claims(now)
		f(m)
		return m
	}
	rsaPub, _ := x509.MarshalPKIXPublicKey(rsaKey.priv.Public())
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPub})
	hsSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: rsaPEM, KeyID: rsaKey.kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hsToken, err := jwt.Signed(hsSigner).Claims(claims(now)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	valid := sign(t, ec256Key, jose.ES256, claims(now))
	parts := strings.Split(valid, ".")

	tests := []struct {
		name  string
		token string
		want  string // reason in the error; "" means accepted
	}{
		{"RS256", sign(t, rsaKey, jose.RS256, claims(now)), ""},
		{"RS384", sign(t, rsaKey, jose.RS384, claims(now)), ""},
		{"RS512", sign(t, rsaKey, jose.RS512, claims(now)), ""},
		{"PS256", sign(t, rsaKey, jose.PS256, claims(now)), ""},
		{"ES256", valid, ""},
		{"ES384", sign(t, ec384Key, jose.ES384, claims(now)), ""},
		{"EdDSA", sign(t, edKey, jose.EdDSA, claims(now)), ""},
		{"within leeway after exp", sign(t, ec256Key, jose.ES256, modify(func(m map[string]any) { m["exp"] = now.Add(-20 * time.Second).Unix() })), ""},
		{"wrong RSA key same kid", sign(t, otherRSA, jose.RS256, claims(now)), "bad signature"},
		{"wrong EC key same kid", sign(t, otherEC, jose.ES256, claims(now)), "bad signature"},
		{"expired", sign(t, ec256Key, jose.ES256, modify(func(m map[string]any) { m["exp"] = now.Add(-time.Minute).Unix() })), "token expired"},
		{"no exp", sign(t, ec256Key, jose.ES256, modify(func(m map[string]any) { delete(m, "exp") })), "no exp"},
		{"not yet valid", sign(t, ec256Key, jose.ES256, modify(func(m map[string]any) { m["nbf"] = now.Add(time.Minute).Unix() })), "not valid yet"},
		{"issued in the future", sign(t, ec256Key, jose.ES256, modify(func(m map[string]any) { m["iat"] = now.Add(time.Hour).Unix() })), "issued in the future"},
		{"wrong audience", sign(t, ec256Key, jose.ES256, modify(func(m map[string]any) { m["aud"] = "billing-api" })), "wrong audience"},
		{"no audience", sign(t, ec256Key, jose.ES256, modify(func(m map[string]any) { delete(m, "aud") })), "wrong audience"},
		{"wrong issuer", sign(t, ec256Key, jose.ES256, modify(func(m map[string]any) { m["iss"] = "https://evil.example" })), "wrong issuer"},
		{"alg none", b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64(claims(now)) + ".", "algorithm not allowed"},
		{"alg none with signature kept", b64(map[string]string{"alg": "none", "kid": ec256Key.kid}) + "." + parts[1] + "." + parts[2], "algorithm not allowed"},
		{"HS256 keyed with the RSA public key", hsToken, "algorithm not allowed"},
		{"alg swapped to RS256 on an EC signature", b64(map[string]string{"alg": "RS256", "kid": ec256Key.kid}) + "." + parts[1] + "." + parts[2], "bad signature"},
		{"payload tampered", parts[0] + "." + b64(modify(func(m map[string]any) { m["sub"] = "c-1002" })) + "." + parts[2], "bad signature"},
		{"unknown kid", sign(t, testKey{"nope", ec256Key.priv}, jose.ES256, claims(now)), "no key"},
		{"garbage", "not-a-token", "not a compact JWS"},
		{"empty signature", parts[0] + "." + parts[1] + ".", "bad signature"},
		{"oversized", strings.Repeat("a", MaxTokenSize+1), "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := a.VerifyToken(context.Background(), tt.token)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused a valid token: %v", err)
				}
				if id.Subject != "c-1001" || id.Issuer != testIssuer || id.Method != "jwt" {
					t.Fatalf("identity = %+v", id)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want refusal (%s)", tt.want)
			}
			if !errors.Is(err, ErrInvalidCredentials) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want ErrInvalidCredentials with %q", err, tt.want)
			}
			if len(tt.token) > 20 && strings.Contains(err.Error(), tt.token[len(tt.token)-20:]) {
				t.Fatal("error message contains the token")
			}
		})
	}
}

func TestAlgorithmAllowListPerIssuer(t *testing.T) {
	testKeys(t)
	c := newClock()
	a := newJWTAuth(t, c, JWTConfig{
		Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"ES256"},
		JWKSFile: writeJWKS(t, rsaKey, ec256Key),
	}, nil)
	if _, err := a.VerifyToken(context.Background(), sign(t, ec256Key, jose.ES256, claims(c.Now()))); err != nil {
		t.Fatalf("ES256: %v", err)
	}
	_, err := a.VerifyToken(context.Background(), sign(t, rsaKey, jose.RS256, claims(c.Now())))
	if !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("RS256 on an ES256-only issuer: %v, want refusal", err)
	}
}

func TestMultipleIssuers(t *testing.T) {
	testKeys(t)
	c := newClock()
	a, err := New(Config{Methods: []string{"jwt"}, JWT: []JWTConfig{
		{Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"ES256"}, JWKSFile: writeJWKS(t, ec256Key)},
		{Issuer: "https://partner.example", Audience: []string{testAudience}, Algorithms: []string{"EdDSA"}, JWKSFile: writeJWKS(t, edKey)},
	}}, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	partner := claims(c.Now())
	partner["iss"] = "https://partner.example"
	if id, err := a.VerifyToken(context.Background(), sign(t, edKey, jose.EdDSA, partner)); err != nil || id.Issuer != "https://partner.example" {
		t.Fatalf("partner token: %+v, %v", id, err)
	}
	// The partner may not sign for the first issuer, even with a valid key.
	if _, err := a.VerifyToken(context.Background(), sign(t, edKey, jose.EdDSA, claims(c.Now()))); err == nil {
		t.Fatal("token claiming issuer A accepted with issuer B's key")
	}
	partner["iss"] = "https://stranger.example"
	if _, err := a.VerifyToken(context.Background(), sign(t, edKey, jose.EdDSA, partner)); err == nil || !strings.Contains(err.Error(), "untrusted issuer") {
		t.Fatalf("unknown issuer: %v", err)
	}
}

func TestIdentityClaims(t *testing.T) {
	testKeys(t)
	c := newClock()
	a := newJWTAuth(t, c, JWTConfig{
		Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"ES256"},
		JWKSFile: writeJWKS(t, ec256Key), RolesClaim: "realm_access.roles", ScopesClaim: "scp",
	}, nil)
	m := claims(c.Now())
	m["realm_access"] = map[string]any{"roles": []string{"admin", "auditor"}}
	m["scp"] = []string{"a:read", "b:write"}
	tok := sign(t, ec256Key, jose.ES256, m)
	id, err := a.VerifyToken(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(id.Roles, ",") != "admin,auditor" || strings.Join(id.Scopes, ",") != "a:read,b:write" {
		t.Fatalf("roles %v scopes %v", id.Roles, id.Scopes)
	}
	if got := ClaimValues(id, "sub"); len(got) != 1 || got[0] != "c-1001" {
		t.Fatalf("ClaimValues(sub) = %v", got)
	}
	b, _ := json.Marshal(id)
	if strings.Contains(string(b), tok) || strings.Contains(string(b), strings.Split(tok, ".")[2]) {
		t.Fatal("identity carries the token")
	}
}

// jwksServer is a loopback TLS JWKS endpoint counting fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	down    bool
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.down {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body []byte, down bool) {
	s.mu.Lock()
	s.body, s.down = body, down
	s.mu.Unlock()
}

func TestJWKSURLUnknownKidAndOutage(t *testing.T) {
	testKeys(t)
	c := newClock()
	srv := newJWKSServer(t, jwksJSON(t, ec256Key))
	a := newJWTAuth(t, c, JWTConfig{
		Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"ES256", "EdDSA"},
		JWKSURL: srv.URL + "/jwks.json", Refresh: "1h",
	}, srv.Client())
	ctx := context.Background()
	verify := func(k testKey, alg jose.SignatureAlgorithm) error {
		_, err := a.VerifyToken(ctx, sign(t, k, alg, claims(c.Now())))
		return err
	}
	wantFetches := func(step string, n int32) {
		t.Helper()
		if got := srv.fetches.Load(); got != n {
			t.Fatalf("%s: %d JWKS fetches, want %d", step, got, n)
		}
	}

	if err := verify(ec256Key, jose.ES256); err != nil {
		t.Fatalf("first token: %v", err)
	}
	wantFetches("initial load", 1)

	// The issuer rotates in a new key. A token naming it right away is
	// refused without a fetch: the last attempt is too recent.
	srv.set(jwksJSON(t, ec256Key, edKey), false)
	if err := verify(edKey, jose.EdDSA); err == nil {
		t.Fatal("new kid accepted before any refetch")
	}
	wantFetches("unknown kid within the refetch interval", 1)

	c.Advance(MinRefetchInterval + time.Second)
	if err := verify(edKey, jose.EdDSA); err != nil {
		t.Fatalf("new kid after the interval: %v", err)
	}
	wantFetches("unknown kid", 2)
	for range 5 {
		if err := verify(edKey, jose.EdDSA); err != nil {
			t.Fatal(err)
		}
	}
	wantFetches("known kid, cached", 2)
	for range 5 {
		verify(testKey{"ghost", edKey.priv}, jose.EdDSA)
	}
	wantFetches("a burst of unknown kids", 2)

	// The endpoint goes down: the last good keys keep working and status
	// shows the error.
	srv.set(nil, true)
	c.Advance(MinRefetchInterval + time.Second)
	if err := verify(testKey{"ghost", edKey.priv}, jose.EdDSA); err == nil {
		t.Fatal("unknown kid accepted during outage")
	}
	wantFetches("unknown kid during outage", 3)
	if err := verify(ec256Key, jose.ES256); err != nil {
		t.Fatalf("known key during outage: %v", err)
	}
	st := a.Status()
	if len(st) != 1 || st[0].Keys != 2 || st[0].Kind != "url" || !strings.Contains(st[0].LastError, "503") ||
		st[0].Fetches != 3 || st[0].LastSuccess.IsZero() || !st[0].LastFetch.After(st[0].LastSuccess) {
		t.Fatalf("status during outage: %+v", st)
	}

	// Back up: the next refetch clears the error.
	srv.set(jwksJSON(t, ec256Key, edKey), false)
	c.Advance(MinRefetchInterval + time.Second)
	verify(testKey{"ghost", edKey.priv}, jose.EdDSA)
	if st := a.Status(); st[0].LastError != "" {
		t.Fatalf("error not cleared after recovery: %+v", st[0])
	}
}

func TestJWKSDownAtStart(t *testing.T) {
	testKeys(t)
	c := newClock()
	srv := newJWKSServer(t, nil)
	srv.set(nil, true)
	a := newJWTAuth(t, c, JWTConfig{
		Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"ES256"},
		JWKSURL: srv.URL, Refresh: "1h",
	}, srv.Client())
	if _, err := a.VerifyToken(context.Background(), sign(t, ec256Key, jose.ES256, claims(c.Now()))); err == nil {
		t.Fatal("token accepted with no keys")
	}
	if st := a.Status(); st[0].Keys != 0 || st[0].LastError == "" {
		t.Fatalf("status: %+v", st[0])
	}
}

func TestJWKSRefusesPlainHTTPRedirect(t *testing.T) {
	testKeys(t)
	c := newClock()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(jwksJSON(t, ec256Key)) }))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.RedirectHandler(plain.URL, http.StatusFound))
	defer tlsSrv.Close()
	a := newJWTAuth(t, c, JWTConfig{
		Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"ES256"}, JWKSURL: tlsSrv.URL,
	}, tlsSrv.Client())
	if _, err := a.VerifyToken(context.Background(), sign(t, ec256Key, jose.ES256, claims(c.Now()))); err == nil {
		t.Fatal("keys fetched over a redirect to plain http were trusted")
	}
	if st := a.Status(); !strings.Contains(st[0].LastError, "redirect") {
		t.Fatalf("status: %+v", st[0])
	}
}

func TestParseJWKSFixtures(t *testing.T) {
	tests := []struct {
		file string
		keys int
		err  string
	}{
		{"mixed.json", 2, ""},
		{"only_hmac.json", 0, "no usable"},
		{"not_json.json", 0, "not a JWKS"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			keys, err := ParseJWKS(b)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || len(keys) != tt.keys {
				t.Fatalf("%d keys, %v; want %d", len(keys), err, tt.keys)
			}
			for _, k := range keys {
				if !k.IsPublic() {
					t.Fatalf("key %s is not public", k.KeyID)
				}
			}
		})
	}
}

// BenchmarkVerify measures token verification with the issuer's key
// cached: "signature" verifies every time (a token seen for the first time),
// "cached-token" is a client presenting the same token again.
func BenchmarkVerify(b *testing.B) {
	testKeys(b)
	for _, bc := range []struct {
		alg jose.SignatureAlgorithm
		key testKey
	}{{jose.ES256, ec256Key}, {jose.RS256, rsaKey}, {jose.EdDSA, edKey}} {
		c := newClock()
		a := newJWTAuth(b, c, JWTConfig{
			Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{string(bc.alg)},
			JWKSFile: writeJWKS(b, bc.key),
		}, nil)
		tok := sign(b, bc.key, bc.alg, claims(c.Now()))
		digest := sha256.Sum256([]byte(tok))
		v := verifierOf(a)
		ctx := context.Background()
		b.Run(string(bc.alg)+"/signature", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v.cache.drop(digest)
				if _, err := a.VerifyToken(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(bc.alg)+"/cached-token", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.VerifyToken(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
