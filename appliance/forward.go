package appliance

import (
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/sealgate/sealgate/appliance/problem"
	"github.com/sealgate/sealgate/appliance/reqctx"
)

// forwarder is the proxy handler of routes with a plain-HTTP upstream on the
// net/http side (h2 requests, connections moved off the fast path, and the
// stages' inner handler): it exchanges through the route's fasthttp client on
// the request's goroutine, where httputil.ReverseProxy and http.Transport
// hand every exchange between three goroutines. Upgrades (WebSocket) and
// requests asking for trailers stay with the ReverseProxy.
type forwarder struct{ rt *route }

// hopByHop are the headers a proxy does not forward (RFC 9110 7.6.1), plus
// the forwarding headers the engine sets itself and the framing headers the
// client library writes from the body.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Host": true,
}

var forwardingHeaders = map[string]bool{
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := f.rt
	if r.Method == http.MethodConnect || r.Header["Upgrade"] != nil || r.Header["Te"] != nil {
		rt.rp.ServeHTTP(w, r)
		return
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	h := &req.Header
	h.SetMethod(r.Method)
	req.SetRequestURI(r.URL.RequestURI())
	h.SetHost(r.Host)
	req.UseHostHeader = true
	named := connectionTokens(r.Header)
	for k, vv := range r.Header {
		if hopByHop[k] || forwardingHeaders[k] || named[k] {
			continue
		}
		for _, v := range vv {
			h.Add(k, v)
		}
	}
	// The request id always goes on, even if the client named it in
	// Connection.
	if id := r.Header[headerRequestID]; len(id) > 0 {
		h.Set(headerRequestID, id[0])
	}
	// The engine's entry parsed the client address already.
	if info := reqctx.From(r.Context()); info != nil && info.Client.IsValid() {
		h.Set("X-Forwarded-For", info.Client.String())
	}
	h.Set("X-Forwarded-Host", r.Host)
	if r.TLS != nil {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		req.SetBodyStream(r.Body, int(r.ContentLength))
	}

	if err := rt.fast.Do(req, resp); err != nil {
		status, reason, detail := classifyUpstreamError(r.Context(), err)
		switch reason {
		case "client_gone":
			return
		case "body_too_large":
		case "bad_response":
			status, reason, detail = classifyFastError(err)
			fallthrough
		default:
			rt.m.UpstreamErrors.WithLabelValues(rt.spec.Name, reason).Inc()
		}
		problem.Error(w, r, status, detail)
		return
	}

	out := w.Header()
	rh := &resp.Header
	var namedResp map[string]bool
	if c := rh.Peek("Connection"); len(c) > 0 {
		namedResp = tokens(string(c))
	}
	for k, v := range rh.All() {
		key := string(k)
		if hopByHop[key] || namedResp[key] {
			continue
		}
		out.Add(key, string(v))
	}
	cl := rh.ContentLength()
	if cl >= 0 {
		out["Content-Length"] = []string{strconv.Itoa(cl)}
	}
	w.WriteHeader(resp.StatusCode())
	if !resp.IsBodyStream() {
		w.Write(resp.Body())
		return
	}
	// A response of unknown length (server-sent events, long polls) is
	// flushed as it arrives, as ReverseProxy does.
	flush := cl < 0 || strings.HasPrefix(string(rh.ContentType()), "text/event-stream")
	rc := http.NewResponseController(w)
	if err := streamUpstream(w, rc.Flush, flush, resp); err != nil && !errors.Is(err, errClientGone) {
		// The upstream failed mid-body: abort, so the client sees a
		// truncated response rather than a complete one.
		rt.m.UpstreamErrors.WithLabelValues(rt.spec.Name, "reset").Inc()
		panic(http.ErrAbortHandler)
	}
}

// errClientGone is a failed write to the client.
var errClientGone = errors.New("the client went away")

// streamUpstream copies a streamed upstream body to w, flushing each piece
// when flush is set, and closes it. It returns errClientGone when a write
// to the client failed, or the upstream's error.
func streamUpstream(w io.Writer, flushFn func() error, flush bool, resp *fasthttp.Response) error {
	defer resp.CloseBodyStream()
	bp := proxyBuffers.get()
	defer proxyBuffers.put(bp)
	buf := *bp
	body := resp.BodyStream()
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return errClientGone
			}
			if flush {
				flushFn()
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// connectionTokens returns the header names a request's Connection header
// marks as hop-by-hop, canonicalised; nil when there are none.
func connectionTokens(h http.Header) map[string]bool {
	vv := h["Connection"]
	if len(vv) == 0 {
		return nil
	}
	var m map[string]bool
	for _, v := range vv {
		for k := range tokens(v) {
			if m == nil {
				m = make(map[string]bool)
			}
			m[k] = true
		}
	}
	return m
}

// tokens returns the header names a Connection value lists, canonicalised;
// nil when it lists none but "keep-alive" and "close" (the usual case, whose
// Keep-Alive header is dropped anyway).
func tokens(v string) map[string]bool {
	var m map[string]bool
	for t := range strings.SplitSeq(v, ",") {
		t = strings.TrimSpace(t)
		if t == "" || strings.EqualFold(t, "keep-alive") || strings.EqualFold(t, "close") {
			continue
		}
		if m == nil {
			m = make(map[string]bool)
		}
		m[textproto.CanonicalMIMEHeaderKey(t)] = true
	}
	return m
}
