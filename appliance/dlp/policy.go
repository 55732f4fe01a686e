package dlp

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealgate/sealgate/appliance/alert"
	"github.com/sealgate/sealgate/appliance/metrics"
)

// Deps are the services a Policy reports to. Every field may be nil: no
// metrics, alerts dropped, logs discarded.
type Deps struct {
	Metrics *metrics.Metrics
	Alerts  alert.Sink
	Logger  *slog.Logger
}

// Policy is one route's compiled DLP policy. It is safe for concurrent use.
type Policy struct {
	route    string
	cc       *compiled
	log      *slog.Logger
	alerts   alert.Sink
	counters [numKinds]prometheus.Counter
	refused  prometheus.Counter // sealgate_upstream_errors_total{reason="dlp_encoding"}
	scanners sync.Pool
	blockBuf sync.Pool // *[]byte of cap up to max_block_buffer
}

func (p *Policy) getBlockBuf() []byte {
	if b, ok := p.blockBuf.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, min(p.cc.maxBlock, 64<<10))
}

func (p *Policy) putBlockBuf(b []byte) {
	if b != nil && cap(b) <= p.cc.maxBlock {
		p.blockBuf.Put(&b)
	}
}

// New validates cfg and builds the policy for route. A zero cfg gives a
// Policy whose Wrap returns the handler unchanged. Errors name the field,
// e.g. "dlp.actions.email: \"drop\" is not one of log, redact, block".
func New(route string, cfg Config, deps Deps) (*Policy, error) {
	p := &Policy{route: route}
	if cfg.IsZero() {
		return p, nil
	}
	cc, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	p.cc = cc
	p.log = deps.Logger
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "dlp", "route", route)
	p.alerts = deps.Alerts
	if p.alerts == nil {
		p.alerts = alert.Discard
	}
	if deps.Metrics != nil && deps.Metrics.UpstreamErrors != nil {
		p.refused = deps.Metrics.UpstreamErrors.WithLabelValues(route, "dlp_encoding")
	}
	if deps.Metrics != nil && deps.Metrics.DLPFindings != nil {
		for k := Kind(0); k < numKinds; k++ {
			if cc.enabled[k] {
				p.counters[k] = deps.Metrics.DLPFindings.WithLabelValues(route, k.String(), cc.action[k].String())
			}
		}
	}
	p.scanners.New = func() any { return new(scanner) }
	return p, nil
}

// Enabled reports whether the policy scans anything.
func (p *Policy) Enabled() bool { return p != nil && p.cc != nil }

// String describes the policy for logs: kinds and their actions, never
// patterns or values.
func (p *Policy) String() string {
	if !p.Enabled() {
		return "dlp off"
	}
	s := "dlp"
	for k := Kind(0); k < numKinds; k++ {
		if p.cc.enabled[k] {
			s += fmt.Sprintf(" %s=%s", k, p.cc.action[k])
		}
	}
	return s
}

// Wrap returns next with its responses scanned. next may stream (Write of
// any size, Flush); 1xx responses and protocol switches (101, hijacking)
// pass untouched, as do responses whose Content-Type is not scanned.
func (p *Policy) Wrap(next http.Handler) http.Handler {
	if !p.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := p.newWriter(w, r)
		defer rw.cleanup()
		next.ServeHTTP(rw, r)
		rw.finish()
	})
}
