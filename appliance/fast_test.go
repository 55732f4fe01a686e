package appliance

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/sealgate/sealgate/internal/testpki"
	itest "github.com/sealgate/sealgate/internal/testutil"
)

// conns reads sealgate_connections_total for listener "api".
func (f *fixture) conns(server string) int {
	return int(testutil.ToFloat64(f.m.Connections.WithLabelValues("api", server)))
}

// rawConn is one HTTP/1.1 TLS connection to the fixture, for sending several
// requests over the same connection.
type rawConn struct {
	t  *testing.T
	c  *tls.Conn
	br *bufio.Reader
}

func (f *fixture) dialH1(t *testing.T) *rawConn {
	t.Helper()
	c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.Pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// do writes req on the connection and reads the response whole.
func (rc *rawConn) do(req *http.Request) (*http.Response, []byte) {
	rc.t.Helper()
	if err := req.Write(rc.c); err != nil {
		rc.t.Fatal(err)
	}
	resp, err := http.ReadResponse(rc.br, req)
	if err != nil {
		rc.t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatal(err)
	}
	resp.Body.Close()
	return resp, body
}

// TestFastPathForwarding checks what the upstream and the client see through
// both sides of the fast upstream client: the fasthttp server (HTTP/1.1) and
// the net/http forwarder (h2).
func TestFastPathForwarding(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) { testForwarding(t, h2) })
	}
}

func testForwarding(t *testing.T, h2 bool) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Keep-Alive", "timeout=5") // hop-by-hop: not for the client
		w.Header().Set("Connection", "keep-alive")
		w.Header().Set("X-Upstream", "yes")
		fmt.Fprint(w, `{"ok":true}`)
	}), nil)
	req, _ := http.NewRequest("GET", f.url("/api/items?a=1&b=%2F&c"), nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("Forwarded", "for=203.0.113.9")
	req.Header.Set("Keep-Alive", "timeout=1")
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	req.Header.Set("X-Custom", "kept")
	req.Header.Set("Cookie", "a=1; b=2") // Go's h2 client sends two fields
	// Names in other cases are the same headers (Go's HTTP/1.1 client
	// sends these as written).
	req.Header["x-forwarded-host"] = []string{"spoofed.example"}
	req.Header["x-request-id"] = []string{"spoofed"}
	resp, err := f.client(h2).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"ok":true}` {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	wantFast, wantH2 := 1, 0
	if h2 {
		wantFast, wantH2 = 0, 1
	}
	if fast, full, h2c := f.conns("http1_fast"), f.conns("http1_full"), f.conns("http2"); fast != wantFast || full != 0 || h2c != wantH2 {
		t.Fatalf("connections fast %d full %d http2 %d, want %d 0 %d", fast, full, h2c, wantFast, wantH2)
	}
	up := f.lastReq.Load()
	for k, want := range map[string]string{
		"X-Forwarded-For":     "127.0.0.1",
		"X-Forwarded-Proto":   "https",
		"X-Forwarded-Host":    f.addr,
		"Forwarded":           "",
		"Keep-Alive":          "",
		"Proxy-Authorization": "",
		"X-Custom":            "kept",
		"Cookie":              "a=1; b=2",
		"X-Request-Id":        resp.Header.Get("X-Request-Id"),
	} {
		if got := up.Header.Get(k); got != want {
			t.Errorf("upstream saw %s %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id"} {
		if n := len(up.Header.Values(k)); n != 1 {
			t.Errorf("upstream saw %d %s fields, want the engine's one: %q", n, k, up.Header.Values(k))
		}
	}
	if up.Host != f.addr || up.RequestURI != "/api/items?a=1&b=%2F&c" {
		t.Errorf("upstream saw host %q target %q, want the target as sent", up.Host, up.RequestURI)
	}
	if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Upstream") != "yes" ||
		resp.Header.Get("Connection") != "" {
		t.Errorf("response headers %v", resp.Header)
	}
	if s := resp.Header.Get("Server"); s != "" {
		t.Errorf("the engine announced a server %q", s)
	}
	if n := testutil.ToFloat64(f.m.Requests.WithLabelValues("api", "r", "200")); n != 1 {
		t.Errorf("sealgate_requests_total{route=r,code=200} = %v, want 1", n)
	}
}

// markStage is a stage that proves it ran and saw the TLS state.
func markStage(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Stage", "ran")
		if r.TLS != nil && r.TLS.HandshakeComplete {
			w.Header().Set("X-Stage-TLS", tlsVersionName(r.TLS.Version))
		}
		next.ServeHTTP(w, r)
	})
}

func TestFastPathMovesConnectionForStagedRoute(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	}), func(s *Spec, _ *testpki.CA) {
		s.Routes = append(s.Routes, RouteSpec{Name: "staged", Listener: "api", Match: "/staged/", Upstream: s.Routes[0].Upstream,
			Stages: []func(http.Handler) http.Handler{markStage}})
	})
	rc := f.dialH1(t)
	steps := []struct {
		method, path, body string
		staged             bool
	}{
		{"GET", "/a", "", false},
		{"POST", "/staged/x", "hello", true},
		{"GET", "/b", "", false},
		{"PUT", "/staged/y", "again", true},
	}
	for _, st := range steps {
		req, _ := http.NewRequest(st.method, f.url(st.path), strings.NewReader(st.body))
		resp, body := rc.do(req)
		if resp.StatusCode != 200 || string(body) != st.method+" "+st.path {
			t.Fatalf("%s %s: %d %q", st.method, st.path, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Stage") == "ran"; got != st.staged {
			t.Fatalf("%s %s: stage ran %v, want %v", st.method, st.path, got, st.staged)
		}
		if st.staged && resp.Header.Get("X-Stage-TLS") != "1.3" {
			t.Fatalf("%s %s: the stage saw no TLS state on a moved connection", st.method, st.path)
		}
	}
	if fast, full := f.conns("http1_fast"), f.conns("http1_full"); fast != 1 || full != 1 {
		t.Fatalf("connections fast %d full %d, want 1 and 1 (one connection, moved once)", fast, full)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"GET /a ", "POST /staged/x hello", "GET /b ", "PUT /staged/y again"}
	if strings.Join(bodies, "|") != strings.Join(want, "|") {
		t.Fatalf("upstream saw %q, want %q", bodies, want)
	}
}

func TestFastPathBodies(t *testing.T) {
	big := make([]byte, 5<<20)
	rand.Read(big)
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/download" {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(big)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", len(b), b[len(b)-8:])
	}), func(s *Spec, _ *testpki.CA) { s.Routes[0].MaxBody = 8 << 20 })
	c := f.client(false)

	resp, err := c.Get(f.url("/download"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("download: %d bytes, err %v; want the upstream's %d bytes", len(got), err, len(big))
	}

	for _, tt := range []struct {
		name    string
		n       int
		chunked bool
		moved   bool
	}{
		{"small known length", 1000, false, false},
		{"3 MiB known length", 3 << 20, false, false},
		{"300 KiB chunked", 300 << 10, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := f.conns("http1_full")
			var body io.Reader = bytes.NewReader(big[:tt.n])
			if tt.chunked {
				body = io.MultiReader(body) // hides the length
			}
			req, _ := http.NewRequest("POST", f.url("/upload"), body)
			if !tt.chunked {
				req.ContentLength = int64(tt.n)
			}
			resp, err := f.client(false).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%d %x", tt.n, big[tt.n-8:tt.n]); resp.StatusCode != 200 || string(out) != want {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, out, want)
			}
			if moved := f.conns("http1_full") > before; moved != tt.moved {
				t.Fatalf("moved to net/http %v, want %v", moved, tt.moved)
			}
		})
	}
}

// TestLargeBodyListenerUsesNetHTTP: the fast path reads request bodies
// whole (at most 8 MiB); a listener whose routes allow more serves
// HTTP/1.1 with net/http, which streams them.
func TestLargeBodyListenerUsesNetHTTP(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}), func(s *Spec, _ *testpki.CA) { s.Routes[0].MaxBody = 64 << 20 })
	const size = 20 << 20
	resp, err := f.client(false).Post(f.url("/upload"), "application/octet-stream", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != fmt.Sprint(size) {
		t.Fatalf("got %d %q, want 200 %d", resp.StatusCode, body, size)
	}
	if f.conns("http1_fast") != 0 || f.conns("http1_full") != 1 {
		t.Fatalf("fast %d full %d, want the connection on net/http from the start", f.conns("http1_fast"), f.conns("http1_full"))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestFastPathAccessLog(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		for _, engine := range []bool{false, true} {
			// engine: the daemon's logger (NewAccessLogger), whose fast-path
			// lines skip slog's handler; otherwise any slog handler.
			t.Run(fmt.Sprintf("h2=%v/engine_logger=%v", h2, engine), func(t *testing.T) { testFastAccessLog(t, h2, engine) })
		}
	}
}

func testFastAccessLog(t *testing.T, h2, engine bool) {
	var buf itest.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	if engine {
		log = NewAccessLogger(&buf, nil)
	}
	f := newFixtureOpts(t, nil, nil, Options{AccessLog: log})
	resp, err := f.client(h2).Get(f.url("/api/orders?token=s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	server, proto, alpn := "http1_fast", "HTTP/1.1", "http/1.1"
	if h2 {
		server, proto, alpn = "http2", "HTTP/2.0", "h2"
	}
	if f.conns(server) != 1 {
		t.Fatalf("the request did not reach the %s server", server)
	}
	line := strings.TrimSpace(buf.String())
	if strings.Contains(line, "s3cret") || strings.Contains(line, "token") {
		t.Fatalf("the access log has the query: %s", line)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("access line %q: %v", line, err)
	}
	for k, want := range map[string]any{
		"msg": "access", "route": "r", "listener": "api", "method": "GET", "path": "/api/orders",
		"status": float64(200), "bytes_out": float64(len(body)), "bytes_in": float64(0), "proto": proto,
		"tls": "1.3", "alpn": alpn, "request_id": resp.Header.Get("X-Request-Id"), "upstream": strings.TrimPrefix(f.upstream.URL, "http://"),
	} {
		if rec[k] != want {
			t.Errorf("access %s = %v, want %v", k, rec[k], want)
		}
	}
	if c, _ := rec["client"].(string); !strings.HasPrefix(c, "127.0.0.1:") {
		t.Errorf("access client %q", c)
	}
}

func TestFastPathOff(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) { s.DisableFastPath = true })
	resp, err := f.client(false).Get(f.url("/x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || f.conns("http1_fast") != 0 || f.conns("http1_full") != 1 {
		t.Fatalf("status %d, fast %d, full %d; want 200 served by net/http only", resp.StatusCode, f.conns("http1_fast"), f.conns("http1_full"))
	}
}

func TestPlainPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/api/v1/items": true, "/a-b_c~d,e=f:g@h": true, "/file.json": true, "/.well-known/x": true, "/a/..b": true,
		"": false, "x": false, "//a": false, "/a//b": false, "/a/./b": false, "/a/../b": false, "/a/..": false, "/.": false,
		"/%2e%2e/x": false, "/a b": false, "/a?b": false, "/a+b": false, "/a;b": false,
	} {
		if got := plainPath([]byte(p)); got != want {
			t.Errorf("plainPath(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestFastPathClientCloseKeepsUpstreamPooled: a client that closes its
// connection after each request must not cost an upstream connection each.
func TestFastPathClientCloseKeepsUpstreamPooled(t *testing.T) {
	var mu sync.Mutex
	ports := map[string]bool{}
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ports[r.RemoteAddr] = true
		mu.Unlock()
		fmt.Fprint(w, "ok")
	}), nil)
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("GET", f.url("/x"), nil)
		req.Close = true
		resp, err := f.client(false).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" || !resp.Close {
			t.Fatalf("request %d: body %q, connection close %v; want ok and close", i, b, resp.Close)
		}
	}
	if f.conns("http1_fast") != 20 {
		t.Fatalf("fast connections %d, want 20", f.conns("http1_fast"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ports) != 1 {
		t.Fatalf("the upstream saw %d connections for 20 sequential requests, want 1", len(ports))
	}
}

// FuzzReplay: a request moved from the fast path to net/http is rebuilt from
// what fasthttp parsed. Whatever both servers accept must reach net/http
// with the same method, request target and body bytes.
func FuzzReplay(f *testing.F) {
	f.Add("POST /a?b=%2F HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	f.Add("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
	f.Add("GET /a/../b HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	f.Add("PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	f.Add("POST /f HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nContent-Length: 9\n\n2\r\nab\r\n0\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return
		}
		head, body := replay(&req)
		br := bufio.NewReader(io.MultiReader(bytes.NewReader(head), body))
		got, err := http.ReadRequest(br)
		if err != nil {
			return // net/http is stricter here; it answers 400 on the moved connection
		}
		if got.Method != string(req.Header.Method()) || got.RequestURI != string(req.Header.RequestURI()) {
			t.Fatalf("replayed %s %s, want %s %s", got.Method, got.RequestURI, req.Header.Method(), req.Header.RequestURI())
		}
		b, err := io.ReadAll(got.Body)
		if err != nil {
			t.Fatalf("replayed body: %v", err)
		}
		if !bytes.Equal(b, req.Body()) {
			t.Fatalf("replayed body %q, want %q", b, req.Body())
		}
		// net/http framed the request as fasthttp did: nothing of the
		// replay is left to be read as a next request.
		if rest, _ := io.ReadAll(br); len(rest) > 0 {
			t.Fatalf("%q left after the replayed request", rest)
		}
		for _, k := range []string{"X-A", "Upgrade", "Content-Type"} {
			if w := req.Header.Peek(k); len(w) > 0 && got.Header.Get(k) == "" {
				t.Fatalf("header %s lost in the replay", k)
			}
		}
	})
}

// TestFastPathSlowBody: on the HTTP/1.1 fast path read_header_timeout bounds
// the request head only; a body gets idle_timeout, so a slow upload is not
// cut off after the head's few seconds.
func TestFastPathSlowBody(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got:%s", b)
	}), func(s *Spec, _ *testpki.CA) {
		s.Limits.ReadHeaderTimeout = 300 * time.Millisecond
		s.Limits.IdleTimeout = 10 * time.Second
	})
	c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.Pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\n\r\nabc")
	time.Sleep(900 * time.Millisecond) // three times read_header_timeout
	io.WriteString(c, "def")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "got:abcdef" {
		t.Fatalf("%d %q, want 200 got:abcdef", resp.StatusCode, body)
	}
	if f.conns("http1_fast") != 1 {
		t.Fatal("the request did not take the fast path")
	}
}

// TestFastPathRequestIDs: the requests of one connection each get their own
// id (the fast path builds it in a buffer the connection reuses), the same
// on the upstream's side and in the answer, also when streamed.
func TestFastPathRequestIDs(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	long := strings.Repeat("b", 3*smallUpstreamBody)
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Request-Id"))
		mu.Unlock()
		if r.URL.Path == "/long" {
			io.WriteString(w, long)
			return
		}
		io.WriteString(w, "ok")
	}), nil)
	rc := f.dialH1(t)
	var answered []string
	for i := range 6 {
		path := "/short"
		if i%2 == 1 {
			path = "/long"
		}
		req, _ := http.NewRequest("GET", f.url(path), nil)
		resp, body := rc.do(req)
		if resp.StatusCode != 200 || (string(body) != "ok" && string(body) != long) {
			t.Fatalf("%s: %d, %d bytes", path, resp.StatusCode, len(body))
		}
		answered = append(answered, resp.Header.Get("X-Request-Id"))
	}
	mu.Lock()
	defer mu.Unlock()
	distinct := map[string]bool{}
	for i, id := range answered {
		if id == "" || id != seen[i] {
			t.Fatalf("request %d: the client got id %q, the upstream %q", i, id, seen[i])
		}
		distinct[id] = true
	}
	if len(distinct) != len(answered) {
		t.Fatalf("ids on one connection repeat: %q", answered)
	}
}

// TestFastPathSlowSecondHead: on a keep-alive connection the head of a later
// request is bounded by read_header_timeout too, not by idle_timeout (the
// fast path arms read deadlines only when a read reaches the socket).
func TestFastPathSlowSecondHead(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) {
		s.Limits.ReadHeaderTimeout = 300 * time.Millisecond
		s.Limits.IdleTimeout = 20 * time.Second
	})
	rc := f.dialH1(t)
	req, _ := http.NewRequest("GET", f.url("/first"), nil)
	if resp, _ := rc.do(req); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	// Idle for longer than the head's bound: idle_timeout applies.
	time.Sleep(600 * time.Millisecond)
	io.WriteString(rc.c, "GET /second HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err := io.ReadAll(rc.br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server kept a slow second head open for 10s")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the slow second head was cut after %s, want about read_header_timeout", d)
	}
	if f.hits.Load() != 1 {
		t.Fatalf("%d requests reached the upstream, want the complete one only", f.hits.Load())
	}
	if f.conns("http1_fast") != 1 {
		t.Fatal("the connection did not take the fast path")
	}
}

// TestFastPathStreamedBodiesKeepUpstreamPooled: a response too long to be
// read whole is streamed, and its upstream connection goes back to the pool
// once the client has it all, on both protocols (and chunked too).
func TestFastPathStreamedBodiesKeepUpstreamPooled(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		var mu sync.Mutex
		ports := map[string]bool{}
		long := strings.Repeat("s", 5*smallUpstreamBody)
		f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			ports[r.RemoteAddr] = true
			mu.Unlock()
			if r.URL.Path == "/chunked" {
				io.WriteString(w, long[:len(long)/2])
				w.(http.Flusher).Flush() // no length known: chunked
				io.WriteString(w, long[len(long)/2:])
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(long)))
			io.WriteString(w, long)
		}), nil)
		c := f.client(h2)
		for i := range 10 {
			path := "/long"
			if i%2 == 1 {
				path = "/chunked"
			}
			resp, err := c.Get(f.url(path))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != long {
				t.Fatalf("h2=%v %s: %d bytes, want %d", h2, path, len(b), len(long))
			}
		}
		mu.Lock()
		if len(ports) != 1 {
			t.Errorf("h2=%v: the upstream saw %d connections for 10 sequential streamed responses, want 1", h2, len(ports))
		}
		mu.Unlock()
	}
}
