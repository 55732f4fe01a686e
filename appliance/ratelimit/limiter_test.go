package ratelimit

import (
	"fmt"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"
)

// clock is a fake time source safe for concurrent use.
type clock = testutil.Clock

func newClock() *clock { return testutil.NewClock(time.Unix(1_700_000_000, 0)) }

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" means valid
	}{
		{"valid", Config{Rate: "10/s", Burst: 20}, ""},
		{"valid client ip", Config{Key: "client_ip", Rate: "600/m"}, ""},
		{"valid escalate", Config{Rate: "1/s", Escalate: &Escalate{After: 5, Within: "1m", BlockTTL: "10m"}}, ""},
		{"missing rate", Config{Burst: 3}, "rate_limit.rate: missing"},
		{"bad rate", Config{Rate: "ten per second"}, "rate_limit.rate:"},
		{"zero rate", Config{Rate: "0/s"}, "rate_limit.rate:"},
		{"bad unit", Config{Rate: "10/fortnight"}, "rate_limit.rate:"},
		{"bad key", Config{Key: "header", Rate: "1/s"}, "rate_limit.key:"},
		{"negative burst", Config{Rate: "1/s", Burst: -1}, "rate_limit.burst:"},
		{"negative max keys", Config{Rate: "1/s", MaxKeys: -5}, "rate_limit.max_keys:"},
		{"escalate after", Config{Rate: "1/s", Escalate: &Escalate{Within: "1m", BlockTTL: "1m"}}, "rate_limit.escalate.after:"},
		{"escalate within", Config{Rate: "1/s", Escalate: &Escalate{After: 1, Within: "soon", BlockTTL: "1m"}}, "rate_limit.escalate.within:"},
		{"escalate ttl", Config{Rate: "1/s", Escalate: &Escalate{After: 1, Within: "1m", BlockTTL: "-1m"}}, "rate_limit.escalate.block_ttl:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, nil)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New: error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{"10/s", 10}, {"600/m", 10}, {"3600/h", 1}, {"5/250ms", 20}, {" 2 / s ", 2}, {"0.5/s", 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParseRate(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestBurstThenRefill(t *testing.T) {
	c := newClock()
	l, err := New(Config{Rate: "5/s", Burst: 10}, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if r := l.Allow("alice"); !r.Allowed || r.Remaining != 9-i {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i, r, 9-i)
		}
	}
	r := l.Allow("alice")
	if r.Allowed || r.RetryAfter != 200*time.Millisecond {
		t.Fatalf("11th request: %+v, want refused, retry after 200ms", r)
	}
	if other := l.Allow("bob"); !other.Allowed {
		t.Fatal("bob refused because alice is over her limit")
	}
	c.Advance(199 * time.Millisecond)
	if r := l.Allow("alice"); r.Allowed {
		t.Fatal("allowed before a token refilled")
	}
	c.Advance(time.Millisecond)
	if r := l.Allow("alice"); !r.Allowed {
		t.Fatalf("refused after 200ms refill: %+v", r)
	}
	c.Advance(time.Hour)
	for i := range 10 {
		if r := l.Allow("alice"); !r.Allowed {
			t.Fatalf("after a long pause, request %d refused: bucket did not refill to burst", i)
		}
	}
	if r := l.Allow("alice"); r.Allowed {
		t.Fatal("bucket refilled beyond burst")
	}
}

func TestHeaders(t *testing.T) {
	c := newClock()
	l, err := New(Config{Rate: "5/s", Burst: 10}, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	for range 11 {
		r = l.Allow("k")
	}
	h := http.Header{}
	l.SetHeaders(h, r)
	want := map[string]string{
		"RateLimit-Policy": `"default";q=10;w=2`,
		"RateLimit":        `"default";r=0;t=2`,
		"Retry-After":      "1",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	h = http.Header{}
	l.SetHeaders(h, l.Allow("fresh"))
	if h.Get("Retry-After") != "" || h.Get("RateLimit") != `"default";r=9;t=1` {
		t.Errorf("allowed request headers: %v", h)
	}
}

// TestFloodKeepsKnownClients fills the table many times over with one-off
// keys and checks that clients seen before keep their buckets: a regular
// client is still served and a throttled one is still throttled (flooding
// must not be a way to reset one's own bucket).
func TestFloodKeepsKnownClients(t *testing.T) {
	for _, maxKeys := range []int{100, 4096} {
		t.Run(fmt.Sprint(maxKeys), func(t *testing.T) {
			c := newClock()
			l, err := New(Config{Rate: "1/m", Burst: 3, MaxKeys: maxKeys}, c.Now)
			if err != nil {
				t.Fatal(err)
			}
			l.Allow("regular")
			l.Allow("regular")
			for range 3 {
				l.Allow("throttled")
			}
			if l.Allow("throttled").Allowed {
				t.Fatal("throttled client not throttled before the flood")
			}
			for i := range 20 * maxKeys {
				if !l.Allow(fmt.Sprintf("flood-%d", i)).Allowed {
					t.Fatalf("new key %d refused: a full table must not refuse newcomers", i)
				}
			}
			st := l.Stats()
			if st.Keys > maxKeys || st.Capacity > maxKeys {
				t.Fatalf("table holds %d keys (capacity %d), max_keys is %d", st.Keys, st.Capacity, maxKeys)
			}
			if st.Evictions == 0 {
				t.Fatal("no evictions after a flood of 20x capacity")
			}
			if r := l.Allow("regular"); !r.Allowed || r.Remaining != 0 {
				t.Fatalf("regular client after flood: %+v, want allowed with its own bucket (0 left)", r)
			}
			if l.Allow("throttled").Allowed {
				t.Fatal("throttled client's bucket was reset by the flood")
			}
		})
	}
}

func TestEscalation(t *testing.T) {
	c := newClock()
	l, err := New(Config{Rate: "1/s", Burst: 1, Escalate: &Escalate{After: 3, Within: "10s", BlockTTL: "1m"}}, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	l.Allow("k")
	for i := range 2 {
		if r := l.Allow("k"); r.Allowed || r.Escalate {
			t.Fatalf("refusal %d: %+v, want refused without escalation", i+1, r)
		}
	}
	c.Advance(11 * time.Second) // the two strikes age out
	l.Allow("k")                // refilled
	for i := range 2 {
		if r := l.Allow("k"); r.Escalate {
			t.Fatalf("refusal %d after the window: escalated early", i+1)
		}
	}
	if r := l.Allow("k"); !r.Escalate {
		t.Fatalf("third refusal within the window: %+v, want escalation", r)
	}
	if r := l.Allow("k"); r.Escalate {
		t.Fatal("escalated again on the very next refusal; the count must restart")
	}
}

func TestConcurrent(t *testing.T) {
	c := newClock()
	l, err := New(Config{Rate: "1/h", Burst: 100, MaxKeys: 2048}, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				if l.Allow("shared").Allowed {
					allowed.Add(1)
				}
				l.Allow(fmt.Sprintf("g%d-%d", g, i))
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 100 {
		t.Fatalf("shared bucket allowed %d requests, want exactly the burst of 100", got)
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.7", "ip:192.0.2.7/32"},
		{"::ffff:192.0.2.7", "ip:192.0.2.7/32"},
		{"2001:db8:1:2:3:4:5:6", "ip:2001:db8:1:2::/64"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := ClientKey(netip.MustParseAddr(tt.in)); got != tt.want {
				t.Fatalf("ClientKey = %q, want %q", got, tt.want)
			}
		})
	}
}

func BenchmarkAllowSameKey(b *testing.B) {
	l, _ := New(Config{Rate: "1000000000/s", Burst: 1000}, nil)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow("sub:https://issuer.example|c-1001")
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	l, _ := New(Config{Rate: "1000000000/s", Burst: 1000}, nil)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("sub:c-%d", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i&1023])
			i++
		}
	})
}

// BenchmarkKeyTableMemory fills a table of max_keys with distinct keys and
// then floods it with as many again, reporting the heap the table holds per
// key and in total: it must stop growing once the table is full.
func BenchmarkKeyTableMemory(b *testing.B) {
	const n = 100000
	keys := make([]string, 3*n)
	for i := range keys {
		keys[i] = fmt.Sprintf("ip:10.%d.%d.%d/32", i>>16&255, i>>8&255, i&255)
	}
	b.ReportAllocs()
	var full, flooded uint64
	for b.Loop() {
		before := heapInUse()
		l, _ := New(Config{Rate: "1/s", MaxKeys: n}, nil)
		for _, k := range keys[:n] {
			l.Allow(k)
		}
		full = heapInUse() - before
		for _, k := range keys[n:] {
			l.Allow(k)
		}
		flooded = heapInUse() - before
		runtime.KeepAlive(l)
	}
	b.ReportMetric(float64(full)/n, "bytes/key")
	b.ReportMetric(float64(full)/(1<<20), "MiB-full")
	b.ReportMetric(float64(flooded)/(1<<20), "MiB-after-2x-flood")
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
