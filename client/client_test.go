package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/appliance/reqctx"
	"github.com/sealgate/sealgate/appliance/sealing"
	"github.com/sealgate/sealgate/crypto/cpu"
	"github.com/sealgate/sealgate/crypto/seal"
)

const (
	customerName = "Ada Lovelace"
	customerIBAN = "GB33BUKB20201555555555"
)

// capture records the outer bytes exactly as the handler chain sees them,
// i.e. what an observer on the TLS-decrypted path sees.
type capture struct {
	mu       sync.Mutex
	requests [][]byte // gateway request bodies
	wire     bytes.Buffer
}

func (c *capture) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in bytes.Buffer
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(r.Body, &in), r.Body}
		cw := &captureWriter{ResponseWriter: w}
		// A reqctx.Info as the engine would attach it.
		next.ServeHTTP(cw, r.WithContext(reqctx.With(r.Context(), &reqctx.Info{ID: "t"})))
		c.mu.Lock()
		defer c.mu.Unlock()
		if r.URL.Path == sealing.PathGateway {
			c.requests = append(c.requests, in.Bytes())
		}
		fmt.Fprintf(&c.wire, "%s %s\n", r.Method, r.URL)
		for k, v := range r.Header {
			fmt.Fprintf(&c.wire, "%s: %s\n", k, v)
		}
		c.wire.Write(in.Bytes())
		for k, v := range w.Header() {
			fmt.Fprintf(&c.wire, "%s: %s\n", k, v)
		}
		c.wire.Write(cw.body.Bytes())
	})
}

func (c *capture) lastRequest() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests[len(c.requests)-1]
}

type captureWriter struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (w *captureWriter) Write(p []byte) (int, error) {
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

func (w *captureWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type upstream struct {
	calls   atomic.Int64
	mu      sync.Mutex
	lastReq *http.Request
	release chan struct{}
}

// router is a tiny JSON API standing in for the engine's router.
func (u *upstream) router(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/customers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"customers": []map[string]string{{"name": customerName, "iban": customerIBAN}}})
	})
	mux.HandleFunc("POST /api/echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sum := sha256.Sum256(b)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"len": len(b), "sha256": hex.EncodeToString(sum[:]), "ct": r.Header.Get("Content-Type")})
	})
	mux.HandleFunc("GET /api/blob", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(blob(n))
	})
	mux.HandleFunc("GET /api/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first part;"))
		http.NewResponseController(w).Flush()
		select {
		case <-u.release:
		case <-time.After(5 * time.Second):
			t.Error("first part never reached the client: the response is buffered")
		}
		w.Write([]byte("second part"))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		u.mu.Lock()
		u.lastReq = r
		u.mu.Unlock()
		if !sealing.IsSealed(r) {
			http.Error(w, "plain request reached the sealed-only test router", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func blob(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

type fixture struct {
	srv *httptest.Server
	ep  *sealing.Endpoint
	m   *metrics.Metrics
	up  *upstream
	cap *capture
	tr  *Transport
	hc  *http.Client
	now *fakeClock
}

type fakeClock = testutil.Clock

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{m: metrics.New(), up: &upstream{release: make(chan struct{})}, cap: &capture{},
		now: testutil.NewClock(time.Now())}
	ep, err := sealing.New(sealing.Options{StateDir: t.TempDir(), Metrics: f.m, TicketLifetime: 10 * time.Minute,
		KeyGrace: 20 * time.Minute, Now: f.now.Now, MaintainEvery: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.ep = ep
	f.srv = httptest.NewUnstartedServer(f.cap.wrap(ep.Handler(f.up.router(t))))
	f.srv.EnableHTTP2 = true
	f.srv.StartTLS()
	t.Cleanup(func() {
		f.srv.Close()
		ep.Close()
	})
	f.tr = New(f.srv.Client().Transport)
	f.tr.Now = f.now.Now
	f.hc = &http.Client{Transport: f.tr}
	return f
}

func TestGETCustomers(t *testing.T) {
	f := newFixture(t)
	resp, err := f.hc.Get(f.srv.URL + "/api/customers?region=eu")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), customerIBAN) {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	r := f.up.lastReq
	if r.URL.Path != "/api/customers" || r.URL.RawQuery != "region=eu" || r.Host != strings.TrimPrefix(f.srv.URL, "https://") {
		t.Errorf("inner request target: %s %q host %q", r.URL.Path, r.URL.RawQuery, r.Host)
	}
	if r.TLS == nil || r.RemoteAddr == "" {
		t.Error("inner request lacks the outer TLS state or peer address")
	}
	if info := reqctx.From(r.Context()); info == nil || !info.Sealed {
		t.Error("reqctx Info not marked sealed")
	}
	if counterValue(f.m.SealSessions) != 1 {
		t.Errorf("sessions = %v, want 1", counterValue(f.m.SealSessions))
	}
	if counterValue(f.m.SealRecords.WithLabelValues("in")) < 1 || counterValue(f.m.SealRecords.WithLabelValues("out")) < 1 {
		t.Error("record counters not updated")
	}
}

func TestBodies(t *testing.T) {
	f := newFixture(t)
	for _, size := range []int{0, 1 << 10, 1 << 20} {
		t.Run("POST/"+strconv.Itoa(size), func(t *testing.T) {
			payload := blob(size)
			resp, err := f.hc.Post(f.srv.URL+"/api/echo", "application/x-test", bytes.NewReader(payload))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct {
				Len    int    `json:"len"`
				SHA256 string `json:"sha256"`
				CT     string `json:"ct"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(payload)
			if got.Len != size || got.SHA256 != hex.EncodeToString(sum[:]) || got.CT != "application/x-test" {
				t.Fatalf("echo = %+v", got)
			}
		})
		t.Run("GET/"+strconv.Itoa(size), func(t *testing.T) {
			resp, err := f.hc.Get(f.srv.URL + "/api/blob?n=" + strconv.Itoa(size))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, blob(size)) {
				t.Fatalf("got %d bytes, want %d", len(b), size)
			}
		})
	}
}

func TestWireIsOpaque(t *testing.T) {
	f := newFixture(t)
	resp, err := f.hc.Post(f.srv.URL+"/api/echo", "application/json", strings.NewReader(`{"card":"4111111111111111"}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp, err = f.hc.Get(f.srv.URL + "/api/customers")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), customerName) {
		t.Fatal("client did not get the data")
	}
	wire := f.cap.wire.String()
	if !strings.Contains(wire, sealing.PathGateway) {
		t.Fatal("capture saw no gateway exchange")
	}
	for _, secret := range []string{customerName, customerIBAN, "4111111111111111", "/api/customers", "/api/echo"} {
		if strings.Contains(wire, secret) {
			t.Errorf("%q travels in the clear", secret)
		}
	}
}

func TestStreamsRecordByRecord(t *testing.T) {
	f := newFixture(t)
	resp, err := f.hc.Get(f.srv.URL + "/api/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first part;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	close(f.up.release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(first)+string(rest) != "first part;second part" {
		t.Fatalf("%q %q %v", first, rest, err)
	}
}

func rawPost(t *testing.T, f *fixture, path, ct string, body []byte) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p map[string]any
	json.NewDecoder(resp.Body).Decode(&p)
	return resp, p
}

func TestReplayAndTamperNeverReachRouter(t *testing.T) {
	f := newFixture(t)
	resp, err := f.hc.Post(f.srv.URL+"/api/echo", "text/plain", strings.NewReader("pay 100 EUR"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	captured := f.cap.lastRequest()
	calls := f.up.calls.Load()

	tampered := bytes.Clone(captured)
	tampered[len(tampered)-5] ^= 0x40
	tests := []struct {
		name   string
		body   []byte
		status int
		typ    string
		reason string
	}{
		{"replay", captured, 400, sealing.ProblemReplay, "replay"},
		{"replay with a flipped byte", func() []byte {
			// Same message under a fresh sequence number, last byte flipped.
			b := bytes.Clone(tampered)
			return b
		}(), 400, sealing.ProblemReplay, "replay"},
		{"replay truncated", captured[:len(captured)-10], 400, sealing.ProblemReplay, "replay"},
		{"garbage", []byte{1, 0, 3, 'x'}, 400, sealing.ProblemMalformed, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counterValue(f.m.SealRejects.WithLabelValues(tt.reason))
			resp, p := rawPost(t, f, sealing.PathGateway, seal.MediaTypeRequest, tt.body)
			if resp.StatusCode != tt.status || p["type"] != tt.typ {
				t.Fatalf("%d %v", resp.StatusCode, p)
			}
			if resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
			if f.up.calls.Load() != calls {
				t.Fatal("router was called")
			}
			if got := counterValue(f.m.SealRejects.WithLabelValues(tt.reason)); got != before+1 {
				t.Errorf("rejects{%s} = %v, want %v", tt.reason, got, before+1)
			}
		})
	}
	t.Run("tampered under a fresh sequence number", func(t *testing.T) {
		s, err := f.tr.Session(context.Background(), f.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		rw, _ := s.SealRequest(&buf, s.NextSeq())
		cw, _ := seal.WriteRequestHead(rw, &seal.Request{Method: "GET", Scheme: "https", Path: "/api/customers"})
		cw.Close(nil)
		rw.Close()
		for _, i := range []int{buf.Len() - 1, buf.Len() - 20, buf.Len() / 2} {
			b := bytes.Clone(buf.Bytes())
			b[i] ^= 1
			resp, p := rawPost(t, f, sealing.PathGateway, seal.MediaTypeRequest, b)
			if resp.StatusCode != 400 || (p["type"] != sealing.ProblemDecrypt && p["type"] != sealing.ProblemMalformed) {
				t.Fatalf("flip %d: %d %v", i, resp.StatusCode, p)
			}
		}
		if f.up.calls.Load() != calls {
			t.Fatal("router was called")
		}
		// The untampered message was never accepted, so it still goes through.
		resp, _ := rawPost(t, f, sealing.PathGateway, seal.MediaTypeRequest, buf.Bytes())
		if resp.StatusCode != 200 || f.up.calls.Load() != calls+1 {
			t.Fatalf("genuine message refused after forgeries: %d", resp.StatusCode)
		}
	})
}

func TestUnknownKeyIs422(t *testing.T) {
	f := newFixture(t)
	resp, err := f.srv.Client().Get(f.srv.URL + sealing.PathKeys)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cs, err := seal.ParseKeyConfigs(b)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cs[0]
	cfg.ID += 77
	req, _, err := seal.NewSessionRequest(cfg, cfg.Algorithms[0].AEAD)
	if err != nil {
		t.Fatal(err)
	}
	r, p := rawPost(t, f, sealing.PathSession, seal.MediaTypeSession, req)
	if r.StatusCode != http.StatusUnprocessableEntity || p["type"] != sealing.ProblemKey {
		t.Fatalf("%d %v", r.StatusCode, p)
	}
}

func TestRotationIsTransparent(t *testing.T) {
	f := newFixture(t)
	get := func() {
		t.Helper()
		resp, err := f.hc.Get(f.srv.URL + "/api/customers")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	get()
	old := f.ep.Keys()[0].ID
	if _, err := f.ep.Rotate(); err != nil {
		t.Fatal(err)
	}
	get() // previous key inside its grace period
	f.now.Advance(21 * time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for f.ep.Keys()[1].State != seal.KeyRetired && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if k := f.ep.Keys(); k[1].ID != old || k[1].State != seal.KeyRetired {
		t.Fatalf("keys after grace: %+v", k)
	}
	// The client's session and cached keys are dead: 422, re-fetch, retry.
	f.tr.KeyTTL = time.Hour
	f.tr.RenewBefore = 0
	before := counterValue(f.m.SealRejects.WithLabelValues("retired_key"))
	get()
	if counterValue(f.m.SealRejects.WithLabelValues("retired_key")) != before+1 {
		t.Error("the retry did not come from a 422")
	}
}

func TestForcedAEADs(t *testing.T) {
	f := newFixture(t)
	for _, aead := range []seal.AEADID{seal.AEADAES128GCM, seal.AEADChaCha20Poly1305} {
		for _, kem := range []seal.KEMID{seal.KEMX25519, seal.KEMP256, seal.KEMMLKEM768X25519} {
			t.Run(aead.String()+"/"+kem.String(), func(t *testing.T) {
				tr := New(f.srv.Client().Transport)
				tr.AEAD, tr.KEMs = aead, []seal.KEMID{kem}
				resp, err := (&http.Client{Transport: tr}).Get(f.srv.URL + "/api/customers")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(b), customerIBAN) {
					t.Fatalf("body %q", b)
				}
				s, _ := tr.Session(context.Background(), f.srv.URL)
				if s.AEAD != aead || s.KEM != kem {
					t.Fatalf("session %v/%v", s.KEM, s.AEAD)
				}
			})
		}
	}
}

func TestProblemSurfacesAsError(t *testing.T) {
	f := newFixture(t)
	s, err := f.tr.Session(context.Background(), f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	s.Ticket()[20] ^= 1 // corrupt the ticket the transport will send
	_, err = f.hc.Get(f.srv.URL + "/api/customers")
	var perr *ProblemError
	if !errors.As(err, &perr) || perr.StatusCode != 400 || perr.Type != sealing.ProblemDecrypt {
		t.Fatalf("err = %v", err)
	}
}

func TestServerSideExpiryRenewsTransparently(t *testing.T) {
	f := newFixture(t)
	f.tr.Now = time.Now // the client does not see the server's clock jump
	resp, err := f.hc.Get(f.srv.URL + "/api/customers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	f.now.Advance(11 * time.Minute)
	resp, err = f.hc.Post(f.srv.URL+"/api/echo", "text/plain", strings.NewReader("again"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || counterValue(f.m.SealRejects.WithLabelValues("expired")) != 1 {
		t.Fatalf("status %d, expired rejects %v", resp.StatusCode, counterValue(f.m.SealRejects.WithLabelValues("expired")))
	}

	// Again with a body that cannot be re-read (no GetBody).
	f.now.Advance(11 * time.Minute)
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/api/echo", nil)
	req.Body, req.ContentLength = io.NopCloser(strings.NewReader("once only")), 9
	resp, err = f.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"len":9`) || counterValue(f.m.SealRejects.WithLabelValues("expired")) != 2 {
		t.Fatalf("retry without GetBody: %s", b)
	}
}

func TestCurl(t *testing.T) {
	f := newFixture(t)
	var stdout, stderr bytes.Buffer
	opts, err := ParseCurlArgs([]string{"-k", f.srv.URL + "/api/echo", "-d", `{"q":"Grace"}`, "-H", "Content-Type: application/json", "--show-wire", "-i"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if err := Curl(context.Background(), opts, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), `"ct":"application/json"`) || !strings.Contains(stdout.String(), "200 OK") {
		t.Fatalf("stdout: %s", stdout.String())
	}
	wire := stderr.String()
	for _, want := range []string{"> POST " + f.srv.URL + sealing.PathGateway, "< HTTP/", "application/sealgate-response", "body bytes"} {
		if !strings.Contains(wire, want) {
			t.Errorf("--show-wire lacks %q:\n%s", want, wire)
		}
	}
	if strings.Contains(wire, "Grace") || strings.Contains(wire, "/api/echo") {
		t.Errorf("--show-wire shows plaintext:\n%s", wire)
	}

	stdout.Reset()
	opts, _ = ParseCurlArgs([]string{"-k", f.srv.URL + "/api/customers"}, &stderr)
	if err := Curl(context.Background(), opts, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), customerIBAN) {
		t.Fatalf("GET: %v %s", err, stdout.String())
	}
	if _, err := ParseCurlArgs([]string{"-k"}, io.Discard); err == nil {
		t.Error("no URL accepted")
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// TestCPUProfileOrdersAEADs forces the CPU features the endpoint decides
// on and checks that a default client follows the server's first choice.
func TestCPUProfileOrdersAEADs(t *testing.T) {
	tests := []struct {
		name     string
		features cpu.Features
		force    string
		want     seal.AEADID
	}{
		{"aes-ni", cpu.Features{Arch: "amd64", AESNI: true, PCLMULQDQ: true}, "auto", seal.AEADAES128GCM},
		{"no aes hardware", cpu.Features{Arch: "amd64"}, "auto", seal.AEADChaCha20Poly1305},
		{"forced chacha on aes-ni", cpu.Features{Arch: "amd64", AESNI: true, PCLMULQDQ: true}, "chacha20-poly1305", seal.AEADChaCha20Poly1305},
		{"forced aes-256", cpu.Features{Arch: "arm64"}, "aes-256-gcm", seal.AEADAES256GCM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := cpu.NewProfile(tt.features, tt.force)
			if err != nil {
				t.Fatal(err)
			}
			ep, err := sealing.New(sealing.Options{Profile: p})
			if err != nil {
				t.Fatal(err)
			}
			defer ep.Close()
			up := &upstream{release: make(chan struct{})}
			srv := httptest.NewTLSServer(ep.Handler(up.router(t)))
			defer srv.Close()
			tr := New(srv.Client().Transport)
			resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/api/customers")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), customerIBAN) {
				t.Fatalf("body %q", b)
			}
			s, _ := tr.Session(context.Background(), srv.URL)
			if s.AEAD != tt.want {
				t.Fatalf("session AEAD %v, want %v", s.AEAD, tt.want)
			}
		})
	}
}
