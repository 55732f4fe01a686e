package policy_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/appliance/demoauth"
	"github.com/sealgate/sealgate/appliance/policy"
)

// FuzzPipeline sends arbitrary methods, paths and Authorization headers
// through the demo policy: no panic, only 200/401/403/429, and a 200 only for
// Alice's genuine token on her own record or the echo endpoint.
func FuzzPipeline(f *testing.F) {
	iss, err := demoauth.New(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	cfg := demoauth.Config(iss.JWKSPath())
	cfg.RateLimit.Rate, cfg.RateLimit.Burst = "1000000000/s", 1000000
	p, err := policy.New("demo", cfg, policy.Deps{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(p.Close)
	h := p.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	alice, _ := iss.Token(demoauth.Alice, nil, 24*time.Hour)
	f.Add("GET", "/api/customers/c-1001", "Bearer "+alice)
	f.Add("GET", "/api/customers/c-1002", "Bearer "+alice)
	f.Add("POST", "/api/echo", "Bearer "+alice)
	f.Add("GET", "/api/customers/c-1001/../c-1002", "Bearer "+alice)
	f.Add("GET", "/api/customers/c-1001", "Bearer "+alice+"x")
	f.Add("GET", "/api/customers", "bearer  "+alice)
	f.Add("DELETE", "//api/customers/c-1001", "Basic YTpi")
	f.Fuzz(func(t *testing.T, method, path, auth string) {
		r := &http.Request{
			Method: method, URL: &url.URL{Path: path}, Host: "api.example", Header: http.Header{},
			RemoteAddr: "192.0.2.1:1234", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		}
		r = r.WithContext(t.Context())
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case 200:
			scheme, tok, _ := strings.Cut(auth, " ")
			if !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(tok) != alice {
				t.Fatalf("allowed %s %q with Authorization %q", method, path, auth)
			}
			if path != "/api/customers/c-1001" && path != "/api/echo" {
				t.Fatalf("Alice allowed on %s %q", method, path)
			}
		case 401, 403, 429:
			if strings.Contains(w.Body.String(), alice[:20]) {
				t.Fatal("token echoed in the response")
			}
		default:
			t.Fatalf("status %d for %s %q", w.Code, method, path)
		}
	})
}
