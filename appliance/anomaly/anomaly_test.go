package anomaly

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sealgate/sealgate/appliance/alert"
	"github.com/sealgate/sealgate/appliance/audit"
	"github.com/sealgate/sealgate/appliance/blocker"
	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/appliance/reqctx"
)

type clock = testutil.Clock

func newClock() *clock { return testutil.NewClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)) }

// recorder is a Blocker that also forwards to a real List.
type recorder struct {
	list  *blocker.List
	mu    sync.Mutex
	calls []blockCall
}

type blockCall struct {
	prefix         netip.Prefix
	ttl            time.Duration
	reason, source string
}

func (r *recorder) Block(p netip.Prefix, ttl time.Duration, reason, source string) error {
	r.mu.Lock()
	r.calls = append(r.calls, blockCall{p, ttl, reason, source})
	r.mu.Unlock()
	return r.list.Block(p, ttl, reason, source)
}

type env struct {
	d     *Detector
	clock *clock
	m     *metrics.Metrics
	block *recorder
	audit string
	h     http.Handler
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	e := &env{clock: newClock(), m: metrics.New(), audit: filepath.Join(t.TempDir(), "audit.log")}
	e.block = &recorder{list: blocker.NewList(e.clock.Now)}
	al, err := audit.New(audit.Config{Path: e.audit}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	e.d, err = New(cfg, Deps{Metrics: e.m, Audit: al, Blocker: e.block, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.d.Close() })
	// The handler answers with the status in X-Status and reports DLP
	// findings from X-DLP, as the inner stages would.
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := reqctx.From(r.Context())
		if n := r.Header.Get("X-DLP"); n != "" {
			var k int
			fmt.Sscan(n, &k)
			info.AddDLP("card", k)
		}
		if id := r.Header.Get("X-Identity"); id != "" {
			info.SetIdentity(&reqctx.Identity{Method: "jwt", Subject: id})
		}
		status := http.StatusOK
		if s := r.Header.Get("X-Status"); s != "" {
			fmt.Sscan(s, &status)
		}
		w.WriteHeader(status)
	})
	e.h = e.d.Observe("customers")(inner)
	return e
}

type req struct {
	client, path, identity string
	status, dlp            int
}

func (e *env) do(r req) {
	if r.path == "" {
		r.path = "/api/customers"
	}
	hr := httptest.NewRequest("GET", r.path, nil)
	hr.RemoteAddr = netip.AddrPortFrom(netip.MustParseAddr(r.client), 40000).String()
	info := &reqctx.Info{ID: "x", Route: "customers", Client: netip.MustParseAddr(r.client)}
	if r.status != 0 {
		hr.Header.Set("X-Status", fmt.Sprint(r.status))
	}
	if r.dlp != 0 {
		hr.Header.Set("X-DLP", fmt.Sprint(r.dlp))
	}
	if r.identity != "" {
		hr.Header.Set("X-Identity", r.identity)
	}
	e.h.ServeHTTP(httptest.NewRecorder(), hr.WithContext(reqctx.With(hr.Context(), info)))
}

func (e *env) alerts(t *testing.T) []map[string]any {
	t.Helper()
	f, err := os.Open(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if m["kind"] == audit.KindAlert {
			out = append(out, m)
		}
	}
	return out
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func clientN(i int) string { return fmt.Sprintf("10.0.%d.%d", i/250, i%250+1) }

var base = Config{Window: "1m", SurgeFactor: 5, MinRequests: 50, AuthFailures: 10, Enumeration: 100, DLPSpike: 20, Cooldown: "5m"}

func TestSurge(t *testing.T) {
	tests := []struct {
		name       string
		baseline   func(e *env) // one window of normal traffic
		surge      func(e *env)
		kind       string
		wantClient string
	}{
		{
			name: "route surge from many new clients",
			baseline: func(e *env) {
				for i := range 20 {
					e.do(req{client: clientN(i)})
				}
			},
			surge: func(e *env) {
				for i := range 200 {
					e.do(req{client: clientN(1000 + i)})
				}
			},
			kind: KindSurge,
		},
		{
			name: "one known client surges",
			baseline: func(e *env) {
				for i := range 100 {
					e.do(req{client: clientN(i)})
				}
				e.do(req{client: "192.0.2.9"})
				e.do(req{client: "192.0.2.9"})
			},
			surge: func(e *env) {
				for range 80 {
					e.do(req{client: "192.0.2.9"})
				}
			},
			kind:       KindSurge,
			wantClient: "192.0.2.9",
		},
		{
			name: "error surge",
			baseline: func(e *env) {
				for i := range 200 {
					e.do(req{client: clientN(i % 50)})
				}
			},
			surge: func(e *env) {
				for i := range 100 {
					e.do(req{client: clientN(1000 + i), status: 503})
				}
			},
			kind: KindErrorSurge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{Window: "1m", SurgeFactor: 5, MinRequests: 50, Cooldown: "5m"})
			for range 4 {
				tt.baseline(e)
				e.clock.Advance(time.Minute)
			}
			if got := e.alerts(t); len(got) != 0 {
				t.Fatalf("steady traffic raised %v", got)
			}
			tt.surge(e)
			got := e.alerts(t)
			if len(got) != 1 {
				t.Fatalf("got %d alerts, want exactly 1: %v", len(got), got)
			}
			if got[0]["alert_kind"] != tt.kind || got[0]["route"] != "customers" {
				t.Errorf("alert %v", got[0])
			}
			if c, _ := got[0]["client"].(string); c != tt.wantClient {
				t.Errorf("client %q, want %q", c, tt.wantClient)
			}
			if n := counterValue(e.m.Alerts.WithLabelValues(tt.kind)); n != 1 {
				t.Errorf("alerts_total{%s} = %v", tt.kind, n)
			}
			// The surge continuing in the next window stays quiet (cooldown).
			e.clock.Advance(time.Minute)
			tt.surge(e)
			if got := e.alerts(t); len(got) != 1 {
				t.Errorf("surge within the cooldown raised again: %v", got)
			}
		})
	}
}

func TestAuthFailuresBlockAndExpire(t *testing.T) {
	cfg := base
	cfg.Block = map[string]string{KindAuthFailures: "15m"}
	e := newEnv(t, cfg)
	for range 9 {
		e.do(req{client: "198.51.100.4", status: 401})
	}
	e.do(req{client: "198.51.100.5", status: 401}) // another source does not add up
	if got := e.alerts(t); len(got) != 0 {
		t.Fatalf("below threshold: %v", got)
	}
	for range 30 {
		e.do(req{client: "198.51.100.4", status: 401})
	}
	got := e.alerts(t)
	if len(got) != 1 || got[0]["alert_kind"] != KindAuthFailures || got[0]["client"] != "198.51.100.4" {
		t.Fatalf("alerts %v, want one auth_failures for 198.51.100.4", got)
	}
	want := blockCall{netip.MustParsePrefix("198.51.100.4/32"), 15 * time.Minute, "alert:auth_failures", "anomaly"}
	if len(e.block.calls) != 1 || e.block.calls[0] != want {
		t.Fatalf("block calls %+v, want %+v", e.block.calls, want)
	}
	if _, blocked := e.block.list.Blocked(netip.MustParseAddr("198.51.100.4")); !blocked {
		t.Fatal("source not in the blocklist")
	}
	entries := e.block.list.Entries()
	if len(entries) != 1 || entries[0].Reason != "alert:auth_failures" {
		t.Fatalf("entries %+v", entries)
	}
	e.clock.Advance(15*time.Minute + time.Second)
	if _, blocked := e.block.list.Blocked(netip.MustParseAddr("198.51.100.4")); blocked {
		t.Fatal("block did not expire")
	}
	if n := len(e.block.list.Entries()); n != 0 {
		t.Fatalf("%d entries after expiry", n)
	}
	// After the cooldown a new burst alerts and blocks again.
	for range 10 {
		e.do(req{client: "198.51.100.4", status: 401})
	}
	if got := e.alerts(t); len(got) != 2 || len(e.block.calls) != 2 {
		t.Fatalf("second burst: %d alerts, %d blocks", len(got), len(e.block.calls))
	}
	if s := e.d.Stats(); s.Blocks != 2 || s.Raised != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestAuthFailuresSpreadOverWindows(t *testing.T) {
	e := newEnv(t, base)
	for range 5 {
		for range 6 { // 6 per minute, threshold 10 per minute
			e.do(req{client: "198.51.100.4", status: 401})
		}
		e.clock.Advance(time.Minute)
	}
	if got := e.alerts(t); len(got) != 0 {
		t.Fatalf("slow failures alerted: %v", got)
	}
}

func TestEnumeration(t *testing.T) {
	tests := []struct {
		name       string
		client     string
		identity   string
		paths      func(i int) string
		n          int
		alerts     int
		wantPrefix string
	}{
		{"identity walks ids", "203.0.113.8", "partner-a", func(i int) string { return fmt.Sprintf("/api/customers/%d", i) }, 150, 1, "203.0.113.8/32"},
		{"anonymous ipv6 walks ids", "2001:db8:1:2::77", "", func(i int) string { return fmt.Sprintf("/api/customers/%d", i) }, 150, 1, "2001:db8:1:2::/64"},
		{"same few objects repeatedly", "203.0.113.9", "partner-b", func(i int) string { return fmt.Sprintf("/api/customers/%d", i%5) }, 500, 0, ""},
		{"just under the threshold", "203.0.113.10", "partner-c", func(i int) string { return fmt.Sprintf("/api/customers/%d", i) }, 99, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.Block = map[string]string{KindEnumeration: "1h"}
			e := newEnv(t, cfg)
			for i := range tt.n {
				e.do(req{client: tt.client, identity: tt.identity, path: tt.paths(i)})
			}
			got := e.alerts(t)
			if len(got) != tt.alerts {
				t.Fatalf("got %d alerts, want %d: %v", len(got), tt.alerts, got)
			}
			if tt.alerts == 0 {
				if len(e.block.calls) != 0 {
					t.Fatalf("blocked without an alert: %+v", e.block.calls)
				}
				return
			}
			if got[0]["alert_kind"] != KindEnumeration {
				t.Errorf("alert %v", got[0])
			}
			if tt.identity != "" && got[0]["identity"] != tt.identity {
				t.Errorf("identity %v", got[0]["identity"])
			}
			if len(e.block.calls) != 1 || e.block.calls[0].prefix.String() != tt.wantPrefix ||
				e.block.calls[0].ttl != time.Hour || e.block.calls[0].reason != "alert:enumeration" {
				t.Fatalf("block calls %+v", e.block.calls)
			}
			e.clock.Advance(time.Hour)
			if n := len(e.block.list.Entries()); n != 0 {
				t.Errorf("block did not expire after its TTL")
			}
		})
	}
}

func TestDLPSpike(t *testing.T) {
	e := newEnv(t, base)
	for range 3 {
		e.do(req{client: "192.0.2.50", dlp: 6}) // 18 findings
	}
	if got := e.alerts(t); len(got) != 0 {
		t.Fatalf("below threshold: %v", got)
	}
	for range 5 {
		e.do(req{client: "192.0.2.50", dlp: 6})
	}
	got := e.alerts(t)
	if len(got) != 1 || got[0]["alert_kind"] != KindDLPSpike || got[0]["client"] != "192.0.2.50" {
		t.Fatalf("alerts %v", got)
	}
}

func TestRaiseCooldownAndExempt(t *testing.T) {
	cfg := Config{Cooldown: "5m", Block: map[string]string{"waf_block": "10m"}, Exempt: []string{"192.0.2.0/24", "2001:db8::1"}}
	e := newEnv(t, cfg)
	a := alert.Alert{Kind: "waf_block", Route: "orders", Client: netip.MustParseAddr("198.51.100.1"), Detail: "rules 942100"}
	e.d.Raise(a)
	e.d.Raise(a)
	e.clock.Advance(4 * time.Minute)
	e.d.Raise(a)
	b := a
	b.Client = netip.MustParseAddr("198.51.100.2")
	e.d.Raise(b)
	ex := a
	ex.Client = netip.MustParseAddr("192.0.2.77")
	e.d.Raise(ex)
	ex6 := a
	ex6.Client = netip.MustParseAddr("2001:db8::1")
	e.d.Raise(ex6)
	e.clock.Advance(2 * time.Minute)
	e.d.Raise(a) // cooldown over
	if n := counterValue(e.m.Alerts.WithLabelValues("waf_block")); n != 5 {
		t.Errorf("alerts_total{waf_block} = %v, want 5", n)
	}
	if s := e.d.Stats(); s.Suppressed != 2 || s.Raised != 5 || s.Blocks != 3 {
		t.Errorf("stats %+v", s)
	}
	for _, c := range e.block.calls {
		if c.prefix.Contains(ex.Client) || c.prefix.Contains(ex6.Client) {
			t.Errorf("exempt source blocked: %+v", c)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		deps Deps
		want string
	}{
		{"window", Config{Window: "soon"}, Deps{}, "anomaly.window"},
		{"window negative", Config{Window: "-1m"}, Deps{}, "anomaly.window"},
		{"cooldown", Config{Cooldown: "5"}, Deps{}, "anomaly.cooldown"},
		{"surge factor", Config{SurgeFactor: 0.5}, Deps{}, "anomaly.surge_factor"},
		{"auth failures", Config{AuthFailures: -1}, Deps{}, "anomaly.auth_failures"},
		{"enumeration huge", Config{Enumeration: 1 << 20}, Deps{}, "anomaly.enumeration"},
		{"block kind", Config{Block: map[string]string{"auth_failure": "15m"}}, Deps{Blocker: blocker.NewList(nil)}, "anomaly.block.auth_failure: unknown alert kind"},
		{"block ttl", Config{Block: map[string]string{"enumeration": "forever"}}, Deps{Blocker: blocker.NewList(nil)}, "anomaly.block.enumeration"},
		{"block without blocker", Config{Block: map[string]string{"enumeration": "1h"}}, Deps{}, "anomaly.block: automatic blocking configured but no blocklist"},
		{"exempt", Config{Exempt: []string{"10.0.0.0/33"}}, Deps{}, "anomaly.exempt[0]"},
		{"webhook scheme", Config{Webhook: Webhook{URL: "ftp://x/y"}}, Deps{}, "anomaly.webhook.url"},
		{"webhook relative", Config{Webhook: Webhook{URL: "/hook"}}, Deps{}, "anomaly.webhook.url"},
		{"webhook credentials", Config{Webhook: Webhook{URL: "https://u:p@hooks.example/x"}}, Deps{}, "anomaly.webhook.url"},
		{"webhook no url", Config{Webhook: Webhook{Queue: 10}}, Deps{}, "anomaly.webhook.url: required"},
		{"webhook timeout", Config{Webhook: Webhook{URL: "https://hooks.example/x", Timeout: "5"}}, Deps{}, "anomaly.webhook.timeout"},
		{"webhook queue", Config{Webhook: Webhook{URL: "https://hooks.example/x", Queue: -1}}, Deps{}, "anomaly.webhook.queue"},
		{"webhook retries", Config{Webhook: Webhook{URL: "https://hooks.example/x", Retries: 99}}, Deps{}, "anomaly.webhook.retries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(tt.cfg, tt.deps)
			if err == nil {
				d.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestObserveOffReturnsNext(t *testing.T) {
	d, err := New(Config{}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	next := http.Handler(&struct{ http.Handler }{http.NotFoundHandler()})
	if got := d.Observe("r")(next); got != next {
		t.Fatal("with every detector off Observe must return next")
	}
	// The sink still works without any detector.
	d.Raise(alert.Alert{Kind: "dlp_block", Route: "r"})
	if d.Stats().Raised != 1 {
		t.Fatal("alert not raised")
	}
}

func TestMemoryBounded(t *testing.T) {
	cfg := base
	cfg.MaxTracked = 16
	e := newEnv(t, cfg)
	for i := range 500 {
		e.do(req{client: clientN(i), identity: fmt.Sprint("user-", i), path: fmt.Sprint("/api/customers/", i), status: 401, dlp: 1})
	}
	e.d.mu.Lock()
	defer e.d.mu.Unlock()
	for name, n := range map[string]int{"rates": e.d.rates.len(), "auth": e.d.auth.len(), "enum": e.d.enum.len(), "dlp": e.d.dlp.len()} {
		if n > 16 {
			t.Errorf("%s table holds %d entries, bound is 16", name, n)
		}
	}
}

func TestStatusWriterKeepsCapabilities(t *testing.T) {
	d, err := New(Config{AuthFailures: 3}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var flushErr error
	h := d.Observe("r")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		flushErr = http.NewResponseController(w).Flush()
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if flushErr != nil {
		t.Fatalf("Flush through the observer: %v", flushErr)
	}
}

func BenchmarkObserve(b *testing.B) {
	d, err := New(base, Deps{Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	h := d.Observe("customers")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	r := httptest.NewRequest("GET", "/api/customers/42", nil)
	info := &reqctx.Info{Client: netip.MustParseAddr("192.0.2.1")}
	info.SetIdentity(&reqctx.Identity{Method: "jwt", Subject: "alice"})
	r = r.WithContext(reqctx.With(r.Context(), info))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
