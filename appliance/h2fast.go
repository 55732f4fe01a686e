package appliance

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sealgate/sealgate/appliance/problem"
)

// The HTTP/2 fast path: a stream whose route has no active stage is proxied
// from its header fields to the route's fasthttp client and back to HPACK,
// without an http.Request or header maps, as the HTTP/1.1 fast path does
// for its requests. Everything else (staged routes, the sealing endpoint,
// paths net/http would clean or redirect, 404s, CONNECT, requests with TE
// or Trailer) runs the engine's handler.

// h2FastRoute returns the route that serves hd on the fast path, or nil.
func (l *listenerGen) h2FastRoute(hd *h2head) *route {
	if !l.anyFast {
		return nil
	}
	path := hd.path
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if !plainPath(sbytes(path)) || strings.HasPrefix(path, sealPrefix) {
		return nil
	}
	return l.fastLookup(hd.method, hd.authority, path)
}

// h2FastDrop reports the request fields the fast path does not forward:
// those the engine sets itself, and hop-by-hop ones HTTP/2 still allows.
func h2FastDrop(name string) bool {
	switch name {
	case "host", "content-length", "proxy-authorization", "forwarded", "x-forwarded-for",
		"x-forwarded-host", "x-forwarded-proto", "x-request-id":
		return true
	}
	return false
}

// runFast serves one stream on the fast path.
func (c *h2conn) runFast(st *h2stream, rt *route, f *http2.MetaHeadersFrame, hd *h2head) {
	e := c.e
	start := time.Since(e.started) // the monotonic clock only
	id := bstr(e.appendID(st.idBuf[:0]))
	status, in := c.proxyH2(st, rt, f, hd, id)
	dur := time.Since(e.started) - start
	e.obs.observe(e.m, c.s.name, rt.spec.Name, status, dur)
	if h := e.accessHandler(); h != nil {
		c.logH2Fast(h, rt, hd, id, status, in, st.w.written, dur)
	}
}

// proxyH2 forwards one request and returns the status sent and the request
// body's length.
func (c *h2conn) proxyH2(st *h2stream, rt *route, f *http2.MetaHeadersFrame, hd *h2head, id string) (int, int64) {
	w := &st.w
	if hd.length > rt.maxBody {
		return h2Problem(w, http.StatusRequestEntityTooLarge, rt.tooLarge(), id), 0
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	h := &req.Header
	h.SetMethod(hd.method)
	req.SetRequestURI(hd.path)
	h.SetHost(hd.authority)
	req.UseHostHeader = true
	for _, hf := range f.RegularFields() {
		if !h2FastDrop(hf.Name) {
			h.Add(hf.Name, hf.Value)
		}
	}
	setForwarded(h, c.gc.ip, id) // SetHost above removed any line break
	var in int64
	if st.body != nil {
		if hd.length >= 0 {
			if hd.length > 0 {
				req.SetBodyStream(&countingReader{r: st.body, n: &in}, int(hd.length))
			}
		} else if rt.maxBody <= maxBufferedBody {
			// Unknown length: read whole within max_body, so an
			// oversized body gets 413 before the upstream sees it.
			body, err := readBounded(st.body, rt.maxBody)
			if err != nil {
				if status, detail := bodyFailure(rt, err); status != 0 {
					return h2Problem(w, status, detail, id), 0
				}
				return h2Problem(w, http.StatusBadRequest, "request body could not be read", id), 0
			}
			in = int64(len(body))
			req.SetBody(body)
		} else {
			// Streamed: past max_body the exchange is aborted, not
			// sent on truncated as if complete.
			req.SetBodyStream(&countingReader{r: st.body, n: &in, max: rt.maxBody}, -1)
		}
	}
	if err := rt.fast.Do(req, resp); err != nil {
		if st.isReset() {
			return 499, in // the client went away; nothing to answer
		}
		if status, detail := bodyFailure(rt, err); status != 0 {
			return h2Problem(w, status, detail, id), in
		}
		status, reason, detail := classifyFastError(err)
		rt.m.UpstreamErrors.WithLabelValues(rt.spec.Name, reason).Inc()
		return h2Problem(w, status, detail, id), in
	}
	rh := &resp.Header
	status := resp.StatusCode()
	w.fast, w.id = rh, id
	w.wroteHeader, w.status = true, status
	w.declared = int64(rh.ContentLength())
	if w.declared < 0 {
		w.declared = -1
	}
	w.noBody = w.head || !bodyAllowed(status)
	if !resp.IsBodyStream() {
		w.Write(resp.Body())
		w.finish()
		return status, in
	}
	// One of unknown length (server-sent events, long polls) is flushed as
	// it arrives.
	flush := w.declared < 0 || bytes.HasPrefix(rh.ContentType(), []byte("text/event-stream"))
	switch err := streamUpstream(w, w.FlushError, flush, resp); {
	case err == nil:
		w.finish()
	case errors.Is(err, errClientGone):
	default:
		// The upstream failed mid-body: the client must not take the
		// response as complete.
		rt.m.UpstreamErrors.WithLabelValues(rt.spec.Name, "reset").Inc()
		c.resetStream(st, http2.ErrCodeInternal)
	}
	return status, in
}

// bodyFailure is the answer to a request body that ended in err: 413 past
// the route's max_body, 408 when the client stopped sending it; status 0
// for any other error.
func bodyFailure(rt *route, err error) (status int, detail string) {
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, rt.tooLarge()
	case errors.Is(err, errH2BodyTimeout):
		return http.StatusRequestTimeout, "the request body was not received in time"
	}
	return 0, ""
}

// isReset reports whether the client reset the stream.
func (st *h2stream) isReset() bool {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	return st.reset
}

// countingReader counts a request body as it is read; with max set, more
// than max bytes is errTooLarge.
type countingReader struct {
	r   io.Reader
	n   *int64
	max int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	*r.n += int64(n)
	if r.max > 0 && *r.n > r.max {
		return n, errTooLarge
	}
	return n, err
}

// h2Problem answers a stream with an RFC 9457 problem through problem.Write,
// as the handler's path does, and the request id.
func h2Problem(w *h2writer, status int, detail, id string) int {
	p := problem.New(status, "", detail)
	p.RequestID = id
	if id != "" {
		w.Header()[headerRequestID] = []string{id}
	}
	problem.Write(w, p)
	w.finish()
	return status
}

// h2FastHop reports the upstream response fields the fast path does not
// pass on: hop-by-hop ones, and those it writes itself. (A switch: the
// names are compared, not hashed.)
func h2FastHop(k []byte) bool {
	switch string(k) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
		"Transfer-Encoding", "Upgrade", "Trailer", "Content-Length", "X-Request-Id":
		return true
	}
	return false
}

// encodeFast writes the upstream's response fields, the content length the
// response carries and the request id. vals holds the values of the
// connection's previous fast response.
func encodeFast(enc *hpack.Encoder, rh *fasthttp.ResponseHeader, id string, length int64, vals *h2Values) {
	sawDate := false
	i := 0
	for k, v := range rh.All() {
		if h2FastHop(k) {
			continue
		}
		name, ok := h2KnownName(bstr(k))
		if !ok {
			name = strings.ToLower(string(k)) // a copy: the encoder may keep it
		}
		if name == "date" {
			sawDate = true
		}
		i++ // slot 0 is the content length's
		enc.WriteField(hpack.HeaderField{Name: name, Value: vals.get(i, v)})
	}
	if length >= 0 {
		var b [20]byte
		enc.WriteField(hpack.HeaderField{Name: "content-length", Value: vals.get(0, strconv.AppendInt(b[:0], length, 10))})
	}
	if !sawDate {
		enc.WriteField(hpack.HeaderField{Name: "date", Value: httpDate()})
	}
	enc.WriteField(hpack.HeaderField{Name: "x-request-id", Value: id, Sensitive: true})
}

// h2Values keeps the field values of a connection's previous fast response
// by position (slot 0: the content length; then the fields in order, as
// many as fit): responses from one upstream repeat most of them (server,
// content type, validators), and an equal value is reused instead of
// copied into a new string for the encoder, which may keep it.
type h2Values [16]string

func (p *h2Values) get(i int, v []byte) string {
	if i >= len(p) {
		return string(v)
	}
	if p[i] == bstr(v) {
		return p[i]
	}
	p[i] = string(v)
	return p[i]
}

// logH2Fast writes the access line of a fast-path stream.
func (c *h2conn) logH2Fast(h slog.Handler, rt *route, hd *h2head, id string, status int, in, out int64, dur time.Duration) {
	path := hd.path
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	a := accessLine{
		id: id, client: c.remote, listener: c.s.name, route: rt.spec.Name, method: hd.method, host: hd.authority,
		path: path, proto: "HTTP/2.0", upstream: rt.target.Host, status: status, in: in, out: out, dur: dur, tls: &c.state,
	}
	writeAccess(h, &a)
}
