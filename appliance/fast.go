package appliance

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// The engine serves each listener with two HTTP servers behind one accept
// loop. The loop accepts, drops denied sources, and completes the TLS
// handshake; then ALPN decides:
//
//   - h2 goes to net/http's server (and x/net's HTTP/2 inside it);
//   - HTTP/1.1 goes to a fasthttp server, whose request and response objects
//     are reused per connection and whose upstream client exchanges on the
//     request's goroutine. It proxies requests of routes that have no stages
//     itself (the fast path, fastproxy.go).
//
// A request the fast path does not handle (a route with policy, DLP,
// validation, WAF or anomaly stages, the sealing endpoint, upgrades, 404s,
// paths net/http would clean or redirect) moves its connection to the
// net/http server: the request is replayed there from its bytes, and the
// connection stays with net/http until it closes. Both servers therefore
// answer exactly as they did before the fast path existed, and the stages
// keep one implementation.

// connQueue is a net.Listener fed by the accept loop.
type connQueue struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{ch: make(chan net.Conn), closed: make(chan struct{}), addr: addr}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// push hands c to the server reading the queue; false when it has stopped.
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.closed:
		return false
	}
}

// fastConn is an HTTP/1.1 connection served by fasthttp. It keeps the
// tls.Conn's methods (fasthttp detects TLS through them).
type fastConn struct {
	*tls.Conn
	gc *guardedConn
	// For access lines, once the first is written: the TLS state and the
	// client's address as text.
	logTLS    *tls.ConnectionState
	logClient string
	// The current request's id: every use copies it (headers, problem
	// answers, the access line), so one buffer per connection serves all
	// its requests.
	id [maxIDLen]byte
}

// clientIP is the client's address for X-Forwarded-For.
func (c *fastConn) clientIP() string {
	if ip := c.gc.ip; ip != "" {
		return ip
	}
	return c.RemoteAddr().String()
}

// migratedConn is a connection moved from fasthttp to net/http: it reads the
// replayed request first, then what fasthttp had buffered, then the socket.
// net/http does not see a *tls.Conn, so the TLS state travels with it (see
// ConnContext in Serve).
type migratedConn struct {
	net.Conn           // the tls.Conn
	r        io.Reader // replay, then the hijacked reader
	gc       *guardedConn
	state    tls.ConnectionState
}

func (c *migratedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// guardedOf returns the guardedConn under a connection of either server.
func guardedOf(c net.Conn) *guardedConn {
	switch c := c.(type) {
	case *tls.Conn:
		gc, _ := c.NetConn().(*guardedConn)
		return gc
	case *fastConn:
		return c.gc
	case *migratedConn:
		return c.gc
	}
	return nil
}

// tlsStateKey carries a migrated connection's TLS state into its requests.
type tlsStateKey struct{}

// acceptLoop accepts until the listener closes.
func (e *Engine) acceptLoop(s *server) {
	defer close(s.accepted)
	var delay time.Duration
	for {
		c, err := s.gl.Accept()
		if err != nil {
			if temporaryAccept(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				e.log.Warn("accept failed; retrying", "listener", s.name, "err", err.Error(), "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			// The HTTP/1.1 queue stays open: connections still in their
			// handshake go on to be served; Shutdown closes it.
			return
		}
		delay = 0
		// Counted before the handshake starts, so a drain that begins now
		// waits for this connection's first request.
		gc := c.(*guardedConn)
		s.active.Inc()
		s.fresh.Add(1)
		gc.fresh.Store(true)
		go e.handshake(s, gc)
	}
}

// temporaryAccept reports accept errors worth retrying (descriptor
// exhaustion and the like), which net/http also retries.
func temporaryAccept(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	type temporary interface{ Temporary() bool }
	var t temporary
	return errors.As(err, &t) && t.Temporary()
}

// handshake completes TLS within the read-header timeout, counts it, and
// hands the connection to the server its ALPN protocol belongs to.
func (e *Engine) handshake(s *server, gc *guardedConn) {
	tc := tls.Server(gc, s.base)
	lim := s.limits()
	tc.SetDeadline(time.Now().Add(lim.ReadHeaderTimeout))
	if err := tc.HandshakeContext(context.Background()); err != nil {
		s.handshakeFailed()
		e.log.Debug("TLS handshake failed", "listener", s.name, "remote", gc.RemoteAddr().String(), "err", err.Error())
		tc.Close()
		s.closed(gc)
		return
	}
	tc.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	s.handshakeOK(cs.Version)
	l := s.listener()
	if cs.NegotiatedProtocol == "h2" && !s.noFastH2.Load() {
		s.connsH2.Inc()
		// A new goroutine: this one's stack grew deep in the handshake,
		// and an idle connection's reader would keep it.
		go e.serveH2(s, tc, cs, gc)
		return
	}
	if cs.NegotiatedProtocol == "h2" || s.noFast.Load() || l == nil || !l.h1Fast {
		if cs.NegotiatedProtocol == "h2" {
			s.connsH2Full.Inc()
		} else {
			s.connsFull.Inc()
		}
		if !s.h2.push(tc) {
			tc.Close()
			s.closed(gc)
		}
		return
	}
	s.connsFast.Inc()
	gc.lazy = true // see guardedConn; the push hands gc to fasthttp's goroutine
	if !s.h1.push(&fastConn{Conn: tc, gc: gc}) {
		tc.Close()
		s.closed(gc)
	}
}

// closed accounts for a connection that ended.
func (s *server) closed(gc *guardedConn) {
	s.active.Dec()
	s.firstRequest(gc)
}

// firstRequest marks gc's first request as read (or the connection as gone).
func (s *server) firstRequest(gc *guardedConn) {
	if gc != nil && gc.fresh.CompareAndSwap(true, false) {
		s.fresh.Add(-1)
	}
}

// fastConnState follows fasthttp's connections; hijacked ones (moved to
// net/http) are followed there.
func (s *server) fastConnState(c net.Conn, st fasthttp.ConnState) {
	gc := guardedOf(c)
	switch st {
	case fasthttp.StateActive:
		s.firstRequest(gc)
	case fasthttp.StateClosed:
		s.closed(gc)
	}
}

// migrate moves the connection of the request in ctx to net/http, which
// serves that request and every later one on it.
func (s *server) migrate(ctx *fasthttp.RequestCtx) {
	fc, ok := ctx.Conn().(*fastConn)
	if !ok {
		ctx.Error("internal error", fasthttp.StatusInternalServerError)
		ctx.SetConnectionClose()
		return
	}
	head, body := replay(&ctx.Request)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		// c reads what fasthttp had buffered, then the socket; with
		// KeepHijackedConns it stays open and owns that buffer after this
		// returns, and the replay holds copies, not ctx's memory.
		fc.gc.eager() // net/http sets deadlines from other goroutines
		mc := &migratedConn{
			Conn:  fc.Conn,
			r:     io.MultiReader(bytes.NewReader(head), body, c),
			gc:    fc.gc,
			state: fc.ConnectionState(),
		}
		s.connsFull.Inc()
		if !s.h2.push(mc) {
			fc.Conn.Close()
			s.closed(fc.gc)
		}
	})
}

// replay rebuilds the bytes of req for net/http: the request line and the
// header lines as they came, except the framing ones (Transfer-Encoding,
// Content-Length), and the body fasthttp read whole, framed by a
// Content-Length of its own. net/http thus frames the request exactly as
// fasthttp did: where the two parsers would disagree on the framing of what
// a client sent (a Transfer-Encoding fasthttp did not take as chunked, say),
// the bytes after the request cannot be read as its body, or the other way
// round. Chunked trailers are not kept. Nothing returned refers to req,
// which fasthttp reuses.
func replay(req *fasthttp.Request) (head []byte, body io.Reader) {
	h := &req.Header
	var b bytes.Buffer
	b.Write(h.Method())
	b.WriteByte(' ')
	b.Write(h.RequestURI())
	b.WriteByte(' ')
	b.Write(h.Protocol())
	b.WriteString("\r\n")
	skipping := false
	for line := range bytes.Lines(h.RawHeaders()) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			// An obsolete folded continuation of the line before.
			if !skipping {
				b.Write(line)
				b.WriteString("\r\n")
			}
			continue
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		name = bytes.TrimSpace(name)
		skipping = bytes.EqualFold(name, []byte("Transfer-Encoding")) || bytes.EqualFold(name, []byte("Content-Length"))
		if !skipping {
			b.Write(line)
			b.WriteString("\r\n")
		}
	}
	data := req.Body()
	if len(data) > 0 || h.ContentLength() != 0 {
		b.WriteString("Content-Length: ")
		b.WriteString(strconv.Itoa(len(data)))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes(), bytes.NewReader(bytes.Clone(data))
}

// headerReceived bounds the body fasthttp reads before the handler runs by
// the listener's largest max_body (at most maxBufferedBody, or the listener
// is not on the fast path): a declared length above it is refused before
// its body is read; each route's own limit is checked in the handler.
//
// The server's read timeout (read_header_timeout) bounds the request head;
// a request with a body gets idle_timeout to deliver it, as a slow link
// uploading megabytes needs more than the head's few seconds.
func (s *server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	var rc fasthttp.RequestConfig
	if l := s.listener(); l != nil && l.maxBody > 0 {
		rc.MaxRequestBodySize = int(l.maxBody)
	}
	if h.ContentLength() != 0 {
		lim := s.limits()
		rc.ReadTimeout = max(lim.IdleTimeout, lim.ReadHeaderTimeout)
	}
	return rc
}

// fastError answers what fasthttp refuses before the handler runs, as
// net/http's side does: problem+json, nothing about internals.
func fastError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		fastProblem(ctx, 431, "request header fields too large", "")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		fastProblem(ctx, 413, "request body too large", "")
	case errors.As(err, &ne) && ne.Timeout():
		fastProblem(ctx, 408, "the request was not received in time", "")
	default:
		fastProblem(ctx, 400, "the request could not be parsed", "")
	}
}

// fastLogger sends fasthttp's own messages (malformed requests and the like)
// to the engine's log at debug level, as net/http's are.
type fastLogger struct{ l *slog.Logger }

func (f fastLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...), "server", "fasthttp")
}
