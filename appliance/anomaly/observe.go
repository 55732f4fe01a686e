package anomaly

import (
	"bufio"
	"fmt"
	"hash/maphash"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/sealgate/sealgate/appliance/alert"
	"github.com/sealgate/sealgate/appliance/reqctx"
)

// rateKey is a route (client zero) or a client (route empty) for surge
// tracking, or a route and client for DLP counts.
type rateKey struct {
	route  string
	client netip.Addr
}

// rate counts requests and errors in the current window and keeps their EWMA
// baselines over completed windows.
type rate struct {
	start            time.Time
	reqs, errs       int
	baseReq, baseErr float64
	windows          int // completed windows: 0 means no baseline yet
}

// counter counts events in the current window.
type counter struct {
	start time.Time
	n     int
}

type enumKey struct {
	route    string
	identity string     // subject or key name; empty for unauthenticated requests
	client   netip.Addr // set only when identity is empty
}

type enumState struct {
	start time.Time
	paths map[uint64]struct{} // hashes of distinct paths, at most the threshold
}

type coolKey struct {
	kind, route, identity string
	client                netip.Addr
}

// Observe returns the per-route middleware that feeds the detectors. It must
// wrap the access-control stage so the identity and the final status are
// known when the response is done. With every detector off it returns next.
func (d *Detector) Observe(route string) func(http.Handler) http.Handler {
	if !d.observing {
		return func(next http.Handler) http.Handler { return next }
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			path, method := r.URL.Path, r.Method
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			ev := event{route: route, path: path, read: method == http.MethodGet || method == http.MethodHead,
				status: sw.code()}
			if info := reqctx.From(r.Context()); info != nil {
				ev.client = info.Client
				if id := info.Identity(); id != nil {
					ev.identity = id.Subject
					if ev.identity == "" {
						ev.identity = id.KeyName
					}
				}
				for _, n := range info.DLP() {
					ev.dlp += n
				}
			}
			if !ev.client.IsValid() {
				ev.client = remoteAddr(r.RemoteAddr)
			}
			ev.client = ev.client.Unmap()
			d.observe(ev)
		})
	}
}

func remoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr()
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		a, _ := netip.ParseAddr(host)
		return a
	}
	return netip.Addr{}
}

// event is what one finished request contributes.
type event struct {
	route, path, identity string
	client                netip.Addr
	status                int
	read                  bool
	dlp                   int
}

func (d *Detector) observe(ev event) {
	now := d.now()
	var fire []alert.Alert
	d.mu.Lock()
	if d.surgeFactor > 0 {
		isErr := ev.status >= 400
		if a, ok := d.surge(rateKey{route: ev.route}, now, isErr); ok {
			a.Route = ev.route
			fire = append(fire, a)
		}
		if ev.client.IsValid() {
			if a, ok := d.surge(rateKey{client: ev.client}, now, isErr); ok {
				a.Route, a.Client, a.Identity = ev.route, ev.client, ev.identity
				fire = append(fire, a)
			}
		}
	}
	if d.authFails > 0 && ev.status == http.StatusUnauthorized && ev.client.IsValid() {
		c := d.auth.get(ev.client, func() counter { return counter{start: now} })
		if d.count(c, now, 1) == d.authFails {
			fire = append(fire, alert.Alert{Kind: KindAuthFailures, Route: ev.route, Client: ev.client,
				Detail: fmt.Sprintf("%d authentication failures within %s", c.n, d.window)})
		}
	}
	if d.enumeration > 0 && ev.read {
		k := enumKey{route: ev.route, identity: ev.identity}
		if k.identity == "" {
			k.client = ev.client
		}
		if k.identity != "" || k.client.IsValid() {
			st := d.enum.get(k, func() enumState { return enumState{start: now, paths: make(map[uint64]struct{})} })
			if n := d.distinct(st, now, ev.path); n == d.enumeration {
				fire = append(fire, alert.Alert{Kind: KindEnumeration, Route: ev.route, Client: ev.client,
					Identity: ev.identity, Detail: fmt.Sprintf("%d distinct paths read within %s", n, d.window)})
			}
		}
	}
	if d.dlpSpike > 0 && ev.dlp > 0 && ev.client.IsValid() {
		c := d.dlp.get(rateKey{route: ev.route, client: ev.client}, func() counter { return counter{start: now} })
		before := d.countBefore(c, now)
		if n := d.count(c, now, ev.dlp); n >= d.dlpSpike && before < d.dlpSpike {
			fire = append(fire, alert.Alert{Kind: KindDLPSpike, Route: ev.route, Client: ev.client,
				Identity: ev.identity, Detail: fmt.Sprintf("%d DLP findings in responses within %s", n, d.window)})
		}
	}
	d.mu.Unlock()
	for _, a := range fire {
		a.Time = now
		d.Raise(a)
	}
}

// roll moves a window start forward to the window containing now and
// reports how many windows ended.
func (d *Detector) roll(start *time.Time, now time.Time) int64 {
	if now.Before(start.Add(d.window)) {
		return 0
	}
	n := int64(now.Sub(*start) / d.window)
	*start = start.Add(time.Duration(n) * d.window)
	return n
}

// countBefore rolls c and returns its count so far in the current window.
func (d *Detector) countBefore(c *counter, now time.Time) int {
	if d.roll(&c.start, now) > 0 {
		c.n = 0
	}
	return c.n
}

// count adds n to c's current window and returns the window's total.
func (d *Detector) count(c *counter, now time.Time, n int) int {
	d.countBefore(c, now)
	c.n += n
	return c.n
}

// distinct adds path to st's current window and returns how many distinct
// paths the window holds; it stops growing at the threshold.
func (d *Detector) distinct(st *enumState, now time.Time, path string) int {
	if d.roll(&st.start, now) > 0 {
		clear(st.paths)
	}
	if len(st.paths) >= d.enumeration {
		return len(st.paths) + 1 // already fired this window
	}
	st.paths[maphash.String(d.seed, path)] = struct{}{}
	return len(st.paths)
}

// surge counts one request for k and reports a surge alert when the current
// window exceeds surgeFactor times the baseline. A key needs one completed
// window of history first, so a restart or a client's first minute is not a
// surge; enumeration, auth-failure and rate limits cover new sources.
func (d *Detector) surge(k rateKey, now time.Time, isErr bool) (alert.Alert, bool) {
	r := d.rates.get(k, func() rate { return rate{start: now} })
	if ended := d.roll(&r.start, now); ended > 0 {
		if r.windows == 0 {
			r.baseReq, r.baseErr = float64(r.reqs), float64(r.errs)
		} else {
			r.baseReq = alpha*float64(r.reqs) + (1-alpha)*r.baseReq
			r.baseErr = alpha*float64(r.errs) + (1-alpha)*r.baseErr
		}
		// Windows with no traffic at all pull the baseline towards zero.
		for i := int64(1); i < ended && i < 64; i++ {
			r.baseReq *= 1 - alpha
			r.baseErr *= 1 - alpha
		}
		r.windows += int(min(ended, 1<<20))
		r.reqs, r.errs = 0, 0
	}
	r.reqs++
	if isErr {
		r.errs++
	}
	if r.windows == 0 {
		return alert.Alert{}, false
	}
	// Alert when the count reaches the threshold: once per window, and the
	// cooldown keeps later windows quiet.
	if r.reqs == d.surgeThreshold(r.baseReq) {
		return alert.Alert{Kind: KindSurge,
			Detail: fmt.Sprintf("%d requests within %s, baseline %.1f", r.reqs, d.window, r.baseReq)}, true
	}
	if isErr && r.errs == d.surgeThreshold(r.baseErr) {
		return alert.Alert{Kind: KindErrorSurge,
			Detail: fmt.Sprintf("%d error responses within %s, baseline %.1f", r.errs, d.window, r.baseErr)}, true
	}
	return alert.Alert{}, false
}

// surgeThreshold is the smallest window count that is a surge over base.
func (d *Detector) surgeThreshold(base float64) int {
	return max(int(d.surgeFactor*max(base, 1))+1, d.minRequests)
}

// statusWriter records the final status code of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher for streaming responses.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker for protocol upgrades.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
