package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/sealgate/sealgate/appliance/problem"
)

// scratch is a reusable request for ServeMux lookups.
type scratch struct {
	r http.Request
	u url.URL
}

var scratchPool = sync.Pool{New: func() any {
	s := &scratch{}
	s.r.URL = &s.u
	return s
}}

// bstr views b as a string for a lookup that does not keep it.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

const sealPrefix = "/.well-known/sealgate/"

// fastRoute returns the route that serves ctx's request on the fast path, or
// nil when net/http must serve it.
func (l *listenerGen) fastRoute(ctx *fasthttp.RequestCtx) *route {
	if !l.anyFast {
		return nil
	}
	h := &ctx.Request.Header
	uri := h.RequestURI()
	if len(uri) == 0 || uri[0] != '/' || !h.IsHTTP11() {
		return nil
	}
	path := uri
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		path = uri[:i]
	}
	if !plainPath(path) || bytes.HasPrefix(path, []byte(sealPrefix)) {
		return nil
	}
	// One pass over the header fields rather than a lookup each.
	for k, v := range h.All() {
		switch {
		case bytes.EqualFold(k, []byte("Upgrade")), bytes.EqualFold(k, []byte("Te")), bytes.EqualFold(k, []byte("Trailer")):
			return nil
		case bytes.EqualFold(k, []byte("Connection")) && len(v) > 0 &&
			!bytes.EqualFold(v, []byte("keep-alive")) && !bytes.EqualFold(v, []byte("close")):
			// Tokens naming other headers as hop-by-hop: net/http removes them.
			return nil
		}
	}
	return l.fastLookup(bstr(h.Method()), bstr(h.Host()), bstr(path))
}

// fastLookup returns the route the listener's router picks for a request
// when that route serves on the fast path, or nil. The strings are not kept.
func (l *listenerGen) fastLookup(method, host, path string) *route {
	if l.only != nil {
		// The listener's one route matches every request.
		if !l.only.fastServe {
			return nil
		}
		return l.only
	}
	s := scratchPool.Get().(*scratch)
	s.r.Method, s.r.Host, s.u.Path = method, host, path
	hd, _ := l.mux.Handler(&s.r)
	s.r.Method, s.r.Host, s.u.Path = "", "", ""
	scratchPool.Put(s)
	rt, _ := hd.(*route)
	if rt == nil || !rt.fastServe {
		return nil
	}
	return rt
}

// plainPath accepts paths that need no decoding or cleaning: unreserved
// characters and a few sub-delimiters, no empty, "." or ".." segments.
// net/http redirects or decodes anything else, so it serves those.
func plainPath(p []byte) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '~' || c == ',' || c == '=' || c == ':' || c == '@':
		case c == '/':
			if i+1 < len(p) && p[i+1] == '/' {
				return false
			}
		case c == '.':
			// a segment "." or ".."
			if p[i-1] == '/' && (i+1 == len(p) || p[i+1] == '/' || (p[i+1] == '.' && (i+2 == len(p) || p[i+2] == '/'))) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// hopRequest are the hop-by-hop request headers not forwarded (Connection
// and Upgrade requests never reach the fast path with other meanings).
var hopRequest = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// hopResponse are the hop-by-hop response headers not forwarded.
var hopResponse = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Trailer", "Upgrade"}

// dropRequestHop deletes the hop-by-hop headers from a request header. Most
// requests carry none: it looks once and deletes only what is there. (One
// function per header type: a generic one, or one through an iterator
// parameter and a method value, costs allocations on every call.)
func dropRequestHop(h *fasthttp.RequestHeader) {
	var present uint
	for k := range h.All() {
		if i := hopIndex(k, hopRequest); i >= 0 {
			present |= 1 << i
		}
	}
	for i, k := range hopRequest {
		if present&(1<<i) != 0 {
			h.Del(k)
		}
	}
}

// dropResponseHop is dropRequestHop for a response header.
func dropResponseHop(h *fasthttp.ResponseHeader) {
	var present uint
	for k := range h.All() {
		if i := hopIndex(k, hopResponse); i >= 0 {
			present |= 1 << i
		}
	}
	for i, k := range hopResponse {
		if present&(1<<i) != 0 {
			h.Del(k)
		}
	}
}

// The header names the fast path sets, in canonical form: SetCanonical
// skips Set's copy and normalization of the name (it still strips line
// breaks from the value, which none of the values set can hold: an
// address, a request id, a constant, and the Host the parser accepted).
var (
	keyXForwardedFor   = []byte("X-Forwarded-For")
	keyXForwardedHost  = []byte("X-Forwarded-Host")
	keyXForwardedProto = []byte("X-Forwarded-Proto")
	keyRequestID       = []byte(headerRequestID)
	valueHTTPS         = []byte("https")
)

// sbytes views s as bytes for a call that copies them.
func sbytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// hopIndex returns the index of header name k in names, or -1.
func hopIndex(k []byte, names []string) int {
	if len(k) < 7 { // shorter than every name in both lists
		return -1
	}
	for i, n := range names {
		if len(n) == len(k) && bytes.EqualFold(k, []byte(n)) {
			return i
		}
	}
	return -1
}

// serveFast is the fasthttp server's handler.
func (e *Engine) serveFast(s *server, ctx *fasthttp.RequestCtx) {
	g := e.gen.Load()
	var rt *route
	if l := g.listeners[s.name]; l != nil {
		rt = l.fastRoute(ctx)
	}
	if rt == nil {
		s.migrate(ctx)
		return
	}
	start := time.Since(e.started) // the monotonic clock only
	fc, _ := ctx.Conn().(*fastConn)
	var id string
	if fc != nil {
		id = bstr(e.appendID(fc.id[:0]))
	} else {
		id = e.newID()
	}
	var in int64
	status := e.proxyFast(ctx, fc, rt, id, &in)
	dur := time.Since(e.started) - start
	e.obs.observe(e.m, s.name, rt.spec.Name, status, dur)
	if e.access != nil {
		e.logFast(ctx, fc, s.name, rt, id, status, in, dur)
	}
}

// proxyFast forwards one request and returns the status sent.
func (e *Engine) proxyFast(ctx *fasthttp.RequestCtx, fc *fastConn, rt *route, id string, in *int64) int {
	req := &ctx.Request
	h := &req.Header
	clientClose := h.ConnectionClose()
	if clientClose {
		// The client's wish ends its connection, not the upstream's.
		h.ResetConnectionClose()
		ctx.SetConnectionClose()
	}
	// The body is read already (at most the listener's largest max_body).
	n := int64(len(req.Body()))
	if n > rt.maxBody {
		ctx.SetConnectionClose()
		return fastProblem(ctx, http.StatusRequestEntityTooLarge, rt.tooLarge(), id)
	}
	*in = n
	ip := ""
	if fc != nil {
		ip = fc.clientIP()
	}
	forwardHeaders(h, ip, id)

	// The upstream's response is read straight into the client's.
	resp := &ctx.Response
	if err := rt.fast.Do(req, resp); err != nil {
		status, reason, detail := classifyFastError(err)
		rt.m.UpstreamErrors.WithLabelValues(rt.spec.Name, reason).Inc()
		return fastProblem(ctx, status, detail, id)
	}
	answerHeaders(&resp.Header, id, clientClose)
	return resp.StatusCode()
}

// forwardHeaders prepares a request's header for the upstream: no
// hop-by-hop fields, then setForwarded.
func forwardHeaders(h *fasthttp.RequestHeader, clientIP, id string) {
	dropRequestHop(h)
	setForwarded(h, clientIP, id)
}

// setForwarded sets the engine's X-Forwarded-* (For only when the client's
// address is known; Host from the request's Host) and the request id.
func setForwarded(h *fasthttp.RequestHeader, clientIP, id string) {
	if clientIP != "" {
		h.SetCanonical(keyXForwardedFor, sbytes(clientIP))
	}
	h.SetCanonical(keyXForwardedHost, h.Host())
	h.SetCanonical(keyXForwardedProto, valueHTTPS)
	h.SetCanonical(keyRequestID, sbytes(id))
}

// answerHeaders prepares the upstream's response header for the client: no
// hop-by-hop fields, the request id, and Connection: close only when the
// client asked (the upstream closing its connection is the pool's
// business).
func answerHeaders(rh *fasthttp.ResponseHeader, id string, clientClose bool) {
	rh.ResetConnectionClose()
	dropResponseHop(rh)
	if clientClose {
		rh.SetConnectionClose()
	}
	rh.SetCanonical(keyRequestID, sbytes(id))
}

// classifyFastError maps an upstream client error to the same statuses and
// metric reasons as the net/http path.
func classifyFastError(err error) (status int, reason, detail string) {
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrDialTimeout), errors.Is(err, fasthttp.ErrNoFreeConns),
		errors.As(err, &op) && op.Op == "dial":
		return http.StatusBadGateway, "unreachable", "the upstream could not be reached"
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout, "timeout", "the upstream did not answer in time"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadGateway, "reset", "the upstream closed the connection"
	}
	return http.StatusBadGateway, "bad_response", "the upstream's response was invalid"
}

// fastProblem writes an RFC 9457 problem response, the same bytes as
// problem.Error on the net/http path.
func fastProblem(ctx *fasthttp.RequestCtx, status int, detail, id string) int {
	p := problem.New(status, "", detail)
	p.RequestID = id
	b, _ := json.Marshal(p)
	b = append(b, '\n')
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(status)
	rh := &resp.Header
	rh.SetContentType(problem.ContentType)
	rh.Set("Cache-Control", "no-store")
	rh.Set("X-Content-Type-Options", "nosniff")
	if id != "" {
		rh.Set(headerRequestID, id)
	}
	resp.SetBodyRaw(b)
	return status
}

// logFast writes the access line of a fast-path request.
func (e *Engine) logFast(ctx *fasthttp.RequestCtx, fc *fastConn, listener string, rt *route, id string, status int, in int64, dur time.Duration) {
	h := e.accessHandler()
	if h == nil {
		return
	}
	resp := &ctx.Response
	out := int64(resp.Header.ContentLength())
	if out < 0 && !resp.IsBodyStream() {
		out = int64(len(resp.Body()))
	}
	path := ctx.Request.Header.RequestURI()
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	a := accessLine{
		id: id, listener: listener, route: rt.spec.Name, method: bstr(ctx.Method()), host: bstr(ctx.Host()),
		path: bstr(path), proto: "HTTP/1.1", upstream: rt.target.Host, status: status, in: in, out: out, dur: dur,
	}
	if fc != nil {
		if fc.logTLS == nil {
			// Taken at the connection's first access line, not every one.
			cs := fc.ConnectionState()
			fc.logTLS, fc.logClient = &cs, fc.RemoteAddr().String()
		}
		a.client, a.tls = fc.logClient, fc.logTLS
	}
	writeAccess(h, &a)
}
