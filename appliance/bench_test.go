package appliance

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2/hpack"

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
				o.AccessLog = NewAccessLogger(io.Discard, nil)
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

// nginxResponse is the head of a response from the bench's upstream.
const nginxResponse = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 16:07:50 GMT\r\n" +
	"Content-Type: application/json\r\nContent-Length: 1024\r\nLast-Modified: Fri, 27 Nov 2026 15:40:27 GMT\r\n" +
	"Connection: keep-alive\r\nETag: \"6748c1fb-400\"\r\nAccept-Ranges: bytes\r\n\r\n"

// BenchmarkH2EncodeFast measures the h2 fast path's HPACK encoding of an
// upstream response head on a connection that sent one before.
func BenchmarkH2EncodeFast(b *testing.B) {
	var resp fasthttp.Response
	if err := resp.Header.Read(bufio.NewReader(strings.NewReader(nginxResponse))); err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	var vals h2Values
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		encodeFast(enc, &resp.Header, "rid-1", 1024, &vals)
	}
}

// BenchmarkFastHeaderEdits measures the HTTP/1.1 fast path's header work on
// a request and its response: hop-by-hop removal, the forwarding headers
// and the request id, and writing both heads.
func BenchmarkFastHeaderEdits(b *testing.B) {
	raw := "GET /json HTTP/1.1\r\nHost: 127.0.0.1:18446\r\nUser-Agent: bench\r\n\r\n"
	var req fasthttp.Request
	var resp fasthttp.Response
	var out []byte
	sr, rr := strings.NewReader(raw), strings.NewReader(nginxResponse)
	br1, br2 := bufio.NewReader(sr), bufio.NewReader(rr)
	b.ReportAllocs()
	for b.Loop() {
		req.Reset()
		sr.Reset(raw)
		br1.Reset(sr)
		if err := req.Header.Read(br1); err != nil {
			b.Fatal(err)
		}
		forwardHeaders(&req.Header, "127.0.0.1", "rid-1")
		out = req.Header.AppendBytes(out[:0])
		resp.Reset()
		rr.Reset(nginxResponse)
		br2.Reset(rr)
		if err := resp.Header.Read(br2); err != nil {
			b.Fatal(err)
		}
		answerHeaders(&resp.Header, "rid-1", false)
		out = resp.Header.AppendBytes(out[:0])
	}
}
