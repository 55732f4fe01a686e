package sealing

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/crypto/seal"
)

func newEndpoint(t *testing.T, dir string) *Endpoint {
	t.Helper()
	ep, err := New(Options{StateDir: dir, Metrics: metrics.New(), TicketLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	return ep
}

func do(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func openSession(t *testing.T, h http.Handler, kem seal.KEMID) *seal.ClientSession {
	t.Helper()
	rec := do(h, httptest.NewRequest(http.MethodGet, PathKeys, nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != seal.MediaTypeKeys {
		t.Fatalf("keys: %d %v", rec.Code, rec.Header())
	}
	cs, err := seal.ParseKeyConfigs(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.KEM != kem {
			continue
		}
		body, pending, err := seal.NewSessionRequest(c, c.Algorithms[0].AEAD)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodPost, PathSession, bytes.NewReader(body))
		r.Header.Set("Content-Type", seal.MediaTypeSession)
		rec := do(h, r)
		if rec.Code != 200 {
			t.Fatalf("session: %d %s", rec.Code, rec.Body)
		}
		s, err := pending.Finish(rec.Body.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Fatalf("no %v key", kem)
	return nil
}

func sealedRequest(t *testing.T, s *seal.ClientSession, seq uint64, head *seal.Request, body []byte) *http.Request {
	t.Helper()
	var buf bytes.Buffer
	rw, err := s.SealRequest(&buf, seq)
	if err != nil {
		t.Fatal(err)
	}
	cw, err := seal.WriteRequestHead(rw, head)
	if err != nil {
		t.Fatal(err)
	}
	cw.Write(body)
	cw.Close(nil)
	rw.Close()
	r := httptest.NewRequest(http.MethodPost, PathGateway, &buf)
	r.Header.Set("Content-Type", seal.MediaTypeRequest)
	return r
}

func unseal(t *testing.T, s *seal.ClientSession, seq uint64, rec *httptest.ResponseRecorder) (*seal.Response, []byte) {
	t.Helper()
	if rec.Code != 200 || rec.Header().Get("Content-Type") != seal.MediaTypeResponse {
		t.Fatalf("gateway: %d %s", rec.Code, rec.Body)
	}
	b, err := io.ReadAll(s.OpenResponse(bytes.NewReader(rec.Body.Bytes()), seq))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := seal.DecodeResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	return resp, resp.Content
}

func TestPassThrough(t *testing.T) {
	ep := newEndpoint(t, "")
	var seen *http.Request
	h := ep.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r
		w.WriteHeader(http.StatusTeapot)
	}))
	for _, path := range []string{"/", "/api/x", "/.well-known/sealgate", "/.well-known/sealgate/other", "/.well-known/other"} {
		t.Run(path, func(t *testing.T) {
			seen = nil
			r := httptest.NewRequest(http.MethodGet, path, nil)
			if rec := do(h, r); rec.Code != http.StatusTeapot || seen != r || IsSealed(seen) {
				t.Fatalf("code %d, passed unchanged: %v", rec.Code, seen == r)
			}
		})
	}
}

func TestEndpointRefusals(t *testing.T) {
	ep := newEndpoint(t, "")
	called := false
	h := ep.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	tests := []struct {
		name, method, path, ct string
		body                   string
		code                   int
	}{
		{"keys by POST", http.MethodPost, PathKeys, "", "", http.StatusMethodNotAllowed},
		{"session by GET", http.MethodGet, PathSession, "", "", http.StatusMethodNotAllowed},
		{"session wrong type", http.MethodPost, PathSession, "application/json", "{}", http.StatusUnsupportedMediaType},
		{"session garbage", http.MethodPost, PathSession, seal.MediaTypeSession, "xx", http.StatusBadRequest},
		{"session oversized", http.MethodPost, PathSession, seal.MediaTypeSession, strings.Repeat("x", 5000), http.StatusBadRequest},
		{"gateway by GET", http.MethodGet, PathGateway, "", "", http.StatusMethodNotAllowed},
		{"gateway wrong type", http.MethodPost, PathGateway, "text/plain", "x", http.StatusUnsupportedMediaType},
		{"gateway empty", http.MethodPost, PathGateway, seal.MediaTypeRequest, "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.ct != "" {
				r.Header.Set("Content-Type", tt.ct)
			}
			rec := do(h, r)
			if rec.Code != tt.code || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			}
			if called {
				t.Fatal("router called")
			}
		})
	}
}

func TestInnerRequest(t *testing.T) {
	ep := newEndpoint(t, "")
	var inner *http.Request
	var innerBody []byte
	h := ep.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner = r
		innerBody, _ = io.ReadAll(r.Body)
		w.Header().Set("X-Upstream", "yes")
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte("created"))
		w.Header().Set("X-Sum", "42")
	}))
	s := openSession(t, h, seal.KEMX25519)
	head := &seal.Request{Method: "PUT", Scheme: "https", Authority: "api.example.com", Path: "/v1/items/7?force=1",
		Header: []seal.Field{{Name: "content-type", Value: "application/json"}, {Name: "x-a", Value: "1"}, {Name: "x-a", Value: "2"},
			{Name: "content-length", Value: "11"}}}
	r := sealedRequest(t, s, 1, head, []byte(`{"qty": 3}`+"\n"))
	r.RemoteAddr = "192.0.2.7:5555"
	resp, body := unseal(t, s, 1, do(h, r))
	if inner.Method != "PUT" || inner.Host != "api.example.com" || inner.URL.Path != "/v1/items/7" || inner.URL.RawQuery != "force=1" ||
		inner.RequestURI != "/v1/items/7?force=1" || inner.RemoteAddr != "192.0.2.7:5555" || !IsSealed(inner) {
		t.Fatalf("inner request %+v", inner)
	}
	if got := inner.Header.Values("X-A"); len(got) != 2 || inner.Header.Get("Content-Type") != "application/json" || inner.ContentLength != 11 {
		t.Fatalf("inner headers %v, length %d", inner.Header, inner.ContentLength)
	}
	if string(innerBody) != `{"qty": 3}`+"\n" {
		t.Fatalf("inner body %q", innerBody)
	}
	if resp.Status != http.StatusCreated || string(body) != "created" {
		t.Fatalf("response %d %q", resp.Status, body)
	}
	var hasUpstream, hasSum bool
	for _, f := range resp.Header {
		hasUpstream = hasUpstream || (f.Name == "x-upstream" && f.Value == "yes")
	}
	for _, f := range resp.Trailer {
		hasSum = hasSum || (f.Name == "x-sum" && f.Value == "42")
	}
	if !hasUpstream || !hasSum {
		t.Fatalf("response header %v trailer %v", resp.Header, resp.Trailer)
	}

	t.Run("empty body is NoBody", func(t *testing.T) {
		r := sealedRequest(t, s, 2, &seal.Request{Method: "GET", Scheme: "https", Authority: "a", Path: "/"}, nil)
		unseal(t, s, 2, do(h, r))
		if inner.Body != http.NoBody || inner.ContentLength != 0 {
			t.Fatalf("body %T length %d", inner.Body, inner.ContentLength)
		}
	})
	t.Run("connection-specific field refused", func(t *testing.T) {
		inner = nil
		r := sealedRequest(t, s, 3, &seal.Request{Method: "GET", Scheme: "https", Authority: "a", Path: "/",
			Header: []seal.Field{{Name: "transfer-encoding", Value: "chunked"}}}, nil)
		if rec := do(h, r); rec.Code != http.StatusBadRequest || inner != nil {
			t.Fatalf("%d, router called: %v", rec.Code, inner != nil)
		}
	})
	t.Run("content-length mismatch fails the body read", func(t *testing.T) {
		r := sealedRequest(t, s, 4, &seal.Request{Method: "POST", Scheme: "https", Authority: "a", Path: "/",
			Header: []seal.Field{{Name: "content-length", Value: "100"}}}, []byte("short"))
		var readErr error
		h := ep.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, readErr = io.ReadAll(r.Body)
		}))
		do(h, r)
		if readErr == nil {
			t.Fatal("short body read without error")
		}
	})
}

func TestRejectReasonsAreBounded(t *testing.T) {
	want := []string{"unknown_key", "retired_key", "replay", "stale", "expired", "decrypt", "unsupported", "capacity", "malformed"}
	got := RejectReasons()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("reasons %v", got)
	}
}

func TestStateDirAndRestart(t *testing.T) {
	dir := t.TempDir()
	ep, err := New(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	h := ep.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	s := openSession(t, h, seal.KEMX25519)
	unseal(t, s, 1, do(h, sealedRequest(t, s, 1, &seal.Request{Method: "GET", Scheme: "https", Authority: "a", Path: "/"}, nil)))
	keys, _ := json.Marshal(ep.Keys())
	if err := ep.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ep.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "seal"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("seal dir: %v %v", fi, err)
	}
	files, _ := os.ReadDir(filepath.Join(dir, "seal"))
	for _, f := range files {
		fi, _ := f.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %04o", f.Name(), fi.Mode().Perm())
		}
	}
	ep2 := newEndpoint(t, dir)
	keys2, _ := json.Marshal(ep2.Keys())
	if !bytes.Equal(keys, keys2) {
		t.Fatalf("keys changed across restart:\n%s\n%s", keys, keys2)
	}
	h2 := ep2.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	if rec := do(h2, sealedRequest(t, s, 1, &seal.Request{Method: "GET", Scheme: "https", Authority: "a", Path: "/"}, nil)); rec.Code != 400 {
		t.Fatalf("replay across restart: %d", rec.Code)
	}
	_, body := unseal(t, s, 2, do(h2, sealedRequest(t, s, 2, &seal.Request{Method: "GET", Scheme: "https", Authority: "a", Path: "/"}, nil)))
	if string(body) != "ok" {
		t.Fatalf("session did not survive restart: %q", body)
	}
}

// FuzzGateway feeds arbitrary bodies to the gateway: no panic, and nothing
// unauthenticated reaches the router.
func FuzzGateway(f *testing.F) {
	ep, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer ep.Close()
	called := 0
	h := ep.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called++ }))
	f.Add([]byte{1, 0, 29})
	f.Add(bytes.Repeat([]byte{1}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := httptest.NewRequest(http.MethodPost, PathGateway, bytes.NewReader(b))
		r.Header.Set("Content-Type", seal.MediaTypeRequest)
		rec := do(h, r)
		if called != 0 {
			t.Fatalf("router reached with forged body (status %d)", rec.Code)
		}
	})
}

func TestKeyMaterialNeverLogged(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ep, err := New(Options{StateDir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h := ep.Handler(http.NotFoundHandler())
	s := openSession(t, h, seal.KEMX25519)
	do(h, sealedRequest(t, s, 1, &seal.Request{Method: "GET", Scheme: "https", Authority: "a", Path: "/"}, nil))
	do(h, sealedRequest(t, s, 1, &seal.Request{Method: "GET", Scheme: "https", Authority: "a", Path: "/"}, nil)) // replay, logged
	if _, err := ep.Rotate(); err != nil {
		t.Fatal(err)
	}
	ep.Close()
	raw, err := os.ReadFile(filepath.Join(dir, "seal", "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Generations []struct {
			Keys []struct {
				Private []byte `json:"private"`
			} `json:"keys"`
		} `json:"generations"`
		TicketKeys []struct {
			Key []byte `json:"key"`
		} `json:"ticket_keys"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	var secrets [][]byte
	for _, g := range st.Generations {
		for _, k := range g.Keys {
			secrets = append(secrets, k.Private)
		}
	}
	for _, k := range st.TicketKeys {
		secrets = append(secrets, k.Key)
	}
	if len(secrets) < 4 || !strings.Contains(logs.String(), "sealed message refused") {
		t.Fatalf("test setup: %d secrets, logs:\n%s", len(secrets), logs.String())
	}
	for _, sec := range secrets {
		for _, enc := range []string{hex.EncodeToString(sec), base64.StdEncoding.EncodeToString(sec), string(sec)} {
			if strings.Contains(logs.String(), enc) {
				t.Fatal("key material in the log")
			}
		}
	}
}
