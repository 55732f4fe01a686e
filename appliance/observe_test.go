package appliance

import (
	"strconv"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sealgate/sealgate/appliance/metrics"
)

func counterOf(t *testing.T, m *metrics.Metrics, listener, route string, code int) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Requests.WithLabelValues(listener, route, strconv.Itoa(code)).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func TestObserversCountByRouteAndCode(t *testing.T) {
	m := metrics.New()
	var o observers
	for _, tt := range []struct {
		name     string
		listener string
		route    string
		code     int
		times    int
	}{
		{"ok", "api", "customers", 200, 3},
		{"not found on another route", "api", "none", 404, 2},
		{"same code other listener", "admin", "customers", 200, 1},
		{"lowest code", "api", "customers", 100, 1},
		{"highest cached code", "api", "customers", 599, 1},
		{"code outside the cache", "api", "customers", 999, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := counterOf(t, m, tt.listener, tt.route, tt.code)
			for range tt.times {
				o.observe(m, tt.listener, tt.route, tt.code, time.Millisecond)
			}
			if got := counterOf(t, m, tt.listener, tt.route, tt.code) - before; got != float64(tt.times) {
				t.Errorf("counter grew by %v, want %d", got, tt.times)
			}
		})
	}
	var d dto.Metric
	if err := m.RequestDuration.WithLabelValues("api", "customers").(interface{ Write(*dto.Metric) error }).Write(&d); err != nil {
		t.Fatal(err)
	}
	if n := d.GetHistogram().GetSampleCount(); n != 7 {
		t.Errorf("duration samples for api/customers = %d, want 7", n)
	}
}

func TestObserversConcurrentFirstUse(t *testing.T) {
	m := metrics.New()
	var o observers
	var wg sync.WaitGroup
	const workers, each = 8, 500
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				o.observe(m, "api", "r"+strconv.Itoa(i%5), 200+(w+i)%3, 0)
			}
		}()
	}
	wg.Wait()
	total := 0.0
	for r := range 5 {
		for c := 200; c < 203; c++ {
			total += counterOf(t, m, "api", "r"+strconv.Itoa(r), c)
		}
	}
	if total != workers*each {
		t.Errorf("counted %v requests, want %d", total, workers*each)
	}
}
