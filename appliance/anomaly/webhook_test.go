package anomaly

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/appliance/alert"
)

// hookServer answers with the statuses in script, then 200, and records
// every body it received.
type hookServer struct {
	mu       sync.Mutex
	script   []int
	bodies   [][]byte
	attempts int
	got      chan struct{} // receives after every request is recorded
	hold     chan struct{} // when non-nil, requests wait for it to close
	srv      *httptest.Server
}

func newHookServer(t *testing.T, script ...int) *hookServer {
	h := &hookServer{script: script, got: make(chan struct{}, 100)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.attempts++
		h.bodies = append(h.bodies, b)
		status := http.StatusOK
		if len(h.script) > 0 {
			status, h.script = h.script[0], h.script[1:]
		}
		hold := h.hold
		h.mu.Unlock()
		h.got <- struct{}{}
		if hold != nil {
			<-hold
		}
		if r.Header.Get("Content-Type") != "application/json" {
			status = http.StatusUnsupportedMediaType
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookServer) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-h.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("webhook not called")
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWebhookDeliveryAndRetry(t *testing.T) {
	tests := []struct {
		name     string
		script   []int
		retries  int
		attempts int
		sent     uint64
		failed   uint64
	}{
		{"first try", nil, 3, 1, 1, 0},
		{"retries on 500", []int{500, 503}, 3, 3, 1, 0},
		{"retries on 429", []int{429}, 3, 2, 1, 0},
		{"gives up after retries", []int{500, 500, 500}, 2, 3, 0, 1},
		{"no retry on 400", []int{400}, 3, 1, 0, 1},
		{"never retry", []int{500}, -1, 1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := newHookServer(t, tt.script...)
			d, err := New(Config{Webhook: Webhook{URL: hs.srv.URL + "/hooks/sealgate", Timeout: "2s", Backoff: "5ms", Retries: tt.retries}},
				Deps{HTTPClient: hs.srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			a := alert.Alert{Time: time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC), Kind: KindEnumeration, Route: "customers",
				Client: netip.MustParseAddr("203.0.113.8"), Identity: "partner-a", Detail: "100 distinct paths read within 1m0s"}
			d.Raise(a)
			hs.wait(t, tt.attempts)
			waitFor(t, "delivery outcome", func() bool { s := d.Stats(); return s.WebhookSent+s.WebhookFailed == 1 })
			s := d.Stats()
			if s.WebhookSent != tt.sent || s.WebhookFailed != tt.failed {
				t.Errorf("stats %+v", s)
			}
			hs.mu.Lock()
			defer hs.mu.Unlock()
			if hs.attempts != tt.attempts {
				t.Errorf("%d attempts, want %d", hs.attempts, tt.attempts)
			}
			var got alert.Alert
			if err := json.Unmarshal(hs.bodies[0], &got); err != nil {
				t.Fatalf("body %q: %v", hs.bodies[0], err)
			}
			if got != a {
				t.Errorf("webhook got %+v, want %+v", got, a)
			}
		})
	}
}

func TestWebhookQueueFull(t *testing.T) {
	hs := newHookServer(t)
	hs.hold = make(chan struct{})
	d, err := New(Config{Webhook: Webhook{URL: hs.srv.URL, Queue: 2}}, Deps{HTTPClient: hs.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	raise := func(i int) {
		d.Raise(alert.Alert{Kind: "dlp_block", Route: "r", Client: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})})
	}
	raise(1)
	hs.wait(t, 1) // one POST in flight, held by the server
	for i := 2; i <= 10; i++ {
		raise(i) // two queue, seven are dropped
	}
	if s := d.Stats(); s.WebhookDropped != 7 || s.Raised != 10 {
		t.Fatalf("stats %+v, want 7 dropped of 10 raised", s)
	}
	close(hs.hold)
	waitFor(t, "queued alerts", func() bool { return d.Stats().WebhookSent == 3 })
	d.Close()
	if s := d.Stats(); s.WebhookSent != 3 || s.WebhookDropped != 7 {
		t.Fatalf("stats %+v", s)
	}
}

func TestWebhookCloseDuringRetry(t *testing.T) {
	hs := newHookServer(t, 500, 500, 500, 500)
	d, err := New(Config{Webhook: Webhook{URL: hs.srv.URL, Backoff: "1m", Retries: 5}}, Deps{HTTPClient: hs.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	d.Raise(alert.Alert{Kind: "surge", Route: "r"})
	hs.wait(t, 1)
	done := make(chan struct{})
	go func() { d.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for the retry backoff")
	}
	if s := d.Stats(); s.WebhookFailed != 1 {
		t.Errorf("stats %+v", s)
	}
}
