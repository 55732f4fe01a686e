package anomaly_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"

	"github.com/sealgate/sealgate/appliance/anomaly"
	"github.com/sealgate/sealgate/appliance/blocker"
	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/appliance/problem"
	"github.com/sealgate/sealgate/appliance/reqctx"
	"github.com/sealgate/sealgate/appliance/validate"
	"github.com/sealgate/sealgate/appliance/waf"
)

// TestLeakInProgressIsBlocked assembles the stages in the engine's order
// (blocklist gate → anomaly observe → validate → waf → upstream) over real
// HTTP and shows that configuration alone stops an enumeration loop over
// /api/customers/{id} and a source that trips the WAF.
func TestLeakInProgressIsBlocked(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	list := blocker.NewList(clock.Now)
	m := metrics.New()
	det, err := anomaly.New(anomaly.Config{
		Window: "1m", Enumeration: 100, Cooldown: "5m",
		Block: map[string]string{anomaly.KindEnumeration: "1h", "waf_block": "10m"},
	}, anomaly.Deps{Metrics: m, Blocker: list, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	val, err := validate.New("customers", validate.Config{Methods: []string{"GET", "POST"}, MaxJSONDepth: 16}, validate.Deps{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := waf.New("customers", waf.Config{Mode: waf.ModeBlock}, waf.Deps{Metrics: m, Alerts: det})
	if err != nil {
		t.Fatal(err)
	}
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"customer"}`, strings.TrimPrefix(r.URL.Path, "/api/customers/"))
	})
	stages := det.Observe("customers")(val.Wrap(fw.Wrap(upstream)))
	// The engine's front: request context with the client, blocklist gate.
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := netip.MustParseAddr(r.Header.Get("X-Test-Client"))
		if e, blocked := list.Blocked(client); blocked {
			problem.Error(w, r, http.StatusForbidden, "source blocked ("+e.Reason+")")
			return
		}
		info := &reqctx.Info{ID: "t", Route: "customers", Client: client}
		stages.ServeHTTP(w, r.WithContext(reqctx.With(r.Context(), info)))
	})
	srv := httptest.NewServer(front)
	defer srv.Close()

	get := func(client, target string) int {
		req, _ := http.NewRequest("GET", srv.URL+target, nil)
		req.Host = "api.example.com"
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "test/1")
		req.Header.Set("X-Test-Client", client)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	// The scraper walks ids; it is cut off right after the threshold.
	const scraper = "203.0.113.66"
	served := 0
	for id := 1; id <= 500; id++ {
		if get(scraper, fmt.Sprintf("/api/customers/%d", id)) != http.StatusOK {
			break
		}
		served++
	}
	if served != 100 {
		t.Fatalf("scraper got %d records before the block, want 100", served)
	}
	entries := list.Entries()
	if len(entries) != 1 || entries[0].Prefix.String() != scraper+"/32" || entries[0].Reason != "alert:enumeration" {
		t.Fatalf("blocklist %+v", entries)
	}
	// A normal client is unaffected.
	if got := get("198.51.100.10", "/api/customers/7"); got != http.StatusOK {
		t.Fatalf("normal client got %d", got)
	}
	// An injection attempt is refused by the WAF and its source blocked.
	const attacker = "192.0.2.200"
	if got := get(attacker, "/api/customers?id="+url.QueryEscape("1' OR '1'='1")); got != http.StatusForbidden {
		t.Fatalf("injection got %d", got)
	}
	if got := get(attacker, "/api/customers/1"); got != http.StatusForbidden {
		t.Fatalf("attacker not blocked after the WAF alert: %d", got)
	}
	// Blocks expire after their TTL.
	clock.Advance(time.Hour + time.Second)
	if got := get(scraper, "/api/customers/1"); got != http.StatusOK {
		t.Fatalf("scraper still blocked after the TTL: %d", got)
	}
	if s := det.Stats(); s.Blocks != 2 {
		t.Errorf("stats %+v", s)
	}
}
