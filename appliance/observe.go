package appliance

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealgate/sealgate/appliance/metrics"
)

// observers caches the request metrics' children per listener and route, so
// a request costs one map lookup and two atomic adds instead of hashing its
// label values into the Prometheus vectors twice. Entries live as long as
// the engine, as the series they point to do in the registry.
type observers struct {
	m  atomic.Pointer[map[obsKey]*routeObs]
	mu sync.Mutex // serialises copy-on-write inserts
}

type obsKey struct{ listener, route string }

// routeObs is one listener and route's duration histogram and its request
// counters by status code (100–599), each resolved on first use.
type routeObs struct {
	dur   prometheus.Observer
	codes [500]atomic.Pointer[counterRef]
}

type counterRef struct{ c prometheus.Counter }

func (o *observers) get(m *metrics.Metrics, listener, route string) *routeObs {
	if mp := o.m.Load(); mp != nil {
		if ro := (*mp)[obsKey{listener, route}]; ro != nil {
			return ro
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	old := o.m.Load()
	if old != nil {
		if ro := (*old)[obsKey{listener, route}]; ro != nil {
			return ro
		}
	}
	next := make(map[obsKey]*routeObs, 1)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	ro := &routeObs{dur: m.RequestDuration.WithLabelValues(listener, route)}
	next[obsKey{listener, route}] = ro
	o.m.Store(&next)
	return ro
}

// observe counts one answered request and its duration.
func (o *observers) observe(m *metrics.Metrics, listener, route string, code int, d time.Duration) {
	ro := o.get(m, listener, route)
	ro.dur.Observe(d.Seconds())
	if code < 100 || code > 599 {
		m.Requests.WithLabelValues(listener, route, strconv.Itoa(code)).Inc()
		return
	}
	slot := &ro.codes[code-100]
	ref := slot.Load()
	if ref == nil {
		ref = &counterRef{m.Requests.WithLabelValues(listener, route, strconv.Itoa(code))}
		if !slot.CompareAndSwap(nil, ref) {
			ref = slot.Load()
		}
	}
	ref.c.Inc()
}
