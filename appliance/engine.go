package appliance

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/sealgate/sealgate/appliance/blocker"
	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/appliance/problem"
	"github.com/sealgate/sealgate/appliance/reqctx"
)

// Options are the engine's fixed dependencies.
type Options struct {
	Logger    *slog.Logger // engine events
	AccessLog *slog.Logger // one line per request; nil: none
	Metrics   *metrics.Metrics
	// Deny refuses connections from blocked sources at accept, before TLS.
	Deny *blocker.List
	// Outer wraps each listener's router once; the sealing endpoint uses it
	// to serve /.well-known/sealgate/ and to unseal gateway requests.
	Outer func(http.Handler) http.Handler
}

// Engine serves listeners with the routes of the current Spec.
type Engine struct {
	log     *slog.Logger
	access  *slog.Logger
	m       *metrics.Metrics
	deny    *blocker.List
	outer   func(http.Handler) http.Handler
	tickets *ticketKeys
	idBase  string
	idSeq   atomic.Uint64
	obs     observers

	gen     atomic.Pointer[generation]
	mu      sync.Mutex
	servers map[string]*server
	stop    chan struct{}
	stopped bool
	started time.Time
}

type generation struct {
	spec      Spec
	limits    Limits
	listeners map[string]*listenerGen
}

type listenerGen struct {
	name    string
	tls     *tls.Config
	handler http.Handler
	mux     *http.ServeMux
	routes  []*route
	anyFast bool   // some route can be served on the fast path
	only    *route // the listener's one route, when it matches every request
	// h1Fast: HTTP/1.1 connections start on the fast path. Off when no
	// route is fast, or when a route's max_body is above what the fast path
	// reads ahead (it buffers request bodies; net/http streams them).
	h1Fast  bool
	maxBody int64 // the largest max_body of the listener's routes
}

type server struct {
	name string
	srv  *http.Server     // h2, and HTTP/1.1 connections moved off the fast path
	fast *fasthttp.Server // HTTP/1.1
	h1   *connQueue       // handshaken HTTP/1.1 connections for fast
	h2   *connQueue       // connections for srv
	base *tls.Config
	gl   *guardedListener
	addr net.Addr
	done chan struct{}
	// accepted closes when the accept loop has ended: every connection it
	// accepted is counted in fresh by then.
	accepted chan struct{}
	// fresh counts accepted connections that have not yet sent their first
	// request (TLS handshake, request in flight).
	fresh    atomic.Int64
	stopping atomic.Bool
	noFast   atomic.Bool // every connection goes to net/http
	noFastH2 atomic.Bool // h2 goes to net/http instead of the engine's server (h2.go)
	h2conns  h2conns     // connections of the engine's HTTP/2 server

	limits          func() Limits
	listener        func() *listenerGen // current generation's, or nil
	active          prometheus.Gauge
	connsFast       prometheus.Counter
	connsH2         prometheus.Counter
	connsH2Full     prometheus.Counter
	connsFull       prometheus.Counter
	handshakeOK     func(version uint16)
	handshakeFailed func()
}

// drain stops accepting, lets connections accepted so far deliver their
// first request (net/http drops a request read after Shutdown began, without
// an answer), then shuts both servers down gracefully within ctx.
func (s *server) drain(ctx context.Context) error {
	s.stopping.Store(true)
	s.gl.Listener.Close()
	wait, cancel := context.WithTimeout(ctx, freshGrace)
	defer cancel()
	select {
	case <-s.accepted:
	case <-wait.Done():
	}
	for s.fresh.Load() > 0 && wait.Err() == nil {
		time.Sleep(2 * time.Millisecond)
	}
	fastErr, h2Err := make(chan error, 1), make(chan error, 1)
	go func() {
		err := s.fast.ShutdownWithContext(ctx)
		// fasthttp's Shutdown returns at once when its Serve has not
		// registered the queue yet; closing it makes a late Serve return.
		s.h1.Close()
		fastErr <- err
	}()
	go func() { h2Err <- s.h2conns.shutdown(ctx) }()
	err := s.srv.Shutdown(ctx)
	return errors.Join(err, <-fastErr, <-h2Err)
}

// freshGrace bounds how long a drain waits for accepted connections to send
// their first request; a client that connected and sends nothing is cut
// after it.
const freshGrace = time.Second

// New returns an engine with no configuration; call Apply, then Serve.
func New(o Options) *Engine {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.Nop()
	}
	var b [6]byte
	rand.Read(b[:])
	e := &Engine{
		log:     o.Logger.With("component", "engine"),
		access:  o.AccessLog,
		m:       o.Metrics,
		deny:    o.Deny,
		outer:   o.Outer,
		tickets: newTicketKeys(),
		idBase:  hex.EncodeToString(b[:]) + "-",
		servers: make(map[string]*server),
		stop:    make(chan struct{}),
		started: time.Now(),
	}
	return e
}

// Apply compiles spec and swaps it in. On error nothing changes. Open
// connections keep their TLS session; new ones see the new certificates; the
// previous generation's idle upstream connections are closed.
func (e *Engine) Apply(spec Spec) error {
	g, err := e.compile(spec)
	if err != nil {
		return err
	}
	var configs []*tls.Config
	for _, l := range g.listeners {
		configs = append(configs, l.tls)
	}
	e.tickets.use(configs)
	old := e.gen.Swap(g)
	e.mu.Lock()
	for _, srv := range e.servers {
		srv.noFast.Store(spec.DisableFastPath)
		srv.noFastH2.Store(spec.DisableH2FastPath)
	}
	e.mu.Unlock()
	if old == nil {
		go e.tickets.run(g.limits.TicketRotation, e.stop)
	} else {
		for _, l := range old.listeners {
			for _, rt := range l.routes {
				rt.retire()
			}
		}
	}
	return nil
}

// Validate compiles spec without applying it.
func (e *Engine) Validate(spec Spec) error {
	_, err := e.compile(spec)
	return err
}

func (e *Engine) compile(spec Spec) (g *generation, err error) {
	g = &generation{spec: spec, limits: spec.Limits.withDefaults(), listeners: make(map[string]*listenerGen)}
	for _, ls := range spec.Listeners {
		if _, dup := g.listeners[ls.Name]; dup {
			return nil, fmt.Errorf("listener %q defined twice", ls.Name)
		}
		cfg, err := buildTLS(ls.Name, ls.TLS, spec.TLS12Suites)
		if err != nil {
			return nil, err
		}
		g.listeners[ls.Name] = &listenerGen{name: ls.Name, tls: cfg}
	}
	muxes := make(map[string]*http.ServeMux)
	hasRoot := make(map[string]bool)
	for _, rs := range spec.Routes {
		l, ok := g.listeners[rs.Listener]
		if !ok {
			return nil, fmt.Errorf("route %q: unknown listener %q", rs.Name, rs.Listener)
		}
		rt, err := newRoute(rs, g.limits, e.m)
		if err != nil {
			return nil, err
		}
		mux := muxes[rs.Listener]
		if mux == nil {
			mux = http.NewServeMux()
			muxes[rs.Listener] = mux
		}
		if err := register(mux, rs.Match, rt); err != nil {
			return nil, fmt.Errorf("route %q: match %q: %w", rs.Name, rs.Match, err)
		}
		if rs.Match == "/" {
			hasRoot[rs.Listener] = true
		}
		l.routes = append(l.routes, rt)
		if rt.fastServe {
			l.anyFast = true
		}
	}
	for name, l := range g.listeners {
		mux := muxes[name]
		if mux == nil {
			mux = http.NewServeMux()
		}
		if !hasRoot[name] {
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				problem.Error(w, r, http.StatusNotFound, "no route matches this request")
			})
		}
		var h http.Handler = mux
		if e.outer != nil {
			h = e.outer(h)
		}
		l.handler = h
		l.mux = mux
		if len(l.routes) == 1 && l.routes[0].spec.Match == "/" {
			l.only = l.routes[0]
		}
		l.h1Fast = l.anyFast
		for _, rt := range l.routes {
			l.maxBody = max(l.maxBody, rt.maxBody)
			if rt.maxBody > maxBufferedBody {
				l.h1Fast = false
			}
		}
	}
	return g, nil
}

// register adds a pattern, turning ServeMux's panics on bad or conflicting
// patterns into errors.
func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// Serve starts serving listener name on ln in the background. ln is a plain
// TCP listener; the engine adds TLS.
func (e *Engine) Serve(name string, ln net.Listener) error {
	g := e.gen.Load()
	if g == nil {
		return errors.New("engine has no configuration")
	}
	lg := g.listeners[name]
	if lg == nil {
		return fmt.Errorf("listener %q is not in the configuration", name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return errors.New("engine is shutting down")
	}
	if _, busy := e.servers[name]; busy {
		return fmt.Errorf("listener %q is already served", name)
	}
	lim := g.limits
	base := &tls.Config{
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if l := e.gen.Load().listeners[name]; l != nil {
				return l.tls, nil
			}
			return nil, fmt.Errorf("listener %q was removed", name)
		},
	}
	s := &server{name: name, addr: ln.Addr(), done: make(chan struct{}), accepted: make(chan struct{}), base: base}
	s.gl = &guardedListener{Listener: ln, deny: e.deny}
	s.h1, s.h2 = newConnQueue(ln.Addr()), newConnQueue(ln.Addr())
	s.noFast.Store(g.spec.DisableFastPath)
	s.noFastH2.Store(g.spec.DisableH2FastPath)
	e.connMetrics(name, s)
	s.srv = &http.Server{
		Handler:           e.entry(name),
		TLSConfig:         base,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ConnState:         s.connState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if mc, ok := c.(*migratedConn); ok {
				return context.WithValue(ctx, tlsStateKey{}, &mc.state)
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(e.log.With("listener", name).Handler(), slog.LevelDebug),
		HTTP2:    &http.HTTP2Config{MaxConcurrentStreams: 250},
	}
	s.fast = &fasthttp.Server{
		Handler:                       func(ctx *fasthttp.RequestCtx) { e.serveFast(s, ctx) },
		Name:                          "",
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: false,
		ReadBufferSize:                lim.MaxHeaderBytes,
		WriteBufferSize:               16 << 10,
		ReadTimeout:                   lim.ReadHeaderTimeout,
		IdleTimeout:                   lim.IdleTimeout,
		MaxRequestBodySize:            maxBufferedBody,
		HeaderReceived:                s.headerReceived,
		ErrorHandler:                  fastError,
		DisablePreParseMultipartForm:  true,
		ReduceMemoryUsage:             true,
		KeepHijackedConns:             true,
		CloseOnShutdown:               true,
		SecureErrorLogMessage:         true,
		ConnState:                     s.fastConnState,
		Logger:                        fastLogger{e.log.With("listener", name)},
	}
	e.servers[name] = s
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		e.acceptLoop(s)
	}()
	go func() {
		defer wg.Done()
		if err := s.srv.Serve(s.h2); err != nil && !errors.Is(err, http.ErrServerClosed) && !s.stopping.Load() {
			e.log.Error("listener stopped", "listener", name, "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.fast.Serve(s.h1); err != nil && !s.stopping.Load() {
			e.log.Error("listener stopped", "listener", name, "err", err)
		}
	}()
	go func() {
		wg.Wait()
		close(s.done)
	}()
	e.log.Info("serving", "listener", name, "addr", ln.Addr().String())
	return nil
}

// StopListener stops serving one listener, draining it within ctx.
func (e *Engine) StopListener(ctx context.Context, name string) error {
	e.mu.Lock()
	s := e.servers[name]
	delete(e.servers, name)
	e.mu.Unlock()
	if s == nil {
		return fmt.Errorf("listener %q is not served", name)
	}
	return s.drain(ctx)
}

// Shutdown stops accepting on every listener and waits for in-flight requests
// to finish until ctx ends; then it closes what is left.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if !e.stopped {
		e.stopped = true
		close(e.stop)
	}
	servers := make([]*server, 0, len(e.servers))
	for _, s := range e.servers {
		servers = append(servers, s)
	}
	e.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.drain(ctx); err != nil {
				s.srv.Close()
				s.h1.Close()
				errs[i] = fmt.Errorf("listener %q: %w", s.name, err)
			}
			<-s.done
		}()
	}
	wg.Wait()
	if g := e.gen.Load(); g != nil {
		for _, l := range g.listeners {
			for _, rt := range l.routes {
				rt.retire()
			}
		}
	}
	return errors.Join(errs...)
}

// ListenerStatus is one listener as reported by status.
type ListenerStatus struct {
	Name       string   `json:"name"`
	Addr       string   `json:"addr"`
	Serving    bool     `json:"serving"`
	MinTLS     string   `json:"min_tls"`
	Certs      []string `json:"certificates"` // subject names, never keys
	ClientAuth bool     `json:"client_auth"`
	Routes     []string `json:"routes"`
}

// Status reports the listeners of the current generation.
func (e *Engine) Status() []ListenerStatus {
	g := e.gen.Load()
	if g == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []ListenerStatus
	for _, ls := range g.spec.Listeners {
		l := g.listeners[ls.Name]
		st := ListenerStatus{Name: ls.Name, MinTLS: tlsVersionName(l.tls.MinVersion), ClientAuth: l.tls.ClientCAs != nil}
		if s := e.servers[ls.Name]; s != nil {
			st.Serving, st.Addr = true, s.addr.String()
		}
		for _, c := range l.tls.Certificates {
			if c.Leaf != nil {
				names := c.Leaf.DNSNames
				if len(names) == 0 {
					names = []string{c.Leaf.Subject.CommonName}
				}
				st.Certs = append(st.Certs, strings.Join(names, ","))
			}
		}
		for _, rt := range l.routes {
			st.Routes = append(st.Routes, rt.spec.Name)
		}
		out = append(out, st)
	}
	return out
}

// TicketKeys reports how many TLS session ticket keys are live.
func (e *Engine) TicketKeys() int { return e.tickets.count() }

// RotateTicketKeys adds a fresh session ticket key now.
func (e *Engine) RotateTicketKeys() { e.tickets.rotate() }

// exchange is the engine's per-request state, allocated once per request
// instead of piece by piece.
type exchange struct {
	info reqctx.Info
	sw   statusWriter
	body countingBody
}

// headerRequestID is the canonical form of X-Request-Id, so the engine can
// set it without canonicalising on every request.
const headerRequestID = "X-Request-Id"

// newID returns the next request id: a per-process random prefix and a
// base-36 sequence number.
func (e *Engine) newID() string {
	var buf [maxIDLen]byte
	return string(e.appendID(buf[:0]))
}

// appendID appends a new request id to b.
func (e *Engine) appendID(b []byte) []byte {
	b = append(b, e.idBase...)
	return strconv.AppendUint(b, e.idSeq.Add(1), 36)
}

// maxIDLen bounds a request id: 12 hex digits, a dash, a base-36 uint64.
const maxIDLen = 12 + 1 + 13

// entry is the first handler of every request: request id, request context,
// then the listener's current router, with metrics and the access log.
func (e *Engine) entry(listener string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		x := &exchange{}
		id := e.newID()
		// One value slice serves both headers; every later change to either
		// (Set, Add, Del) replaces or reallocates it rather than writing
		// through.
		idv := []string{id}
		r.Header[headerRequestID] = idv
		w.Header()[headerRequestID] = idv
		info := &x.info
		info.ID, info.Listener = id, listener
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			info.Client = ap.Addr().Unmap()
		}
		r = r.WithContext(reqctx.With(r.Context(), info))
		if r.TLS == nil {
			// A connection moved off the fast path: net/http sees a
			// wrapper, not the tls.Conn.
			r.TLS, _ = r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
		}
		sw := &x.sw
		sw.ResponseWriter = w
		var bodyIn *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			bodyIn = &x.body
			bodyIn.ReadCloser = r.Body
			r.Body = bodyIn
		}
		g := e.gen.Load()
		l := g.listeners[listener]
		if l == nil {
			problem.Error(sw, r, http.StatusServiceUnavailable, "listener is being removed")
		} else {
			l.handler.ServeHTTP(sw, r)
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := info.Route
		if route == "" {
			route = "none"
		}
		dur := time.Since(start)
		e.obs.observe(e.m, listener, route, sw.status, dur)
		if e.access != nil {
			var in int64
			if bodyIn != nil {
				in = bodyIn.n
			}
			e.logAccess(r, info, sw, in, dur)
		}
	})
}

// accessLine is what every access line carries, whichever server wrote it.
type accessLine struct {
	id, client, listener, route, method, host string
	path                                      string // never the query: it may carry keys or tokens
	proto, upstream                           string
	status                                    int
	in, out                                   int64
	dur                                       time.Duration
	sealed                                    bool
	tls                                       *tls.ConnectionState
}

// accessHandler is the access log's handler, or nil when it is off.
func (e *Engine) accessHandler() slog.Handler {
	if e.access == nil {
		return nil
	}
	if h := e.access.Handler(); h.Enabled(context.Background(), slog.LevelInfo) {
		return h
	}
	return nil
}

// record fills a slog.Record stamped t directly: no caller lookup (the
// access log has no source) and no intermediate slice. appendAccessJSON
// writes the same line without it.
func (a *accessLine) record(t time.Time) slog.Record {
	rec := slog.NewRecord(t, slog.LevelInfo, "access", 0)
	rec.AddAttrs(
		slog.String("request_id", a.id),
		slog.String("client", a.client),
		slog.String("listener", a.listener),
		slog.String("route", a.route),
		slog.String("method", a.method),
		slog.String("host", a.host),
		slog.String("path", a.path),
		slog.Int("status", a.status),
		slog.Int64("bytes_in", a.in),
		slog.Int64("bytes_out", a.out),
		slog.Float64("duration_ms", float64(a.dur.Microseconds())/1000),
		slog.String("proto", a.proto),
		slog.Bool("sealed", a.sealed),
	)
	if a.upstream != "" {
		rec.AddAttrs(slog.String("upstream", a.upstream))
	}
	if a.tls != nil {
		rec.AddAttrs(
			slog.String("tls", tlsVersionName(a.tls.Version)),
			slog.String("cipher", cipherSuiteName(a.tls.CipherSuite)),
			slog.String("alpn", a.tls.NegotiatedProtocol))
	}
	return rec
}

// logAccess writes the access line of a request the engine's handler
// served, with what its stages found.
func (e *Engine) logAccess(r *http.Request, info *reqctx.Info, sw *statusWriter, in int64, dur time.Duration) {
	h := e.accessHandler()
	if h == nil {
		return
	}
	rec := (&accessLine{
		id: info.ID, client: r.RemoteAddr, listener: info.Listener, route: info.Route,
		method: r.Method, host: r.Host, path: r.URL.Path, proto: r.Proto, upstream: info.Upstream,
		status: sw.status, in: in, out: sw.n, dur: dur, sealed: info.Sealed, tls: r.TLS,
	}).record(time.Now())
	if id := info.Identity(); id != nil {
		rec.AddAttrs(slog.Any("identity", id))
	}
	if d, rule := info.Decision(); d != "" {
		rec.AddAttrs(slog.String("decision", d), slog.String("rule", rule))
	}
	if f := info.DLP(); f != nil {
		rec.AddAttrs(slog.Any("dlp", f))
	}
	if w := info.WAFRules(); len(w) > 0 {
		rec.AddAttrs(slog.Any("waf_rules", w))
	}
	if n := info.Notes(); n != nil {
		rec.AddAttrs(slog.Any("notes", n))
	}
	h.Handle(context.Background(), rec)
}

// connMetrics resolves the listener's connection and handshake metrics
// once, for the accept loop and both servers.
func (e *Engine) connMetrics(listener string, s *server) {
	s.active = e.m.ActiveConns.WithLabelValues(listener)
	s.connsFast = e.m.Connections.WithLabelValues(listener, "http1_fast")
	s.connsH2 = e.m.Connections.WithLabelValues(listener, "http2")
	s.connsH2Full = e.m.Connections.WithLabelValues(listener, "http2_full")
	s.connsFull = e.m.Connections.WithLabelValues(listener, "http1_full")
	ok13 := e.m.TLSHandshakes.WithLabelValues(listener, "1.3", "ok")
	ok12 := e.m.TLSHandshakes.WithLabelValues(listener, "1.2", "ok")
	s.handshakeOK = func(v uint16) {
		switch v {
		case tls.VersionTLS13:
			ok13.Inc()
		case tls.VersionTLS12:
			ok12.Inc()
		default:
			e.m.TLSHandshakes.WithLabelValues(listener, tlsVersionName(v), "ok").Inc()
		}
	}
	failed := e.m.TLSHandshakes.WithLabelValues(listener, "unknown", "error")
	s.handshakeFailed = failed.Inc
	s.limits = func() Limits {
		if g := e.gen.Load(); g != nil {
			return g.limits
		}
		return Limits{}.withDefaults()
	}
	s.listener = func() *listenerGen {
		if g := e.gen.Load(); g != nil {
			return g.listeners[listener]
		}
		return nil
	}
}

// connState follows net/http's connections (h2, and those moved off the
// fast path); they were counted when accepted.
func (s *server) connState(c net.Conn, st http.ConnState) {
	gc := guardedOf(c)
	switch st {
	case http.StateActive:
		s.firstRequest(gc)
	case http.StateClosed, http.StateHijacked:
		s.closed(gc)
	}
}

// guardedListener drops connections from denied sources before TLS and marks
// each connection so its handshake is counted once.
type guardedListener struct {
	net.Listener
	deny *blocker.List
}

type guardedConn struct {
	net.Conn
	fresh  atomic.Bool // accepted, first request not yet read
	client netip.Addr  // the peer's address, parsed once at accept
	ip     string      // client as text ("" when not an IP), for X-Forwarded-For

	// While the HTTP/1.1 fast server owns the connection (lazy), a read
	// deadline it sets is kept until a read needs the socket. fasthttp
	// moves the deadline twice per request, to the idle bound and then,
	// at the request's first byte, to the head's; the second is almost
	// never waited on, as TLS holds the whole request from its first
	// record, and moving it costs a timer update. A read that does reach
	// the socket arms the latest deadline first, so every wait has the
	// bound fasthttp asked for. Only the serving goroutine sets deadlines
	// and reads then; moving the connection to net/http ends it (eager).
	lazy  bool
	want  time.Time // the read deadline set
	armed time.Time // the read deadline on the socket
}

func (c *guardedConn) Read(b []byte) (int, error) {
	if c.lazy && c.want != c.armed {
		if err := c.Conn.SetReadDeadline(c.want); err != nil {
			return 0, err
		}
		c.armed = c.want
	}
	return c.Conn.Read(b)
}

func (c *guardedConn) SetReadDeadline(t time.Time) error {
	if c.lazy {
		c.want = t
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *guardedConn) SetDeadline(t time.Time) error {
	if c.lazy {
		c.want = t
		return c.Conn.SetWriteDeadline(t)
	}
	return c.Conn.SetDeadline(t)
}

// eager ends lazy read deadlines, arming the one last set.
func (c *guardedConn) eager() {
	if c.lazy {
		c.lazy = false
		if c.want != c.armed {
			c.Conn.SetReadDeadline(c.want)
		}
	}
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		gc := &guardedConn{Conn: c}
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			gc.client = ap.Addr().Unmap()
			gc.ip = gc.client.String()
		}
		if l.deny != nil && gc.client.IsValid() {
			if _, blocked := l.deny.Blocked(gc.client); blocked {
				c.Close()
				continue
			}
		}
		gc.Conn = newSysConn(c) // see sysConn
		return gc, nil
	}
}

// statusWriter records the status and the bytes written.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	if code == http.StatusSwitchingProtocols {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach Hijack (WebSocket) and deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}
