package appliance

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/appliance/blocker"
	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/internal/testpki"
)

type fixture struct {
	e        *Engine
	m        *metrics.Metrics
	addr     string
	ca       *testpki.CA
	upstream *httptest.Server
	hits     atomic.Int64
	lastReq  atomic.Pointer[http.Request]
	spec     Spec
}

// newFixture starts an upstream and an engine with one listener "api" and
// one route "r" to that upstream; mod may change the spec first.
func newFixture(t testing.TB, upstream http.Handler, mod func(*Spec, *testpki.CA)) *fixture {
	t.Helper()
	return newFixtureOpts(t, upstream, mod, Options{})
}

// newFixtureOpts is newFixture with engine options (metrics are always
// real, in f.m).
func newFixtureOpts(t testing.TB, upstream http.Handler, mod func(*Spec, *testpki.CA), o Options) *fixture {
	t.Helper()
	f := &fixture{ca: testpki.NewCA(t, "test")}
	if upstream == nil {
		upstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
		})
	}
	f.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		f.lastReq.Store(r.Clone(context.Background()))
		upstream.ServeHTTP(w, r)
	}))
	t.Cleanup(f.upstream.Close)
	cert, key := f.ca.Leaf(t, "localhost", "localhost", "127.0.0.1")
	f.spec = Spec{
		Listeners: []ListenerSpec{{Name: "api", TLS: TLSSpec{Certs: []CertFiles{{cert, key}}}}},
		Routes:    []RouteSpec{{Name: "r", Listener: "api", Match: "/", Upstream: f.upstream.URL, Seal: SealOptional}},
	}
	if mod != nil {
		mod(&f.spec, f.ca)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	f.m = o.Metrics
	f.e = New(o)
	if err := f.e.Apply(f.spec); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	if err := f.e.Serve("api", ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.e.Shutdown(ctx)
	})
	return f
}

func (f *fixture) client(h2 bool) *http.Client {
	tc := &tls.Config{RootCAs: f.ca.Pool, ServerName: "localhost"}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: h2}
	if !h2 {
		tc.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (f *fixture) url(path string) string { return "https://" + f.addr + path }

func TestProtocolsThroughEngine(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, tt := range []struct {
		name  string
		h2    bool
		proto string
		alpn  string
	}{{"HTTP/1.1", false, "HTTP/1.1", "http/1.1"}, {"h2", true, "HTTP/2.0", "h2"}} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", f.url("/api/customers?secret=1"), nil)
			if !tt.h2 { // h2 has no Connection header
				req.Header.Set("Connection", "X-Hop")
				req.Header.Set("X-Hop", "must-not-pass")
			}
			resp, err := f.client(tt.h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Proto != tt.proto || resp.TLS.NegotiatedProtocol != tt.alpn {
				t.Fatalf("got %d %s alpn %q, want 200 %s %s", resp.StatusCode, resp.Proto, resp.TLS.NegotiatedProtocol, tt.proto, tt.alpn)
			}
			if string(body) != `{"path":"/api/customers"}` {
				t.Fatalf("body %q", body)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id on the response")
			}
			up := f.lastReq.Load()
			if up.Header.Get("X-Forwarded-For") != "127.0.0.1" || up.Header.Get("X-Forwarded-Proto") != "https" {
				t.Errorf("forwarded headers: XFF %q proto %q", up.Header.Get("X-Forwarded-For"), up.Header.Get("X-Forwarded-Proto"))
			}
			if up.Header.Get("X-Request-Id") != resp.Header.Get("X-Request-Id") {
				t.Errorf("upstream request id %q, client saw %q", up.Header.Get("X-Request-Id"), resp.Header.Get("X-Request-Id"))
			}
			if up.Header.Get("X-Hop") != "" {
				t.Error("hop-by-hop header named in Connection reached the upstream")
			}
			if up.Host != "localhost" && !strings.HasPrefix(up.Host, "127.0.0.1") {
				t.Errorf("upstream saw Host %q", up.Host)
			}
		})
	}
}

func TestSNIPicksCertificate(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, ca *testpki.CA) {
		a, ak := ca.Leaf(t, "a.example", "a.example")
		b, bk := ca.Leaf(t, "b.example", "b.example")
		s.Listeners[0].TLS.Certs = []CertFiles{{a, ak}, {b, bk}}
	})
	for _, tt := range []struct{ sni, want string }{{"a.example", "a.example"}, {"b.example", "b.example"}, {"other.example", "a.example"}} {
		t.Run(tt.sni, func(t *testing.T) {
			c, err := tls.Dial("tcp", f.addr, &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != tt.want {
				t.Fatalf("SNI %s got certificate %s, want %s", tt.sni, got, tt.want)
			}
		})
	}
}

func TestOldTLSRefused(t *testing.T) {
	f := newFixture(t, nil, nil)
	_, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.Pool, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2 refused: %v", err)
	}
	c.Close()
}

func TestMinVersion13(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) { s.Listeners[0].TLS.MinVersion = tls.VersionTLS13 })
	if c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12}); err == nil {
		c.Close()
		t.Fatal("TLS 1.2 accepted on a 1.3-only listener")
	}
}

func TestCurlEndToEnd(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("SEALGATE_PRIVILEGED_TESTS") == "1" {
			t.Fatal("curl not installed (CI installs it)")
		}
		t.Skip("curl not installed")
	}
	f := newFixture(t, nil, nil)
	_, port, _ := net.SplitHostPort(f.addr)
	for _, proto := range []string{"--http1.1", "--http2"} {
		out, err := exec.Command(curl, "-sS", proto, "--cacert", f.ca.CertPEM, "--resolve", "localhost:"+port+":127.0.0.1",
			"-w", "\n%{http_code} %{http_version}", "https://localhost:"+port+"/hello").CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v: %s", proto, err, out)
		}
		want := map[string]string{"--http1.1": "200 1.1", "--http2": "200 2"}[proto]
		if !strings.HasSuffix(string(out), want) || !strings.Contains(string(out), `"/hello"`) {
			t.Fatalf("curl %s output %q, want body and %q", proto, out, want)
		}
	}
}

func decodeProblem(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	var p map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBodyLimit(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) { s.Routes[0].MaxBody = 1024 })
	for _, tt := range []struct {
		name    string
		h2      bool
		chunked bool
	}{{"declared length h1", false, false}, {"chunked h1", false, true}, {"h2 without length", true, true}} {
		t.Run(tt.name, func(t *testing.T) {
			before := f.hits.Load()
			var body io.Reader = strings.NewReader(strings.Repeat("x", 4096))
			if tt.chunked {
				body = io.MultiReader(strings.NewReader(strings.Repeat("x", 2048)), strings.NewReader(strings.Repeat("y", 2048)))
			}
			req, _ := http.NewRequest("POST", f.url("/upload"), body)
			if tt.chunked {
				req.ContentLength = -1
			}
			resp, err := f.client(tt.h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want 413: %s", resp.StatusCode, b)
			}
			decodeProblem(t, resp)
			if f.hits.Load() != before {
				t.Fatal("the upstream was contacted for an oversized body")
			}
		})
	}
	// Just under the limit passes, body intact.
	resp, err := f.client(false).Post(f.url("/upload"), "text/plain", strings.NewReader(strings.Repeat("z", 1024)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("body at the limit: status %d", resp.StatusCode)
	}
}

func TestUpstreamFailures(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	t.Run("dead upstream 502", func(t *testing.T) {
		f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) { s.Routes[0].Upstream = deadURL })
		start := time.Now()
		resp, err := f.client(false).Get(f.url("/x"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("502 took %s: refused connections must fail fast", d)
		}
		p := decodeProblem(t, resp)
		if s := fmt.Sprint(p); strings.Contains(s, "127.0.0.1") || strings.Contains(s, "dial") {
			t.Errorf("problem leaks internals: %s", s)
		}
	})
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("slow upstream 504 h2=%v", h2), func(t *testing.T) {
			f := newFixture(t, slow, func(s *Spec, _ *testpki.CA) { s.Routes[0].UpstreamTimeout = 200 * time.Millisecond })
			start := time.Now()
			resp, err := f.client(h2).Get(f.url("/x"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("status %d, want 504", resp.StatusCode)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("504 after %s; the upstream timeout is 200ms", d)
			}
			decodeProblem(t, resp)
		})
	}
}

func TestSlowHeaderClientCutOff(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) { s.Limits.ReadHeaderTimeout = 300 * time.Millisecond })
	c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.Pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("server kept a slow-header client open for 5s")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("cut off after %s", d)
	}
	if f.hits.Load() != 0 {
		t.Fatal("incomplete request reached the upstream")
	}
}

func TestHeaderTooLarge(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) { s.Limits.MaxHeaderBytes = 4096 })
	req, _ := http.NewRequest("GET", f.url("/x"), nil)
	req.Header.Set("X-Big", strings.Repeat("a", 16<<10))
	resp, err := f.client(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}

func TestWebSocketPassthrough(t *testing.T) {
	ws := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo:" + line)
		brw.Flush()
	})
	f := newFixture(t, ws, nil)
	c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.Pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	io.WriteString(c, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo:ping\n" {
		t.Fatalf("tunnel answered %q, %v", line, err)
	}
}

func TestSealRequiredRefusesPlain(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) { s.Routes[0].Seal = SealRequired })
	resp, err := f.client(false).Get(f.url("/x"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || f.hits.Load() != 0 {
		t.Fatalf("status %d, upstream hits %d; want 403 and none", resp.StatusCode, f.hits.Load())
	}
	decodeProblem(t, resp)
}

func TestUnmatchedIs404Problem(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) { s.Routes[0].Match = "/api/" })
	resp, err := f.client(false).Get(f.url("/other"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	decodeProblem(t, resp)
}

func TestCertificateRotationOnApply(t *testing.T) {
	f := newFixture(t, nil, nil)
	h2 := f.client(true)
	get := func(c *http.Client) *http.Response {
		t.Helper()
		resp, err := c.Get(f.url("/x"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	first := get(h2).TLS.PeerCertificates[0].SerialNumber
	newSpec := f.spec
	c, k := f.ca.Leaf(t, "localhost", "localhost", "127.0.0.1")
	newSpec.Listeners = []ListenerSpec{{Name: "api", TLS: TLSSpec{Certs: []CertFiles{{c, k}}}}}
	if err := f.e.Apply(newSpec); err != nil {
		t.Fatal(err)
	}
	// The open h2 connection keeps working on its session.
	if r := get(h2); r.StatusCode != 200 || r.TLS.PeerCertificates[0].SerialNumber.Cmp(first) != 0 {
		t.Fatal("open h2 connection broke or changed certificate")
	}
	// A new connection sees the new certificate.
	fresh := get(f.client(true)).TLS.PeerCertificates[0].SerialNumber
	if fresh.Cmp(first) == 0 {
		t.Fatal("new connection still sees the old certificate")
	}
}

func TestBadSpecRefusedAndOldKept(t *testing.T) {
	f := newFixture(t, nil, nil)
	bad := f.spec
	bad.Routes = []RouteSpec{{Name: "r", Listener: "api", Match: "/", Upstream: "ftp://x"}}
	if err := f.e.Apply(bad); err == nil {
		t.Fatal("bad upstream accepted")
	}
	resp, err := f.client(false).Get(f.url("/x"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("old config stopped serving: %v", err)
	}
	resp.Body.Close()
}

func TestClientCertificates(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, ca *testpki.CA) { s.Listeners[0].TLS.ClientCA = ca.CertPEM })
	noCert := f.client(false)
	if resp, err := noCert.Get(f.url("/x")); err == nil {
		resp.Body.Close()
		t.Fatal("request without a client certificate accepted")
	}
	cl := f.client(false)
	cl.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{f.ca.ClientCert(t, "alice")}
	resp, err := cl.Get(f.url("/x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestDenyListDropsAtAccept(t *testing.T) {
	deny := blocker.NewList(nil)
	f := newFixture(t, nil, nil)
	// Rebuild with a deny list: Options are fixed at New.
	f.e.Shutdown(context.Background())
	e := New(Options{Deny: deny})
	if err := e.Apply(f.spec); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	e.Serve("api", ln)
	defer e.Shutdown(context.Background())
	deny.Block(netip.MustParsePrefix("127.0.0.0/8"), time.Minute, "test", "test")
	if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("blocked source completed a handshake")
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	f := newFixture(t, slow, nil)
	got := make(chan string, 1)
	go func() {
		resp, err := f.client(false).Get(f.url("/slow"))
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	done := make(chan error, 1)
	go func() { done <- f.e.Shutdown(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", f.addr, time.Second); err == nil {
		c.Close()
		t.Error("still accepting connections while draining")
	}
	close(release)
	if s := <-got; s != "done" {
		t.Fatalf("in-flight request got %q", s)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
