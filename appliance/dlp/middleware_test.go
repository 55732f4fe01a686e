package dlp

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sealgate/sealgate/appliance/alert"
	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/appliance/problem"
	"github.com/sealgate/sealgate/appliance/reqctx"
)

// fixture is a Policy with its observable side effects.
type fixture struct {
	p       *Policy
	m       *metrics.Metrics
	mu      sync.Mutex
	alerts  []alert.Alert
	logs    bytes.Buffer
	logMu   sync.Mutex
	handler http.Handler
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func newFixture(t *testing.T, cfg Config, upstream http.Handler) *fixture {
	t.Helper()
	fx := &fixture{m: metrics.New()}
	// No time field: a timestamp's digits can contain the values the tests
	// check the log for (it once held "5555").
	noTime := func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	log := slog.New(slog.NewJSONHandler(lockedWriter{&fx.logMu, &fx.logs}, &slog.HandlerOptions{ReplaceAttr: noTime}))
	p, err := New("customers", cfg, Deps{Metrics: fx.m, Logger: log, Alerts: alert.SinkFunc(func(a alert.Alert) {
		fx.mu.Lock()
		fx.alerts = append(fx.alerts, a)
		fx.mu.Unlock()
	})})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	fx.p = p
	fx.handler = p.Wrap(upstream)
	return fx
}

func (fx *fixture) logText() string {
	fx.logMu.Lock()
	defer fx.logMu.Unlock()
	return fx.logs.String()
}

// chunked is an upstream that writes body in pieces of size n with the given
// headers, as a reverse proxy does.
func chunked(header http.Header, status int, body []byte, n int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		for p := body; len(p) > 0; {
			k := min(n, len(p))
			if _, err := w.Write(p[:k]); err != nil {
				return
			}
			p = p[k:]
		}
	})
}

func jsonHeader(n int) http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(n)}, "X-Upstream": {"yes"}}
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

var customerBody = []byte(`{"customers":[{"id":1,"name":"Ada","card":"4111 1111 1111 1111","email":"ada@example.com","ssn":"078-05-1121"},{"id":2,"name":"Bob","card":5555555555554444,"note":"call +14155552671"}]}`)

func TestWrapZeroConfigIsOff(t *testing.T) {
	p, err := New("r", Config{}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	next := http.NotFoundHandler()
	if got := p.Wrap(next); fmt.Sprintf("%p", got) != fmt.Sprintf("%p", next) {
		t.Fatal("zero Config: Wrap must return next")
	}
	if p.Enabled() {
		t.Fatal("zero Config: Enabled")
	}
}

func TestWrapRedactStreaming(t *testing.T) {
	for _, n := range []int{1, 7, 64, 1 << 20} {
		t.Run(fmt.Sprintf("writes of %d", n), func(t *testing.T) {
			fx := newFixture(t, Config{Action: "redact"}, chunked(jsonHeader(len(customerBody)), 200, customerBody, n))
			info := &reqctx.Info{ID: "req-1", Route: "customers"}
			r := httptest.NewRequest("GET", "/customers", nil).WithContext(reqctx.With(context.Background(), info))
			rec := serve(fx.handler, r)
			body := rec.Body.Bytes()
			if rec.Code != 200 {
				t.Fatalf("status %d", rec.Code)
			}
			if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(len(body)) {
				t.Fatalf("Content-Length %q for a body of %d", cl, len(body))
			}
			if !json.Valid(body) {
				t.Fatalf("not JSON: %s", body)
			}
			want := `{"customers":[{"id":1,"name":"Ada","card":"**** **** **** 1111","email":"***@*******.***","ssn":"***-**-****"},{"id":2,"name":"Bob","card":9999999999994444,"note":"call +***********"}]}`
			if string(body) != want {
				t.Fatalf("body\n%s\nwant\n%s", body, want)
			}
			if got := counterValue(fx.m.DLPFindings.WithLabelValues("customers", "card", "redact")); got != 2 {
				t.Fatalf("card findings metric = %v", got)
			}
			if got := info.DLP(); got["card"] != 2 || got["email"] != 1 || got["ssn"] != 1 || got["phone"] != 1 {
				t.Fatalf("reqctx counts %v", got)
			}
			logs := fx.logText()
			if !strings.Contains(logs, `"kind":"card"`) || !strings.Contains(logs, `"offset":`) || !strings.Contains(logs, `"request_id":"req-1"`) {
				t.Fatalf("log lacks kind/offset: %s", logs)
			}
			for _, v := range []string{"4111", "5555", "ada@", "078-05", "4155552671"} {
				if strings.Contains(logs, v) {
					t.Fatalf("log leaks %q: %s", v, logs)
				}
			}
		})
	}
}

func TestWrapLogPassesBody(t *testing.T) {
	fx := newFixture(t, Config{Action: "log"}, chunked(jsonHeader(len(customerBody)), 200, customerBody, 5))
	rec := serve(fx.handler, httptest.NewRequest("GET", "/", nil))
	if !bytes.Equal(rec.Body.Bytes(), customerBody) {
		t.Fatalf("log action changed the body")
	}
	if got := counterValue(fx.m.DLPFindings.WithLabelValues("customers", "email", "log")); got != 1 {
		t.Fatalf("email findings metric = %v", got)
	}
}

func checkWithheld(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type %q", ct)
	}
	if rec.Header().Get("X-Upstream") != "" || rec.Header().Get("Content-Encoding") != "" {
		t.Fatalf("upstream headers leaked: %v", rec.Header())
	}
	var pr problem.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &pr); err != nil {
		t.Fatalf("problem body: %v: %s", err, rec.Body)
	}
	if pr.Status != 502 {
		t.Fatalf("problem %+v", pr)
	}
	for _, leak := range []string{"customers", "Ada", "1111", "example"} {
		if strings.Contains(rec.Body.String(), leak) {
			t.Fatalf("body leaks %q: %s", leak, rec.Body)
		}
	}
}

func TestWrapBlock(t *testing.T) {
	for _, n := range []int{3, 50, 1 << 20} {
		t.Run(fmt.Sprintf("writes of %d", n), func(t *testing.T) {
			fx := newFixture(t, Config{Action: "redact", Actions: map[string]string{"card": "block"}},
				chunked(jsonHeader(len(customerBody)), 200, customerBody, n))
			info := &reqctx.Info{ID: "req-9", Client: netip.MustParseAddr("192.0.2.7")}
			info.SetIdentity(&reqctx.Identity{Method: "jwt", Subject: "svc-reporting"})
			r := httptest.NewRequest("GET", "/", nil).WithContext(reqctx.With(context.Background(), info))
			pre := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Request-Id", "req-9")
				fx.handler.ServeHTTP(w, r)
			})
			rec := serve(pre, r)
			checkWithheld(t, rec)
			if rec.Header().Get("X-Request-Id") != "req-9" {
				t.Fatalf("engine header lost: %v", rec.Header())
			}
			if len(fx.alerts) != 1 {
				t.Fatalf("%d alerts, want 1 (two cards in the body)", len(fx.alerts))
			}
			a := fx.alerts[0]
			if a.Kind != "dlp_block" || a.Route != "customers" || a.Client != info.Client || a.Identity != "svc-reporting" {
				t.Fatalf("alert %+v", a)
			}
			if strings.Contains(a.Detail, "4111") {
				t.Fatalf("alert leaks the value: %q", a.Detail)
			}
		})
	}
}

func TestWrapBlockWholeBodyWithinBuffer(t *testing.T) {
	clean := []byte(`{"id":1,"name":"Ada"}`)
	h := http.Header{"Content-Type": {"application/json"}}
	fx := newFixture(t, Config{Action: "block"}, chunked(h, 200, clean, 4))
	rec := serve(fx.handler, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), clean) || rec.Header().Get("Content-Length") != strconv.Itoa(len(clean)) {
		t.Fatalf("clean body through block: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	if len(fx.alerts) != 0 {
		t.Fatalf("alerts on a clean body: %v", fx.alerts)
	}
}

func TestWrapBlockAfterBufferAborts(t *testing.T) {
	body := bytes.Repeat([]byte(`{"id":12,"name":"clean record"},`), 200) // 6.4 KB
	body = append([]byte("["), body...)
	body = append(body, []byte(`{"card":"4111111111111111"}]`)...)
	fx := newFixture(t, Config{Action: "block", MaxBlockBuffer: "1KiB"}, chunked(http.Header{"Content-Type": {"application/json"}}, 200, body, 512))
	rec := httptest.NewRecorder()
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Fatalf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		fx.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	}()
	if rec.Body.Len() < 1024 {
		t.Fatalf("only %d bytes sent before the abort; the buffer limit was 1KiB", rec.Body.Len())
	}
	if bytes.Contains(rec.Body.Bytes(), []byte("4111")) {
		t.Fatal("the card left before the abort")
	}
	if len(fx.alerts) != 1 {
		t.Fatalf("%d alerts", len(fx.alerts))
	}
}

func compress(t *testing.T, enc string, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "br":
		w = brotli.NewWriter(&b)
	case "deflate":
		w = zlib.NewWriter(&b)
	case "deflate-raw":
		w, _ = flate.NewWriter(&b, flate.DefaultCompression)
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestWrapCompressed(t *testing.T) {
	for _, enc := range []string{"gzip", "br", "deflate", "deflate-raw"} {
		for _, n := range []int{1, 13, 1 << 20} {
			t.Run(fmt.Sprintf("%s/writes of %d", enc, n), func(t *testing.T) {
				z := compress(t, enc, customerBody)
				h := jsonHeader(len(z))
				h.Set("Content-Encoding", strings.TrimSuffix(enc, "-raw"))
				h.Set("Etag", `"abc"`)
				fx := newFixture(t, Config{Action: "redact"}, chunked(h, 200, z, n))
				rec := serve(fx.handler, httptest.NewRequest("GET", "/", nil))
				if rec.Code != 200 || rec.Header().Get("Content-Encoding") != "" || rec.Header().Get("Content-Length") != "" {
					t.Fatalf("status %d headers %v", rec.Code, rec.Header())
				}
				if et := rec.Header().Get("Etag"); et != `W/"abc"` {
					t.Fatalf("Etag %q, want weak", et)
				}
				if !json.Valid(rec.Body.Bytes()) || !strings.Contains(rec.Body.String(), `"**** **** **** 1111"`) || strings.Contains(rec.Body.String(), "ada@") {
					t.Fatalf("body not decoded and redacted: %s", rec.Body)
				}
			})
		}
	}
}

func TestWrapCompressedWithheld(t *testing.T) {
	gz := compress(t, "gzip", customerBody)
	tests := []struct {
		name string
		cfg  Config
		enc  string
		body []byte
	}{
		{"refuse mode", Config{Compressed: "refuse"}, "gzip", gz},
		{"unsupported encoding", Config{Action: "redact"}, "zstd", gz},
		{"stacked encodings", Config{Action: "redact"}, "gzip, br", gz},
		{"corrupt gzip", Config{Action: "redact"}, "gzip", append(append([]byte{}, gz[:20]...), bytes.Repeat([]byte{0xff}, 40)...)},
		{"not gzip at all", Config{Action: "log"}, "gzip", []byte("plain text 4111111111111111")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := jsonHeader(len(tc.body))
			h.Set("Content-Encoding", tc.enc)
			fx := newFixture(t, tc.cfg, chunked(h, 200, tc.body, 16))
			rec := serve(fx.handler, httptest.NewRequest("GET", "/", nil))
			checkWithheld(t, rec)
			if bytes.Contains(rec.Body.Bytes(), tc.body[:8]) {
				t.Fatal("compressed bytes passed")
			}
			if got := counterValue(fx.m.UpstreamErrors.WithLabelValues("customers", "dlp_encoding")); got != 1 {
				t.Fatalf("upstream_errors{dlp_encoding} = %v", got)
			}
		})
	}
}

func TestWrapContentTypes(t *testing.T) {
	tests := []struct {
		ct     string
		scan   bool
		custom []string
	}{
		{"application/json; charset=utf-8", true, nil},
		{"application/problem+json", true, nil},
		{"text/html", true, nil},
		{"", true, nil},
		{"image/png", false, nil},
		{"application/octet-stream", false, nil},
		{"text/csv", true, []string{"text/csv"}},
		{"application/json", false, []string{"text/csv"}},
	}
	for _, tc := range tests {
		t.Run(tc.ct+"/"+strings.Join(tc.custom, ","), func(t *testing.T) {
			body := []byte("id,card\n1,4111111111111111\n")
			h := http.Header{}
			if tc.ct != "" {
				h.Set("Content-Type", tc.ct)
			}
			fx := newFixture(t, Config{Action: "redact", ContentTypes: tc.custom}, chunked(h, 200, body, 9))
			rec := serve(fx.handler, httptest.NewRequest("GET", "/", nil))
			scanned := !bytes.Equal(rec.Body.Bytes(), body)
			if scanned != tc.scan {
				t.Fatalf("scanned=%v want %v: %s", scanned, tc.scan, rec.Body)
			}
		})
	}
}

func TestWrapNoBodyResponsesPass(t *testing.T) {
	for _, tc := range []struct {
		method string
		status int
	}{{"HEAD", 200}, {"GET", 204}, {"GET", 304}} {
		t.Run(fmt.Sprintf("%s %d", tc.method, tc.status), func(t *testing.T) {
			h := http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}, "Content-Length": {"123"}}
			fx := newFixture(t, Config{Compressed: "refuse"}, chunked(h, tc.status, nil, 1))
			rec := serve(fx.handler, httptest.NewRequest(tc.method, "/", nil))
			if rec.Code != tc.status || rec.Header().Get("Content-Encoding") != "gzip" || rec.Header().Get("Content-Length") != "123" {
				t.Fatalf("got %d %v", rec.Code, rec.Header())
			}
		})
	}
}

// TestWrapRealServer runs the wrapper under net/http: flushing streams
// complete events at once, 1xx pass, hijacking passes untouched.
func TestWrapRealServer(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: card 4111111111111111\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		fmt.Fprint(w, "data: bye\n\n")
	})
	mux.HandleFunc("/hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"card":"4111111111111111"}`)
	})
	mux.HandleFunc("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Errorf("SetWriteDeadline through the wrapper: %v", err)
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nraw 4111111111111111\n")
		brw.Flush()
	})
	fx := newFixture(t, Config{Action: "redact"}, mux)
	srv := httptest.NewServer(fx.handler)
	defer srv.Close()

	t.Run("flush", func(t *testing.T) {
		defer close(release)
		resp, err := http.Get(srv.URL + "/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line != "data: card ************1111\n" {
			t.Fatalf("first event %q", line)
		}
	})
	t.Run("early hints", func(t *testing.T) {
		var got1xx []int
		req, _ := http.NewRequest("GET", srv.URL+"/hints", nil)
		req = req.WithContext(withGot1xx(req.Context(), &got1xx))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if len(got1xx) != 1 || got1xx[0] != 103 || string(b) != `{"card":"************1111"}` {
			t.Fatalf("1xx %v body %s", got1xx, b)
		}
	})
	t.Run("upgrade", func(t *testing.T) {
		u, _ := url.Parse(srv.URL)
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		b, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(b), "HTTP/1.1 101") || !strings.Contains(string(b), "raw 4111111111111111") {
			t.Fatalf("upgrade response %q", b)
		}
	})
}

// TestWrapReverseProxy puts the wrapper around httputil.ReverseProxy, as the
// engine does, against a real gzip upstream.
func TestWrapReverseProxy(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		z := gzip.NewWriter(w)
		for i := 0; i < 2000; i++ {
			fmt.Fprintf(z, `{"id":%d,"card":"4111-1111-1111-1111","mail":"user%d@example.com"}`+"\n", i, i)
		}
		z.Close()
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	for _, tc := range []struct {
		name string
		cfg  Config
		code int
	}{
		{"redact", Config{Action: "redact"}, 200},
		{"block", Config{Action: "block", MaxBlockBuffer: "64MiB"}, 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, tc.cfg, httputil.NewSingleHostReverseProxy(target))
			srv := httptest.NewServer(fx.handler)
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL, nil)
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.code || resp.Header.Get("Content-Encoding") != "" {
				t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
			}
			if bytes.Contains(b, []byte("4111-1111-1111-1111")) || bytes.Contains(b, []byte("@example.com")) {
				t.Fatal("sensitive data through the proxy")
			}
			if tc.code == 200 && bytes.Count(b, []byte(`"card":"****-****-****-1111"`)) != 2000 {
				t.Fatalf("not all records redacted: %d bytes", len(b))
			}
		})
	}
}

func TestWriteAfterFinish(t *testing.T) {
	var saved http.ResponseWriter
	fx := newFixture(t, Config{Action: "redact"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		saved = w
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok"))
	}))
	serve(fx.handler, httptest.NewRequest("GET", "/", nil))
	if _, err := saved.Write([]byte("late 4111111111111111")); !errors.Is(err, ErrWriteAfterFinish) {
		t.Fatalf("late write: %v", err)
	}
}

func TestWrapCompressedBlockAfterBufferAborts(t *testing.T) {
	// 70 KB before the token, more than one 16 KiB decoder read, so part
	// of the body has left when the token is found.
	var b bytes.Buffer
	b.WriteString("[")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&b, `{"id":%d,"name":"clean record %d"},`, i*7919%10007, i)
	}
	body := append(b.Bytes(), []byte(`{"jwt":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"}]`)...)
	z := compress(t, "gzip", body)
	h := http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}
	fx := newFixture(t, Config{Action: "redact", Actions: map[string]string{"secret": "block"}, MaxBlockBuffer: "1KiB"}, chunked(h, 200, z, 64))
	rec := httptest.NewRecorder()
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Fatalf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		fx.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	}()
	if bytes.Contains(rec.Body.Bytes(), []byte("eyJ")) || rec.Body.Len() < 1024 {
		t.Fatalf("sent %d bytes, token leaked=%v", rec.Body.Len(), bytes.Contains(rec.Body.Bytes(), []byte("eyJ")))
	}
	if len(fx.alerts) != 1 {
		t.Fatalf("%d alerts", len(fx.alerts))
	}
	// The policy keeps working after an aborted response.
	rec2 := serve(fx.p.Wrap(chunked(jsonHeader(len(customerBody)), 200, customerBody, 10)), httptest.NewRequest("GET", "/", nil))
	if rec2.Code != 200 || !strings.Contains(rec2.Body.String(), "**** **** **** 1111") {
		t.Fatalf("next response: %d %s", rec2.Code, rec2.Body)
	}
}

func TestWrapJSONFieldsEndToEnd(t *testing.T) {
	body := []byte(`{"users":[{"name":"Ada","national_id":"AB 12 34 56 C","password":"s3cr\"t","pin":1234,"profile":{"ssn":123456789}}]}`)
	fx := newFixture(t, Config{Detectors: []string{}, JSONFields: []string{"national_id", "password", "PIN", "ssn"}},
		chunked(jsonHeader(len(body)), 200, body, 3))
	rec := serve(fx.handler, httptest.NewRequest("GET", "/", nil))
	want := `{"users":[{"name":"Ada","national_id":"*************","password":"*******","pin":9999,"profile":{"ssn":999999999}}]}`
	if rec.Body.String() != want || !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("got  %s\nwant %s", rec.Body, want)
	}
	if got := counterValue(fx.m.DLPFindings.WithLabelValues("customers", "field", "redact")); got != 4 {
		t.Fatalf("field findings = %v", got)
	}
}

func TestWrapFlushWhileBuffering(t *testing.T) {
	var sawBody bool
	rec := httptest.NewRecorder()
	fx := newFixture(t, Config{Action: "block"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.(http.Flusher).Flush()
		w.Write([]byte(`{"a":"clean",`))
		w.(http.Flusher).Flush()
		sawBody = rec.Body.Len() > 0 || rec.Flushed
		w.Write([]byte(`"b":"4111111111111111"}`))
	}))
	fx.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if sawBody {
		t.Fatal("Flush sent bytes while the block buffer was open")
	}
	checkWithheld(t, rec)
}
