package appliance

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The engine's HTTP/2 server. net/http's HTTP/2 server runs each connection
// through one goroutine that owns all state, with a goroutine per stream
// exchanging messages with it; it writes a small response as two flushes
// (HEADERS, then DATA), each a TLS record and a write system call, from a
// goroutine started per flush. Profiles of 1 KiB responses on 64 streams
// (bench/README.md) put a quarter of its CPU in those flushes and most of
// the rest in the channel hops and goroutine starts around them.
//
// This server keeps the same model as the HTTP/1.1 fast path: frames are
// parsed by x/net's Framer and hpack (no parser here), connection state sits
// under one mutex, each request runs the engine's handler (the same one
// net/http calls, so every stage has one implementation) on a pooled
// goroutine, and a finished response's frames are written to the
// connection's buffer, which is flushed once for all responses finished in
// the same scheduling round. Flow control, stream states and errors follow
// RFC 9113; h2spec's suite runs in the tests.

const (
	h2MaxStreams   = 250     // SETTINGS_MAX_CONCURRENT_STREAMS, as net/http
	h2StreamWindow = 1 << 20 // receive window per stream (request bodies)
	h2ConnWindow   = 1 << 20 // receive window per connection
	h2MaxFrame     = 16384   // SETTINGS_MAX_FRAME_SIZE we read (the default)
	h2BodyChunk    = 16384   // response bytes framed at once
	h2MaxWindow    = 1<<31 - 1
	// h2RefusedLimit is how many streams a connection may have refused
	// (over the concurrency limit, typically opened and reset in a loop:
	// CVE-2023-44487) before it is told to go away.
	h2RefusedLimit = 2 * h2MaxStreams
)

// h2conn is one HTTP/2 connection.
type h2conn struct {
	e         *Engine
	s         *server
	tc        h2Transport
	gc        *guardedConn
	handler   http.Handler
	state     tls.ConnectionState
	remote    string
	idle      time.Duration
	maxHeader int           // the header list size answered with 431 above it
	fr        *http2.Framer // read side: the serve goroutine; write side: under mu
	blk       *h2block      // the serve goroutine's

	mu         sync.Mutex
	cond       sync.Cond // flow-control window grew, a stream ended, or the connection failed
	out        h2buf     // frames not yet written
	hbuf       h2buf     // the header block being encoded
	henc       *hpack.Encoder
	fastVals   h2Values      // the previous fast response's values, for encodeFast
	updated    bool          // a WINDOW_UPDATE waits in out
	flushing   bool          // a handler yields and then flushes out (flushSoon)
	wmu        sync.Mutex    // serializes writes to tc; taken under mu, held without it
	wdeadline  slackDeadline // under wmu
	streams    map[uint32]*h2stream
	maxID      uint32 // highest stream id the client opened
	handlers   int    // handler goroutines running
	refused    int
	sendWindow int64 // connection-level, toward the client
	recvWindow int64 // connection-level credit the client still has
	recvUnsent int64 // connection-level credit consumed, not yet returned
	peerWindow int64 // client's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame  uint32
	goingAway  bool
	peerAway   bool
	err        error // the connection failed or closed
}

// h2stream is one request/response exchange. Fields are under c.mu unless
// said otherwise.
type h2stream struct {
	c            *h2conn
	hd           h2head // the request's head, for the fast path
	id           uint32
	sendWindow   int64
	recvWindow   int64 // credit the client still has
	recvUnsent   int64
	remoteClosed bool
	localClosed  bool
	reset        bool
	body         *h2body
	declared     int64 // content-length, or -1
	received     int64
	cancel       context.CancelFunc
	w            h2writer // the handler's
	// For the fast path: the route, the HEADERS frame, and the request
	// id's bytes (every use copies them).
	rt    *route
	frame *http2.MetaHeadersFrame
	idBuf [maxIDLen]byte
}

// h2Transport is what the server needs of a connection: a *tls.Conn, whose
// CloseWrite sends close_notify (the fuzz test uses a plain pipe).
type h2Transport interface {
	net.Conn
	CloseWrite() error
}

// serveH2 serves an HTTP/2 connection until it ends.
func (e *Engine) serveH2(s *server, tc h2Transport, state tls.ConnectionState, gc *guardedConn) {
	lim := s.limits()
	c := &h2conn{
		e:          e,
		s:          s,
		tc:         tc,
		gc:         gc,
		handler:    s.srv.Handler,
		state:      state,
		remote:     tc.RemoteAddr().String(),
		idle:       lim.IdleTimeout,
		streams:    make(map[uint32]*h2stream),
		wdeadline:  slackDeadline{born: time.Now()},
		sendWindow: 65535,
		recvWindow: h2ConnWindow,
		peerWindow: 65535,
		peerFrame:  16384,
	}
	c.cond.L = &c.mu
	c.fr = http2.NewFramer(&c.out, tc)
	c.fr.SetMaxReadFrameSize(h2MaxFrame)
	// Header blocks are assembled by h2block, not the Framer. A field
	// longer than the list limit is refused (as a connection error); the
	// engine's own limit, checked in request, answers 431 like HTTP/1.1,
	// so the list limit is set well above it.
	c.maxHeader = lim.MaxHeaderBytes
	c.fr.MaxHeaderListSize = uint32(min(4*lim.MaxHeaderBytes, 1<<20))
	c.blk = newH2Block(c.fr.MaxHeaderListSize)
	c.henc = hpack.NewEncoder(&c.hbuf)
	if !s.h2conns.add(c) {
		tc.Close()
		s.closed(gc)
		return
	}
	defer func() {
		// Responses finished just before the end still go out.
		c.mu.Lock()
		c.flushLocked()
		away := c.goingAway
		c.mu.Unlock()
		c.fail(net.ErrClosed)
		c.wmu.Lock()
		if away {
			c.linger()
		}
		tc.Close()
		c.wmu.Unlock()
		s.h2conns.remove(c)
		s.closed(gc)
	}()
	if err := c.serve(lim.ReadHeaderTimeout); err != nil {
		c.e.log.Debug("HTTP/2 connection ended", "listener", s.name, "remote", c.remote, "err", err.Error())
	}
}

// linger closes the sending side after a GOAWAY and reads what the client
// still sends, for a bounded time, before the socket is closed: closing a
// socket with unread input sends a TCP reset, which can discard the GOAWAY
// before the client reads it (nginx's lingering close, net/http's wait).
func (c *h2conn) linger() {
	c.tc.CloseWrite() // TLS close_notify
	raw := c.gc.Conn
	if cw, ok := raw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite() // FIN
	}
	raw.SetReadDeadline(time.Now().Add(h2Linger))
	io.Copy(io.Discard, io.LimitReader(raw, h2LingerBytes))
}

const (
	h2Linger      = time.Second
	h2LingerBytes = 1 << 20
)

// serve reads frames until the connection ends.
func (c *h2conn) serve(prefaceTimeout time.Duration) error {
	c.tc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.tc, preface[:]); err != nil {
		return fmt.Errorf("reading the client preface: %w", err)
	}
	if string(preface[:]) != http2.ClientPreface {
		return errors.New("bad client preface")
	}
	c.mu.Lock()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(c.maxHeader)},
	)
	c.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	err := c.flushLocked()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	first := true
	for {
		f, err := c.fr.ReadFrame()
		if err == nil && first {
			sf, ok := f.(*http2.SettingsFrame)
			if !ok || sf.IsAck() {
				return c.goAway(http2.ErrCodeProtocol, errors.New("first frame is not SETTINGS"))
			}
			first = false
			c.mu.Lock()
			c.idleCheck()
			c.mu.Unlock()
		}
		if hf, ok := f.(*http2.HeadersFrame); ok && err == nil {
			f, err = c.blk.read(c.fr, hf)
		}
		if err == nil {
			err = c.frame(f)
		}
		if err == nil {
			continue
		}
		var se http2.StreamError
		var ce http2.ConnectionError
		var ne net.Error
		switch {
		case errors.As(err, &se):
			if err := c.streamError(se); err != nil {
				return err
			}
		case errors.As(err, &ce):
			return c.goAway(http2.ErrCode(ce), err)
		case errors.Is(err, http2.ErrFrameTooLarge):
			return c.goAway(http2.ErrCodeFrameSize, err)
		case errors.Is(err, h2Done):
			return nil
		case errors.As(err, &ne) && ne.Timeout():
			// Idle, or a drain or the client's GOAWAY ended it.
			c.mu.Lock()
			if !c.goingAway {
				c.goingAway = true
				c.fr.WriteGoAway(c.maxID, http2.ErrCodeNo, nil)
			}
			c.flushLocked()
			c.mu.Unlock()
			return nil
		default:
			return err
		}
	}
}

// h2Done ends serve without an error to report.
var h2Done = errors.New("connection done")

// frame handles one frame from the client.
func (c *h2conn) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.headers(f)
	case *http2.DataFrame:
		return c.data(f)
	case *http2.SettingsFrame:
		return c.settings(f)
	case *http2.WindowUpdateFrame:
		return c.windowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		if f.StreamID != 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.fr.WritePing(true, f.Data)
		return c.flushLocked()
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		defer c.mu.Unlock()
		if f.StreamID > c.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if st := c.streams[f.StreamID]; st != nil {
			c.endStream(st, true)
		}
		return c.flushUpdates()
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
		return nil
	case *http2.GoAwayFrame:
		c.mu.Lock()
		defer c.mu.Unlock()
		c.peerAway = true
		if len(c.streams) == 0 && c.handlers == 0 {
			return h2Done
		}
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	case *http2.HeadersFrame, *http2.ContinuationFrame:
		// serve assembles header blocks into MetaHeadersFrames.
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // unknown frame types are ignored (RFC 9113 §5.5)
}

// streamError resets one stream; the connection goes on.
func (c *h2conn) streamError(se http2.StreamError) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if se.StreamID > c.maxID && se.StreamID%2 == 1 {
		// A stream that failed while being opened (a malformed header
		// block) still used its id.
		c.maxID = se.StreamID
	}
	if st := c.streams[se.StreamID]; st != nil {
		c.endStream(st, true)
	}
	c.fr.WriteRSTStream(se.StreamID, se.Code)
	return c.flushLocked()
}

// goAway ends the connection with an error code.
func (c *h2conn) goAway(code http2.ErrCode, err error) error {
	c.mu.Lock()
	c.goingAway = true
	c.fr.WriteGoAway(c.maxID, code, nil)
	c.flushLocked()
	c.mu.Unlock()
	if errors.Is(err, h2Done) {
		return nil
	}
	return err
}

// shutdown starts a graceful close: no new streams, the open ones finish.
func (c *h2conn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.goingAway || c.err != nil {
		return
	}
	c.goingAway = true
	c.fr.WriteGoAway(c.maxID, http2.ErrCodeNo, nil)
	c.flushLocked()
	if len(c.streams) == 0 && c.handlers == 0 {
		c.tc.SetReadDeadline(time.Now())
	}
}

// settings applies the client's SETTINGS.
func (c *h2conn) settings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerWindow
			c.peerWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > h2MaxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerFrame = s.Val
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.fr.WriteSettingsAck()
	c.cond.Broadcast()
	return c.flushLocked()
}

// windowUpdate grows a send window.
func (c *h2conn) windowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.sendWindow += inc
		if c.sendWindow > h2MaxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.cond.Broadcast()
		return nil
	}
	if f.StreamID > c.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	st := c.streams[f.StreamID]
	if st == nil {
		return nil // closed: ignored
	}
	st.sendWindow += inc
	if st.sendWindow > h2MaxWindow {
		return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
	}
	c.cond.Broadcast()
	return nil
}

// data delivers request body bytes.
func (c *h2conn) data(f *http2.DataFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.flushUpdates()
	id := f.StreamID
	n := int64(f.Length)
	if id > c.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	// Connection-level flow control counts every DATA frame, padding
	// included, whatever happens to the stream.
	if n > c.recvWindow {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWindow -= n
	st := c.streams[id]
	if st == nil || st.remoteClosed || st.body == nil {
		c.credit(nil, n)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	if n > st.recvWindow {
		c.credit(nil, n)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	st.recvWindow -= n
	data := f.Data()
	st.received += int64(len(data))
	if st.declared >= 0 && st.received > st.declared {
		c.credit(nil, n)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if pad := n - int64(len(data)); pad > 0 {
		c.credit(st, pad)
	}
	if len(data) > 0 && !st.body.write(data) {
		// The handler closed the body or returned: the bytes are
		// dropped, their window given back.
		c.credit(nil, int64(len(data)))
	}
	if f.StreamEnded() {
		if st.declared >= 0 && st.received != st.declared {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
		}
		st.remoteClosed = true
		st.body.closeWith(io.EOF, nil)
		c.maybeForget(st)
	}
	return nil
}

// credit returns n bytes of receive window (to the stream too, when st is
// not nil), sending WINDOW_UPDATEs once a quarter of a window is owed.
func (c *h2conn) credit(st *h2stream, n int64) {
	if n == 0 {
		return
	}
	c.recvUnsent += n
	if c.recvUnsent >= h2ConnWindow/4 {
		c.fr.WriteWindowUpdate(0, uint32(c.recvUnsent))
		c.recvWindow += c.recvUnsent
		c.recvUnsent = 0
		c.updated = true
	}
	if st == nil || st.remoteClosed || st.reset {
		return
	}
	st.recvUnsent += n
	if st.recvUnsent >= h2StreamWindow/4 {
		c.fr.WriteWindowUpdate(st.id, uint32(st.recvUnsent))
		st.recvWindow += st.recvUnsent
		st.recvUnsent = 0
		c.updated = true
	}
}

// headers opens a stream, or ends one with trailers.
func (c *h2conn) headers(f *http2.MetaHeadersFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		if id > c.maxID {
			c.maxID = id
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if st := c.streams[id]; st != nil {
		if st.remoteClosed {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
		}
		return c.trailers(st, f)
	}
	if id <= c.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.maxID = id
	if c.goingAway {
		return nil // ignored: past the GOAWAY
	}
	c.s.firstRequest(c.gc) // the connection's first; later calls do nothing
	if c.handlers >= h2MaxStreams {
		c.refused++
		if c.refused > h2RefusedLimit {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	hd, err := c.head(f)
	if err != nil {
		return err
	}
	if f.StreamEnded() && hd.length > 0 {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	st := &h2stream{
		c:            c,
		hd:           hd,
		id:           id,
		sendWindow:   c.peerWindow,
		recvWindow:   h2StreamWindow,
		remoteClosed: f.StreamEnded(),
		declared:     hd.length,
	}
	st.w = h2writer{st: st, head: hd.method == http.MethodHead}
	if !f.StreamEnded() {
		st.body = &h2body{st: st, needContinue: hd.expect, gap: c.idle}
		st.body.cond.L = &st.body.mu
	}
	// The route may be served on the fast path (h2fast.go): no
	// http.Request, no header map.
	var rt *route
	if hd.fast && !hd.tooLarge {
		if l := c.s.listener(); l != nil {
			rt = l.h2FastRoute(&hd)
		}
	}
	var r *http.Request
	var cancel context.CancelFunc = func() {}
	if rt == nil {
		// Not derived from a connection context: a parent keeps a map
		// of its children, which an idle connection would hold. fail
		// cancels the streams instead.
		var ctx context.Context
		ctx, cancel = context.WithCancel(context.Background())
		if r, err = c.request(ctx, f, &hd); err != nil {
			cancel()
			return err
		}
		if st.body != nil {
			r.Body = st.body
		} else {
			r.ContentLength = 0
		}
		st.w.req = r
	}
	if len(c.streams) == 0 {
		c.tc.SetReadDeadline(time.Time{})
	}
	c.streams[id] = st
	st.cancel = cancel
	c.handlers++
	st.rt, st.frame = rt, f
	h2pool.run(st)
	return nil
}

// trailers ends a request body with trailer fields.
func (c *h2conn) trailers(st *h2stream, f *http2.MetaHeadersFrame) error {
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	if st.declared >= 0 && st.received != st.declared {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	tr := make(http.Header)
	for _, hf := range f.RegularFields() {
		tr.Add(http.CanonicalHeaderKey(hf.Name), hf.Value)
	}
	st.remoteClosed = true
	if st.body != nil {
		st.body.closeWith(io.EOF, tr)
	}
	c.maybeForget(st)
	return nil
}

// h2head is a new stream's request head, checked.
type h2head struct {
	method, path, authority string
	length                  int64 // content-length, or -1
	fast                    bool  // nothing in it keeps it off the fast path
	expect                  bool  // Expect: 100-continue
	tooLarge                bool  // over max_header_bytes: 431
}

// head checks a new stream's header block (RFC 9113 §8.3); a malformed
// request is a stream error.
func (c *h2conn) head(f *http2.MetaHeadersFrame) (h2head, error) {
	bad := http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
	hd := h2head{
		method:    f.PseudoValue("method"),
		path:      f.PseudoValue("path"),
		authority: f.PseudoValue("authority"),
		length:    -1,
	}
	scheme := f.PseudoValue("scheme")
	if f.PseudoValue("protocol") != "" || f.PseudoValue("status") != "" {
		return hd, bad
	}
	if hd.method == http.MethodConnect {
		if hd.path != "" || scheme != "" || hd.authority == "" {
			return hd, bad
		}
	} else if hd.method == "" || hd.path == "" || scheme == "" {
		return hd, bad
	} else {
		hd.fast = true
	}
	size := 0
	for _, hf := range f.Fields {
		size += len(hf.Name) + len(hf.Value) + 32 // RFC 9113 §6.5.2
		if hf.IsPseudo() {
			continue
		}
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return hd, bad
		case "te":
			if hf.Value != "trailers" {
				return hd, bad
			}
			hd.fast = false // the reverse proxy forwards trailers
		case "trailer":
			hd.fast = false
		case "expect":
			hd.expect = strings.EqualFold(hf.Value, "100-continue")
		case "content-length":
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || hd.length >= 0 && n != hd.length {
				return hd, bad
			}
			hd.length = n
		case "host":
			if hd.authority == "" {
				hd.authority = hf.Value
			}
		}
	}
	hd.tooLarge = f.Truncated || size > c.maxHeader
	return hd, nil
}

// request builds the http.Request of a new stream for the engine's handler.
func (c *h2conn) request(ctx context.Context, f *http2.MetaHeadersFrame, hd *h2head) (*http.Request, error) {
	bad := http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
	regular := f.RegularFields()
	h := make(http.Header, len(regular)+1)
	var cookies []string
	for _, hf := range regular {
		if hf.Name == "cookie" {
			cookies = append(cookies, hf.Value)
			continue
		}
		k := http.CanonicalHeaderKey(hf.Name)
		h[k] = append(h[k], hf.Value)
	}
	if len(cookies) > 0 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	isConnect := hd.method == http.MethodConnect
	u := &url.URL{Host: hd.authority}
	if !isConnect {
		var err error
		if u, err = url.ParseRequestURI(hd.path); err != nil {
			return nil, bad
		}
	}
	// The request carries the stream's context from the start (WithContext
	// would copy it).
	r, err := http.NewRequestWithContext(ctx, hd.method, "", nil)
	if err != nil {
		return nil, bad
	}
	r.URL = u
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Header = h
	r.Host = hd.authority
	r.RemoteAddr = c.remote
	r.RequestURI = hd.path
	if isConnect {
		r.RequestURI = hd.authority
	}
	r.TLS = &c.state
	r.Body = http.NoBody
	r.ContentLength = hd.length
	if vv := h["Trailer"]; len(vv) > 0 {
		r.Trailer = make(http.Header)
		for _, v := range vv {
			for name := range strings.SplitSeq(v, ",") {
				if name = http.CanonicalHeaderKey(strings.TrimSpace(name)); name != "" {
					r.Trailer[name] = nil
				}
			}
		}
	}
	return r, nil
}

// serveStream runs a stream's handler on a pooled goroutine: the fast path
// (h2fast.go), the answer to a head too large, or the handler chain with
// the http.Request built for it. A panic resets the stream
// (http.ErrAbortHandler quietly, as net/http does).
func (st *h2stream) serveStream() {
	c := st.c
	defer c.handlerDone(st)
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				c.e.log.Error("handler panicked", "listener", c.s.name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
			c.resetStream(st, http2.ErrCodeInternal)
		}
	}()
	switch {
	case st.rt != nil:
		c.runFast(st, st.rt, st.frame, &st.hd)
	case st.hd.tooLarge:
		// Answered as HTTP/1.1's fast path answers it.
		h2Problem(&st.w, http.StatusRequestHeaderFieldsTooLarge, "request header fields too large", "")
	default:
		c.handler.ServeHTTP(&st.w, st.w.req)
		st.w.finish()
	}
}

// handlerDone accounts for a handler that returned.
func (c *h2conn) handlerDone(st *h2stream) {
	st.cancel()
	c.mu.Lock()
	c.handlers--
	if !st.localClosed {
		// The handler ended without a complete response (a panic
		// already reset it, or it never finished).
		c.endStream(st, false)
		c.fr.WriteRSTStream(st.id, http2.ErrCodeInternal)
	}
	if st.body != nil {
		c.credit(nil, st.body.closeWith(errH2HandlerDone, nil))
	}
	c.idleCheck()
	c.mu.Unlock()
	c.flushSoon()
}

var errH2HandlerDone = errors.New("http2: request body read after the handler returned")

// resetStream aborts a stream from the server's side.
func (c *h2conn) resetStream(st *h2stream, code http2.ErrCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.localClosed || st.reset {
		return
	}
	c.endStream(st, true)
	c.fr.WriteRSTStream(st.id, code)
}

// endStream closes st for good: reset by either side when reset is true.
func (c *h2conn) endStream(st *h2stream, reset bool) {
	if reset {
		st.reset = true
		st.cancel()
		if st.body != nil {
			c.credit(nil, st.body.closeWith(errH2StreamReset, nil))
		}
	}
	st.localClosed = true
	st.remoteClosed = true
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
	}
	c.cond.Broadcast()
	c.idleCheck()
}

var errH2StreamReset = errors.New("http2: stream reset")

// maybeForget drops a stream closed in both directions.
func (c *h2conn) maybeForget(st *h2stream) {
	if st.remoteClosed && st.localClosed && c.streams[st.id] == st {
		delete(c.streams, st.id)
		c.idleCheck()
	}
}

// idleCheck arms the idle timeout, or ends a connection going away, when no
// stream is left.
func (c *h2conn) idleCheck() {
	if len(c.streams) > 0 || c.handlers > 0 {
		return
	}
	if c.goingAway || c.peerAway {
		c.tc.SetReadDeadline(time.Now())
		return
	}
	if c.idle > 0 {
		c.tc.SetReadDeadline(time.Now().Add(c.idle))
	}
}

// fail marks the connection broken and wakes everyone waiting on it.
func (c *h2conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	for _, st := range c.streams {
		st.cancel()
		if st.body != nil {
			st.body.closeWith(err, nil)
		}
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

// flushLocked writes the buffered frames now. c.mu is held; the socket
// write happens under wmu only, so the reader is not held up by it.
func (c *h2conn) flushLocked() error {
	c.updated = false
	if c.err != nil {
		return c.err
	}
	if len(c.out.b) == 0 {
		return nil
	}
	t := c.out.take()
	c.wmu.Lock()
	c.mu.Unlock()
	c.armWrite()
	_, err := c.tc.Write(t.b)
	c.wmu.Unlock()
	c.mu.Lock()
	t.release(&h2bufPool, h2bufMax)
	if err != nil && c.err == nil {
		c.err = err
		c.cond.Broadcast()
		c.tc.SetReadDeadline(time.Now())
	}
	return err
}

// armWrite gives the write about to start at least h2WriteTimeout, moving
// the deadline only when less is left (slackDeadline), where it was moved
// for every flush. Called under wmu.
func (c *h2conn) armWrite() {
	if t, ok := c.wdeadline.extend(time.Since(c.wdeadline.born), h2WriteTimeout); ok {
		c.tc.SetWriteDeadline(t)
	}
}

// giveBack returns n bytes of receive window (the stream's too, when st is
// not nil) from a handler, and sends the WINDOW_UPDATE it may complete.
func (c *h2conn) giveBack(st *h2stream, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.credit(st, n)
	c.flushUpdates()
}

// flushUpdates sends WINDOW_UPDATEs the reader wrote, at once: the client
// may be waiting for them.
func (c *h2conn) flushUpdates() error {
	if !c.updated {
		return nil
	}
	return c.flushLocked()
}

// h2buf is a byte buffer drawn from a pool on first use and given back with
// the pool's slot for it (p), so a Put allocates nothing and an idle
// connection or stream holds none. As an io.Writer it draws from h2bufPool.
type h2buf struct {
	b []byte
	p *[]byte
}

// from makes sure w's buffer is drawn, from pool.
func (w *h2buf) from(pool *sync.Pool) {
	if w.p == nil {
		w.p = pool.Get().(*[]byte)
		w.b = (*w.p)[:0]
	}
}

func (w *h2buf) Write(p []byte) (int, error) {
	w.from(&h2bufPool)
	w.b = append(w.b, p...)
	return len(p), nil
}

// take hands over what was written; release gives it back.
func (w *h2buf) take() h2buf {
	t := *w
	*w = h2buf{}
	return t
}

// release gives w's buffer back to pool, unless a burst grew it past max
// (then it is let go), and empties w.
func (w *h2buf) release(pool *sync.Pool, max int) {
	if w.p != nil && cap(w.b) <= max {
		*w.p = w.b[:0]
		pool.Put(w.p)
	}
	*w = h2buf{}
}

// h2bufMax is the largest framing buffer given back to h2bufPool.
const h2bufMax = 64 << 10

var h2bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4096)
	return &b
}}

// h2FlushAt is how much framed output a connection gathers before it
// writes, whatever else is pending.
const h2FlushAt = 32 << 10

// h2WriteTimeout bounds one write to the client: a client that stops
// reading loses its connection instead of holding it forever.
const h2WriteTimeout = 30 * time.Second

// flushSoon flushes what finished responses left in the buffer, after
// letting other ready handlers add theirs: one write for all of them. The
// first handler to find output waiting yields and flushes; those that
// finish while it yields leave theirs to it and return at once, instead of
// each yielding in turn.
func (c *h2conn) flushSoon() {
	c.mu.Lock()
	if len(c.out.b) == 0 || c.flushing {
		c.mu.Unlock()
		return
	}
	c.flushing = true
	c.mu.Unlock()
	runtime.Gosched()
	c.mu.Lock()
	c.flushing = false
	c.flushLocked() // nothing to do if another write took it meanwhile
	c.mu.Unlock()
}

// h2body is a request body fed by DATA frames.
type h2body struct {
	st           *h2stream
	mu           sync.Mutex
	cond         sync.Cond
	chunks       [][]byte
	err          error // set once: io.EOF or why the body ended
	trailer      http.Header
	needContinue bool
	gap          time.Duration // longest wait for the next byte; 0: none
	timer        *time.Timer
	waiting      bool
}

// expire ends a body whose reader has waited its gap for the next byte.
func (b *h2body) expire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting && len(b.chunks) == 0 && b.err == nil {
		b.err = errH2BodyTimeout
		b.cond.Broadcast()
	}
}

// errH2BodyTimeout is a request body the client stopped sending.
var errH2BodyTimeout = errors.New("http2: the client sent no request body bytes for idle_timeout")

// write queues p for the handler; false when the body is closed.
func (b *h2body) write(p []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return false
	}
	b.chunks = append(b.chunks, bytes.Clone(p))
	b.cond.Signal()
	return true
}

// closeWith ends the body: io.EOF after the last DATA frame (what is queued
// stays readable), any other error drops what is queued. It returns the
// bytes dropped, whose connection window the caller gives back.
func (b *h2body) closeWith(err error, trailer http.Header) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err, b.trailer = err, trailer
		b.cond.Broadcast()
	}
	if err == io.EOF {
		return 0
	}
	var n int64
	for _, ch := range b.chunks {
		n += int64(len(ch))
	}
	b.chunks = nil
	return n
}

func (b *h2body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.needContinue {
		b.needContinue = false
		if len(b.chunks) == 0 && b.err == nil {
			b.mu.Unlock()
			b.st.w.sendContinue()
			b.mu.Lock()
		}
	}
	for len(b.chunks) == 0 && b.err == nil {
		// A client that stops sending a body it started does not hold
		// the stream (and its upstream exchange) forever.
		if b.gap > 0 {
			if b.timer == nil {
				b.timer = time.AfterFunc(b.gap, b.expire)
			} else {
				b.timer.Reset(b.gap)
			}
		}
		b.waiting = true
		b.cond.Wait()
		b.waiting = false
	}
	if b.timer != nil {
		b.timer.Stop()
	}
	if len(b.chunks) == 0 {
		err := b.err
		if err == io.EOF && b.trailer != nil {
			if r := b.st.w.req; r != nil && r.Trailer != nil {
				for k, v := range b.trailer {
					r.Trailer[k] = v
				}
			}
			b.trailer = nil
		}
		b.mu.Unlock()
		return 0, err
	}
	n := copy(p, b.chunks[0])
	if n == len(b.chunks[0]) {
		b.chunks[0] = nil
		b.chunks = b.chunks[1:]
	} else {
		b.chunks[0] = b.chunks[0][n:]
	}
	b.mu.Unlock()
	b.st.c.giveBack(b.st, int64(n))
	return n, nil
}

func (b *h2body) Close() error {
	b.st.c.giveBack(nil, b.closeWith(errH2BodyClosed, nil))
	return nil
}

var errH2BodyClosed = errors.New("http2: request body closed")

// h2writer is a stream's http.ResponseWriter. Its methods run on the
// handler's goroutine only.
type h2writer struct {
	st          *h2stream
	req         *http.Request
	header      http.Header
	status      int
	wroteHeader bool
	sentHeader  bool
	declared    int64 // Content-Length set by the handler, or -1
	written     int64
	body        h2buf // DATA not yet framed, drawn from h2bufs
	noBody      bool  // HEAD, or a status without a body
	head        bool  // a HEAD request
	// fast, on the fast path, is the upstream's response header, encoded
	// as it is (without an http.Header) with the request id.
	fast *fasthttp.ResponseHeader
	id   string
}

func (w *h2writer) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

func (w *h2writer) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.informational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	w.declared = -1
	if cl := w.Header().Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.declared = n
		} else {
			w.header.Del("Content-Length")
		}
	}
	w.noBody = w.head || !bodyAllowed(code)
}

func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

func (w *h2writer) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		if w.head {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, http.ErrContentLength
	}
	if w.written == 0 && len(p) > 0 && !w.sentHeader && w.fast == nil {
		w.sniff(p)
	}
	w.written += int64(len(p))
	n := len(p)
	for len(p) > 0 {
		room := h2BodyChunk - len(w.body.b)
		if room == 0 {
			if err := w.emit(false); err != nil {
				return n - len(p), err
			}
			continue
		}
		take := min(room, len(p))
		w.body.from(&h2bufs)
		w.body.b = append(w.body.b, p[:take]...)
		p = p[take:]
	}
	return n, nil
}

// sniff sets Content-Type from the first bytes when the handler set none,
// as net/http does.
func (w *h2writer) sniff(p []byte) {
	if _, ok := w.header["Content-Type"]; ok {
		return
	}
	if w.header.Get("Content-Encoding") != "" {
		return
	}
	w.header.Set("Content-Type", http.DetectContentType(p))
}

// Flush sends what the handler wrote so far.
func (w *h2writer) Flush() { w.FlushError() }

// FlushError is Flush for http.ResponseController.
func (w *h2writer) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if err := w.emit(false); err != nil {
		return err
	}
	c := w.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

// finish completes the response after the handler returned.
func (w *h2writer) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.declared >= 0 && w.written < w.declared && !w.noBody {
		// Fewer bytes than promised: the client must not take the
		// response as complete.
		w.st.c.resetStream(w.st, http2.ErrCodeInternal)
		return
	}
	w.emit(true)
}

// sendContinue answers Expect: 100-continue when the handler first reads.
func (w *h2writer) sendContinue() { w.interim(http.StatusContinue, nil) }

// informational sends a 1xx response the handler wrote (103 Early Hints
// and the like), with its header fields.
func (w *h2writer) informational(code int) { w.interim(code, w.header) }

func (w *h2writer) interim(code int, h http.Header) {
	c := w.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.sentHeader || w.st.localClosed || c.err != nil {
		return
	}
	if err := c.writeHeaderBlock(w.st.id, false, func(enc *hpack.Encoder) {
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(code)})
		encodeFields(enc, h, nil)
	}); err == nil {
		c.flushLocked()
	}
}

// emit frames the response so far: the header block first, then the
// buffered body; with end, the stream's last frame (with trailers if the
// handler set any).
func (w *h2writer) emit(end bool) error {
	st, c := w.st, w.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.reset || st.localClosed {
		return errH2StreamReset
	}
	if c.err != nil {
		return c.err
	}
	var trailers http.Header
	if end {
		trailers = w.trailers()
	}
	if !w.sentHeader {
		w.sentHeader = true
		endHeaders := end && len(w.body.b) == 0 && trailers == nil
		if end && w.declared < 0 && trailers == nil && !w.noBody {
			w.declared = w.written
			if w.fast == nil {
				w.Header()["Content-Length"] = []string{strconv.FormatInt(w.written, 10)}
			}
		}
		if err := c.writeHeaderBlock(st.id, endHeaders, func(enc *hpack.Encoder) {
			enc.WriteField(hpack.HeaderField{Name: ":status", Value: h2Status(w.status)})
			if w.fast != nil {
				encodeFast(enc, w.fast, w.id, w.declared, &c.fastVals)
				return
			}
			encodeFields(enc, w.header, trailers)
			if _, ok := w.header["Date"]; !ok {
				enc.WriteField(hpack.HeaderField{Name: "date", Value: httpDate()})
			}
		}); err != nil {
			return err
		}
		if endHeaders {
			return c.closeLocal(st)
		}
	}
	data := w.body.b
	for len(data) > 0 || end && trailers == nil {
		n, err := c.awaitWindow(st, len(data))
		if err != nil {
			return err
		}
		last := end && trailers == nil && n == len(data)
		if err := c.fr.WriteData(st.id, last, data[:n]); err != nil {
			return err
		}
		data = data[n:]
		if last {
			break
		}
		if len(c.out.b) >= h2FlushAt {
			// A large response goes out as it is framed, not
			// gathered whole in the connection's buffer.
			if err := c.flushLocked(); err != nil {
				return err
			}
		}
	}
	if !end {
		w.body.b = w.body.b[:0]
		return nil
	}
	w.body.release(&h2bufs, h2BodyChunk)
	if trailers != nil {
		if err := c.writeHeaderBlock(st.id, true, func(enc *hpack.Encoder) {
			encodeFields(enc, trailers, nil)
		}); err != nil {
			return err
		}
	}
	return c.closeLocal(st)
}

// closeLocal notes the response's end. A client still sending its body is
// told to stop (RFC 9113 §8.1).
func (c *h2conn) closeLocal(st *h2stream) error {
	st.localClosed = true
	if !st.remoteClosed {
		c.fr.WriteRSTStream(st.id, http2.ErrCodeNo)
		c.endStream(st, true)
		return nil
	}
	c.maybeForget(st)
	return nil
}

// awaitWindow returns how many of want bytes the flow-control windows let
// the stream send now (0 only when want is 0), waiting for the client to
// open them; the buffer is flushed before waiting so the client sees what
// it has to acknowledge.
func (c *h2conn) awaitWindow(st *h2stream, want int) (int, error) {
	if want == 0 {
		return 0, nil
	}
	for {
		if st.reset {
			return 0, errH2StreamReset
		}
		if c.err != nil {
			return 0, c.err
		}
		n := min(int64(want), int64(c.peerFrame), st.sendWindow, c.sendWindow)
		if n > 0 {
			st.sendWindow -= n
			c.sendWindow -= n
			return int(n), nil
		}
		if len(c.out.b) > 0 {
			if err := c.flushLocked(); err != nil {
				return 0, err
			}
			continue
		}
		c.cond.Wait()
	}
}

// writeHeaderBlock encodes a header block and writes it as HEADERS and
// CONTINUATION frames within the client's frame size.
func (c *h2conn) writeHeaderBlock(id uint32, endStream bool, fill func(*hpack.Encoder)) error {
	fill(c.henc)
	t := c.hbuf.take()
	defer t.release(&h2bufPool, h2bufMax)
	block := t.b
	max := int(c.peerFrame)
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), max)]
		block = block[len(frag):]
		var err error
		if first {
			err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: endStream, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = c.fr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// encodeFields writes h's fields in lower case, leaving out what HTTP/2
// forbids and the trailers announced for the end.
func encodeFields(enc *hpack.Encoder, h http.Header, trailers http.Header) {
	for k, vv := range h {
		if h2Forbidden[k] || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		if _, isTrailer := trailers[k]; isTrailer && k != "Trailer" {
			continue
		}
		name := h2Name(k)
		if !httpguts.ValidHeaderFieldName(name) {
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			// A request id is new on every response: indexing it would
			// only push reusable fields out of the table.
			enc.WriteField(hpack.HeaderField{Name: name, Value: v, Sensitive: k == headerRequestID})
		}
	}
}

// trailers collects the trailer fields the handler set: those announced
// in a Trailer header and those under http.TrailerPrefix. nil when none.
func (w *h2writer) trailers() http.Header {
	var out http.Header
	for _, v := range w.header["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			if vv := w.header[name]; len(vv) > 0 {
				if out == nil {
					out = make(http.Header)
				}
				out[name] = vv
			}
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && len(vv) > 0 {
			if out == nil {
				out = make(http.Header)
			}
			out[http.CanonicalHeaderKey(name)] = vv
		}
	}
	return out
}

// h2bufs holds response body buffers between responses.
var h2bufs = sync.Pool{New: func() any {
	b := make([]byte, 0, h2BodyChunk)
	return &b
}}

// h2Forbidden are connection-specific fields HTTP/2 does not carry.
var h2Forbidden = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Transfer-Encoding": true, "Upgrade": true,
}

// h2Name is a field name as HTTP/2 sends it, in lower case.
func h2Name(k string) string {
	if name, ok := h2KnownName(k); ok {
		return name
	}
	return strings.ToLower(k)
}

// h2KnownName spells out the lower-case names of the fields responses
// commonly carry, given in canonical form: a switch compares them without
// hashing or allocating. ok is false for other names.
func h2KnownName(k string) (name string, ok bool) {
	switch k {
	case "Accept-Ranges":
		return "accept-ranges", true
	case "Access-Control-Allow-Origin":
		return "access-control-allow-origin", true
	case "Age":
		return "age", true
	case "Cache-Control":
		return "cache-control", true
	case "Content-Disposition":
		return "content-disposition", true
	case "Content-Encoding":
		return "content-encoding", true
	case "Content-Language":
		return "content-language", true
	case "Content-Length":
		return "content-length", true
	case "Content-Location":
		return "content-location", true
	case "Content-Range":
		return "content-range", true
	case "Content-Type":
		return "content-type", true
	case "Date":
		return "date", true
	case "Etag":
		return "etag", true
	case "Expires":
		return "expires", true
	case "Last-Modified":
		return "last-modified", true
	case "Link":
		return "link", true
	case "Location":
		return "location", true
	case "Retry-After":
		return "retry-after", true
	case "Server":
		return "server", true
	case "Set-Cookie":
		return "set-cookie", true
	case "Strict-Transport-Security":
		return "strict-transport-security", true
	case "Trailer":
		return "trailer", true
	case "Vary":
		return "vary", true
	case "Www-Authenticate":
		return "www-authenticate", true
	case "X-Content-Type-Options":
		return "x-content-type-options", true
	case "X-Frame-Options":
		return "x-frame-options", true
	case "X-Request-Id":
		return "x-request-id", true
	case "Ratelimit":
		return "ratelimit", true
	case "Ratelimit-Policy":
		return "ratelimit-policy", true
	}
	return "", false
}

// h2Status is a status code as the :status field.
func h2Status(code int) string {
	switch code {
	case 200:
		return "200"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

// httpDate is the Date field, formatted once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := h2date.Load(); d != nil && d.unix == now {
		return d.text
	}
	d := &dateText{unix: now, text: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	h2date.Store(d)
	return d.text
}

type dateText struct {
	unix int64
	text string
}

var h2date atomic.Pointer[dateText]

// h2pool runs the streams' handlers on pooled goroutines, which keep the
// stack a handler grew: a new goroutine per request would grow (and copy)
// it again.
var h2pool h2workers

// h2task is what a pooled goroutine runs.
type h2task interface{ serveStream() }

// h2WorkerIdle is how long a pooled goroutine stays idle before it ends
// (between one and two of these).
const h2WorkerIdle = 10 * time.Second

// h2workers is a stack of idle goroutines, the most recently used on top, so
// the ones at the bottom stay idle and end. Handing a worker its next
// function is a lock and a buffered send: no timer is touched per request
// (a worker waiting in a select on its idle timer had to reset and arm
// the timer for every function it ran). A cleaner, running while workers
// exist, counts periods of h2WorkerIdle and ends the workers idle since
// before the last one.
type h2workers struct {
	every    time.Duration // the period; 0: h2WorkerIdle
	mu       sync.Mutex
	idle     []*h2worker
	live     int // workers, idle or not
	period   int // the cleaner's count
	cleaning bool
}

type h2worker struct {
	next   chan h2task // nil ends the worker
	period int         // when it last went idle
}

func (p *h2workers) run(f h2task) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.next <- f
		return
	}
	p.live++
	start := !p.cleaning
	p.cleaning = true
	p.mu.Unlock()
	if start {
		go p.clean()
	}
	go p.work(&h2worker{next: make(chan h2task, 1)}, f)
}

func (p *h2workers) work(w *h2worker, f h2task) {
	for f != nil {
		f.serveStream()
		p.mu.Lock()
		w.period = p.period
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		f = <-w.next
	}
}

func (p *h2workers) clean() {
	every := p.every
	if every == 0 {
		every = h2WorkerIdle
	}
	for {
		time.Sleep(every)
		p.mu.Lock()
		p.period++
		done := dropOldest(&p.idle, func(w *h2worker) bool { return w.period < p.period-1 })
		p.live -= len(done)
		last := p.live == 0
		if last {
			p.cleaning = false
		}
		p.mu.Unlock()
		for _, w := range done {
			w.next <- nil
		}
		if last {
			return
		}
	}
}

// h2conns tracks a listener's HTTP/2 connections for drain.
type h2conns struct {
	mu     sync.Mutex
	conns  map[*h2conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func (t *h2conns) add(c *h2conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.conns == nil {
		t.conns = make(map[*h2conn]struct{})
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *h2conns) remove(c *h2conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.wg.Done()
}

// shutdown sends every connection a GOAWAY, waits for their streams to
// finish within ctx, then closes what is left.
func (t *h2conns) shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	conns := make([]*h2conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		for c := range t.conns {
			c.tc.Close()
		}
		t.mu.Unlock()
		<-done
		return ctx.Err()
	}
}
