package authn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/sealgate/sealgate/appliance/reqctx"
)

func TestConfigValidate(t *testing.T) {
	goodJWT := JWTConfig{Issuer: testIssuer, Audience: []string{"a"}, Algorithms: []string{"ES256"}, JWKSFile: "/x"}
	hash := HashAPIKey("k")
	with := func(f func(*JWTConfig)) []JWTConfig { j := goodJWT; f(&j); return []JWTConfig{j} }
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"jwt", Config{Methods: []string{"jwt"}, JWT: []JWTConfig{goodJWT}}, ""},
		{"none", Config{Methods: []string{"none"}}, ""},
		{"apikey", Config{Methods: []string{"apikey"}, APIKey: &APIKeyConfig{Keys: []APIKey{{Name: "a", SHA256: hash}}}}, ""},
		{"mtls", Config{Methods: []string{"mtls"}, ForwardHeaders: ForwardHeaders{Subject: "X-Auth-Subject"}}, ""},
		{"unknown method", Config{Methods: []string{"basic"}}, `auth.methods[0]: "basic" is not one of`},
		{"none mixed", Config{Methods: []string{"jwt", "none"}, JWT: []JWTConfig{goodJWT}}, `auth.methods[1]: "none" cannot be combined`},
		{"duplicate method", Config{Methods: []string{"mtls", "mtls"}}, "auth.methods[1]: \"mtls\" is listed twice"},
		{"jwt without issuer table", Config{Methods: []string{"jwt"}}, "auth.jwt: methods lists jwt"},
		{"issuer table without method", Config{Methods: []string{"mtls"}, JWT: []JWTConfig{goodJWT}}, "auth.jwt: issuers configured"},
		{"no methods", Config{JWT: []JWTConfig{goodJWT}}, "auth.methods: missing"},
		{"issuer not https", Config{Methods: []string{"jwt"}, JWT: with(func(j *JWTConfig) { j.Issuer = "http://issuer" })}, "auth.jwt[0].issuer: \"http://issuer\" must be an https URL"},
		{"no audience", Config{Methods: []string{"jwt"}, JWT: with(func(j *JWTConfig) { j.Audience = nil })}, "auth.jwt[0].audience: missing"},
		{"HS256 refused", Config{Methods: []string{"jwt"}, JWT: with(func(j *JWTConfig) { j.Algorithms = []string{"ES256", "HS256"} })}, "auth.jwt[0].algorithms[1]: \"HS256\" is refused"},
		{"none refused", Config{Methods: []string{"jwt"}, JWT: with(func(j *JWTConfig) { j.Algorithms = []string{"none"} })}, "auth.jwt[0].algorithms[0]: \"none\" is refused"},
		{"unknown alg", Config{Methods: []string{"jwt"}, JWT: with(func(j *JWTConfig) { j.Algorithms = []string{"ES257"} })}, "auth.jwt[0].algorithms[0]: \"ES257\" is not one of"},
		{"no jwks", Config{Methods: []string{"jwt"}, JWT: with(func(j *JWTConfig) { j.JWKSFile = "" })}, "auth.jwt[0].jwks_file: set jwks_file or jwks_url"},
		{"both jwks", Config{Methods: []string{"jwt"}, JWT: with(func(j *JWTConfig) { j.JWKSURL = "https://x/jwks" })}, "auth.jwt[0].jwks_url: set only one"},
		{"jwks over http", Config{Methods: []string{"jwt"}, JWT: with(func(j *JWTConfig) { j.JWKSFile, j.JWKSURL = "", "http://idp/jwks" })}, "auth.jwt[0].jwks_url: \"http://idp/jwks\" must be an https URL"},
		{"bad refresh", Config{Methods: []string{"jwt"}, JWT: with(func(j *JWTConfig) { j.Refresh = "5s" })}, "auth.jwt[0].refresh:"},
		{"bad leeway", Config{Methods: []string{"jwt"}, JWT: with(func(j *JWTConfig) { j.Leeway = "1h" })}, "auth.jwt[0].leeway:"},
		{"duplicate issuer", Config{Methods: []string{"jwt"}, JWT: []JWTConfig{goodJWT, goodJWT}}, "auth.jwt[1].issuer: \"https://issuer.example\" is already configured in auth.jwt[0]"},
		{"short hash", Config{Methods: []string{"apikey"}, APIKey: &APIKeyConfig{Keys: []APIKey{{Name: "a", SHA256: "abc"}}}}, "auth.apikey.keys[0].sha256: must be 64 hex digits"},
		{"non-hex hash", Config{Methods: []string{"apikey"}, APIKey: &APIKeyConfig{Keys: []APIKey{{Name: "a", SHA256: strings.Repeat("zz", 32)}}}}, "auth.apikey.keys[0].sha256: must be 64 hex digits"},
		{"duplicate key name", Config{Methods: []string{"apikey"}, APIKey: &APIKeyConfig{Keys: []APIKey{{Name: "a", SHA256: hash}, {Name: "a", SHA256: HashAPIKey("j")}}}}, "auth.apikey.keys[1].name: \"a\" is already used"},
		{"duplicate key hash", Config{Methods: []string{"apikey"}, APIKey: &APIKeyConfig{Keys: []APIKey{{Name: "a", SHA256: hash}, {Name: "b", SHA256: strings.ToUpper(hash)}}}}, "auth.apikey.keys[1].sha256: same key as keys[0]"},
		{"no keys", Config{Methods: []string{"apikey"}, APIKey: &APIKeyConfig{}}, "auth.apikey.keys: no keys"},
		{"reserved key header", Config{Methods: []string{"apikey"}, APIKey: &APIKeyConfig{Header: "Authorization", Keys: []APIKey{{Name: "a", SHA256: hash}}}}, "auth.apikey.header:"},
		{"reserved forward header", Config{Methods: []string{"mtls"}, ForwardHeaders: ForwardHeaders{Subject: "Host"}}, "auth.forward_headers.subject: \"Host\" is reserved"},
		{"bad forward header", Config{Methods: []string{"mtls"}, ForwardHeaders: ForwardHeaders{Roles: "X Roles"}}, "auth.forward_headers.roles:"},
		{"same forward header twice", Config{Methods: []string{"mtls"}, ForwardHeaders: ForwardHeaders{Subject: "X-Who", Roles: "x-who"}}, "auth.forward_headers.roles: \"x-who\" is already used for subject"},
		{"forward without auth", Config{Methods: []string{"none"}, ForwardHeaders: ForwardHeaders{Subject: "X-Who"}}, "auth.forward_headers: set but"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate: %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestNewReportsMissingJWKSFile(t *testing.T) {
	_, err := New(Config{Methods: []string{"jwt"}, JWT: []JWTConfig{{
		Issuer: testIssuer, Audience: []string{"a"}, Algorithms: []string{"ES256"}, JWKSFile: "/nonexistent/jwks.json",
	}}}, Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "auth.jwt[0].jwks_file: ") || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("New: %v", err)
	}
}

func TestHashAPIKey(t *testing.T) {
	// sha256("secret") from coreutils: printf secret | sha256sum
	if got := HashAPIKey("secret"); got != "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b" {
		t.Fatalf("HashAPIKey = %s", got)
	}
	k1, h1 := NewAPIKey()
	k2, _ := NewAPIKey()
	if k1 == k2 || !strings.HasPrefix(k1, "sg_") || len(k1) != 46 || HashAPIKey(k1) != h1 || ValidateHash(h1) != nil {
		t.Fatalf("NewAPIKey: %q %q", k1, h1)
	}
}

// testCA makes a CA and a client certificate it signed.
func testCA(t *testing.T) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	cliKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://example.org/billing")
	cliTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "billing-batch", OrganizationalUnit: []string{"finance"}},
		DNSNames:     []string{"billing.internal"}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	cliDER, err := x509.CreateCertificate(rand.Reader, cliTmpl, ca, cliKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
}

// TestAuthenticateOverTLS runs the methods in order behind a real TLS
// listener that verifies client certificates if given.
func TestAuthenticateOverTLS(t *testing.T) {
	testKeys(t)
	c := newClock()
	const apiKey = "sg_correct-horse-battery-staple"
	a, err := New(Config{
		Methods:        []string{"jwt", "apikey", "mtls"},
		ForwardHeaders: ForwardHeaders{Subject: "X-Auth-Subject", Roles: "X-Auth-Roles", Method: "X-Auth-Method"},
		JWT: []JWTConfig{{Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"ES256"},
			JWKSFile: writeJWKS(t, ec256Key)}},
		APIKey: &APIKeyConfig{Header: "X-API-Key", Query: "api_key", Keys: []APIKey{
			{Name: "billing-batch", SHA256: HashAPIKey(apiKey), Roles: []string{"reader", "exporter"}},
		}},
	}, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	type seen struct {
		id      *reqctx.Identity
		err     error
		headers http.Header
		uri     string
	}
	results := make(chan seen, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := a.Authenticate(r)
		if err == nil {
			a.Forward(r, id)
		}
		results <- seen{id, err, r.Header.Clone(), r.URL.RequestURI()}
	}))
	pool, clientCert := testCA(t)
	srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	srv.StartTLS()
	defer srv.Close()
	base := srv.Client().Transport.(*http.Transport)
	plainTr, certTr := base.Clone(), base.Clone()
	certTr.TLSClientConfig.Certificates = []tls.Certificate{clientCert}
	plain, withCert := &http.Client{Transport: plainTr}, &http.Client{Transport: certTr}
	defer plainTr.CloseIdleConnections()
	defer certTr.CloseIdleConnections()

	token := sign(t, ec256Key, jose.ES256, claims(c.Now()))
	tests := []struct {
		name       string
		client     *http.Client
		path       string
		header     map[string]string
		wantErr    error
		wantMethod string
		wantSub    string
		check      func(t *testing.T, s seen)
	}{
		{name: "nothing", client: plain, path: "/", wantErr: ErrNoCredentials},
		{name: "jwt", client: plain, path: "/", header: map[string]string{"Authorization": "Bearer " + token},
			wantMethod: "jwt", wantSub: "c-1001"},
		{name: "jwt lowercase scheme", client: plain, path: "/", header: map[string]string{"Authorization": "bearer " + token},
			wantMethod: "jwt", wantSub: "c-1001"},
		{name: "bad jwt stops the chain even with a client cert", client: withCert, path: "/",
			header: map[string]string{"Authorization": "Bearer " + token[:len(token)-4] + "AAAA"}, wantErr: ErrInvalidCredentials},
		{name: "basic auth is not a bearer token", client: plain, path: "/", header: map[string]string{"Authorization": "Basic dTpw"}, wantErr: ErrNoCredentials},
		{name: "api key header", client: plain, path: "/", header: map[string]string{"X-API-Key": apiKey},
			wantMethod: "apikey", wantSub: "billing-batch", check: func(t *testing.T, s seen) {
				if s.headers.Get("X-API-Key") != "" {
					t.Error("API key header forwarded upstream")
				}
				if s.headers.Get("X-Auth-Roles") != "reader,exporter" || s.id.KeyName != "billing-batch" {
					t.Errorf("roles header %q, key name %q", s.headers.Get("X-Auth-Roles"), s.id.KeyName)
				}
			}},
		{name: "api key query", client: plain, path: "/export?day=1&api_key=" + url.QueryEscape(apiKey),
			wantMethod: "apikey", wantSub: "billing-batch", check: func(t *testing.T, s seen) {
				if strings.Contains(s.uri, "api_key") || s.uri != "/export?day=1" {
					t.Errorf("request URI after auth: %q, want the key removed", s.uri)
				}
			}},
		{name: "wrong api key", client: plain, path: "/", header: map[string]string{"X-API-Key": apiKey + "x"}, wantErr: ErrInvalidCredentials},
		{name: "client certificate", client: withCert, path: "/", wantMethod: "mtls", wantSub: "CN=billing-batch,OU=finance",
			check: func(t *testing.T, s seen) {
				sans, _ := json.Marshal(s.id.Claims["sans"])
				if string(sans) != `["billing.internal","spiffe://example.org/billing"]` {
					t.Errorf("sans = %s", sans)
				}
				if s.headers.Get("X-Auth-Method") != "mtls" {
					t.Errorf("X-Auth-Method = %q", s.headers.Get("X-Auth-Method"))
				}
			}},
		{name: "client-sent identity headers stripped", client: plain, path: "/",
			header:     map[string]string{"X-Auth-Subject": "admin", "X-Auth-Roles": "admin", "X-API-Key": apiKey},
			wantMethod: "apikey", wantSub: "billing-batch", check: func(t *testing.T, s seen) {
				if got := s.headers.Values("X-Auth-Subject"); len(got) != 1 || got[0] != "billing-batch" {
					t.Errorf("X-Auth-Subject = %q", got)
				}
			}},
		{name: "client-sent identity headers stripped on failure", client: plain, path: "/",
			header: map[string]string{"X-Auth-Subject": "admin"}, wantErr: ErrNoCredentials,
			check: func(t *testing.T, s seen) {
				if s.headers.Get("X-Auth-Subject") != "" {
					t.Error("client-sent X-Auth-Subject survived")
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := tt.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			s := <-results
			if tt.wantErr != nil {
				if !errors.Is(s.err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", s.err, tt.wantErr)
				}
			} else {
				if s.err != nil {
					t.Fatalf("err = %v", s.err)
				}
				if s.id.Method != tt.wantMethod || s.id.Subject != tt.wantSub {
					t.Fatalf("identity %s/%q, want %s/%q", s.id.Method, s.id.Subject, tt.wantMethod, tt.wantSub)
				}
				if tt.wantSub != "" && s.headers.Get("X-Auth-Subject") != tt.wantSub {
					t.Fatalf("X-Auth-Subject = %q", s.headers.Get("X-Auth-Subject"))
				}
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func TestMTLSRequiresVerifiedChain(t *testing.T) {
	_, cert := testCA(t)
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	r := httptest.NewRequest("GET", "/", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}} // presented, not verified
	a, err := New(Config{Methods: []string{"mtls"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(r); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("unverified certificate: %v, want ErrNoCredentials", err)
	}
}

func TestChallenge(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		invalid bool
		want    string
	}{
		{"jwt missing", Config{Methods: []string{"jwt"}}, false, `Bearer realm="sealgate"`},
		{"jwt invalid", Config{Methods: []string{"jwt"}}, true, `Bearer realm="sealgate", error="invalid_token"`},
		{"jwt and apikey", Config{Methods: []string{"jwt", "apikey"}}, true, `Bearer realm="sealgate", error="invalid_token", ApiKey realm="sealgate"`},
		{"mtls", Config{Methods: []string{"mtls"}}, false, `Certificate realm="sealgate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Authenticator{}
			for _, m := range tt.cfg.Methods {
				switch m {
				case "jwt":
					a.schemes = append(a.schemes, "Bearer")
				case "apikey":
					a.schemes = append(a.schemes, "ApiKey")
				}
			}
			if got := a.Challenge(tt.invalid); got != tt.want {
				t.Fatalf("Challenge = %s, want %s", got, tt.want)
			}
		})
	}
}
