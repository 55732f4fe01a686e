package appliance

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/appliance/demoapi"
	"github.com/sealgate/sealgate/appliance/dlp"
	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/internal/testpki"
)

var smallJSON = `{"id":"c-1001","name":"Ada Lovelace","plan":"team","items":[` + strings.TrimSuffix(strings.Repeat(`{"sku":"A-1","qty":1,"price":"9.99"},`, 24), ",") + `]}`

// BenchmarkProxy measures one small JSON API call through TLS and the
// engine's proxy path to a loopback upstream, over keep-alive connections.
func BenchmarkProxy(b *testing.B) {
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(smallJSON)))
		io.WriteString(w, smallJSON)
	})
	for _, proto := range []struct {
		name string
		h2   bool
	}{{"TLS+h1", false}, {"TLS+h2", true}} {
		b.Run(proto.name, func(b *testing.B) {
			f := newFixture(b, up, nil)
			c := f.client(proto.h2)
			url := f.url("/api/customers")
			b.ReportAllocs()
			b.SetBytes(int64(len(smallJSON)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// BenchmarkEntry measures the engine's own per-request work — request id,
// request context, routing, metrics, status accounting and the access log —
// with a route stage that answers at once, so neither TLS nor the upstream
// is in the figure.
func BenchmarkEntry(b *testing.B) {
	body := []byte(smallJSON)
	answer := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = []string{"application/json"}
			w.Write(body)
		})
	}
	for _, tt := range []struct {
		name   string
		access bool
	}{{"log=off", false}, {"log=on", true}} {
		b.Run(tt.name, func(b *testing.B) {
			o := Options{Metrics: metrics.New()}
			if tt.access {
				o.AccessLog = slog.New(slog.NewJSONHandler(io.Discard, nil))
			}
			e := New(o)
			ca := testpki.NewCA(b, "bench")
			cert, key := ca.Leaf(b, "localhost", "localhost")
			err := e.Apply(Spec{
				Listeners: []ListenerSpec{{Name: "api", TLS: TLSSpec{Certs: []CertFiles{{Cert: cert, Key: key}}}}},
				Routes: []RouteSpec{{Name: "customers", Listener: "api", Match: "/", Upstream: "http://127.0.0.1:9",
					Stages: []func(http.Handler) http.Handler{answer}}},
				AccessLog: tt.access,
			})
			if err != nil {
				b.Fatal(err)
			}
			h := e.entry("api")
			req := httptest.NewRequest("GET", "https://localhost/api/customers", nil)
			req.RemoteAddr = "192.0.2.1:43210"
			req.TLS.Version, req.TLS.CipherSuite, req.TLS.NegotiatedProtocol = tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, "http/1.1"
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing but its header map.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkProxyDLP compares the same proxied call with response DLP off and
// on (all detectors, redact) in one run, on the demo API's customer list
// (about 4 KiB of JSON with cards, national ids, e-mails and phones).
func BenchmarkProxyDLP(b *testing.B) {
	up := demoapi.Handler()
	for _, tc := range []struct {
		name string
		cfg  dlp.Config
	}{{"off", dlp.Config{}}, {"redact", dlp.Config{Action: "redact"}}} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := dlp.New("r", tc.cfg, dlp.Deps{})
			if err != nil {
				b.Fatal(err)
			}
			f := newFixture(b, up, func(s *Spec, _ *testpki.CA) { s.Routes[0].Stages = []func(http.Handler) http.Handler{p.Wrap} })
			c := f.client(false)
			url := f.url("/api/customers")
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
