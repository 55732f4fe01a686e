package appliance

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/appliance/problem"
	"github.com/sealgate/sealgate/appliance/reqctx"
)

// maxBufferedBody is the largest max_body for which a request body of unknown
// length (chunked HTTP/1.1, HTTP/2 without content-length) is read ahead, so
// an oversized one is refused with 413 before the upstream is contacted.
// Larger limits stream and abort on overrun.
const maxBufferedBody = 8 << 20

// route is one compiled RouteSpec.
type route struct {
	spec      RouteSpec
	target    *url.URL
	transport *http.Transport
	handler   http.Handler // stages + proxy
	rp        *httputil.ReverseProxy
	fast      *fastUpstream // plain-HTTP upstream client; nil: rp only
	fastServe bool          // no active stages: the fasthttp server proxies it itself
	m         *metrics.Metrics
	maxBody   int64
}

func newRoute(spec RouteSpec, lim Limits, m *metrics.Metrics) (*route, error) {
	u, err := url.Parse(spec.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("route %q: upstream %q: want http://host:port or https://host:port", spec.Name, spec.Upstream)
	}
	rt := &route{spec: spec, target: u, m: m, maxBody: spec.MaxBody}
	if rt.maxBody <= 0 {
		rt.maxBody = DefaultMaxBody
	}
	timeout := spec.UpstreamTimeout
	if timeout <= 0 {
		timeout = lim.UpstreamTimeout
	}
	dialer := &net.Dialer{Timeout: lim.DialTimeout, KeepAlive: 30 * time.Second}
	rt.transport = &http.Transport{
		Proxy:                 nil, // never an environment proxy between sealgate and the API
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   lim.DialTimeout,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     u.Scheme == "https",
		// The client's Accept-Encoding is forwarded as is; the transport must
		// not add its own and decompress behind the DLP stage's back.
		DisableCompression: true,
		WriteBufferSize:    32 << 10,
		ReadBufferSize:     32 << 10,
	}
	if u.Scheme == "https" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: spec.UpstreamServerName}
		if spec.UpstreamCA != "" {
			pem, err := os.ReadFile(spec.UpstreamCA)
			if err != nil {
				return nil, fmt.Errorf("route %q: upstream_ca: %w", spec.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("route %q: upstream_ca %s: no PEM certificate found", spec.Name, spec.UpstreamCA)
			}
			tc.RootCAs = pool
		}
		rt.transport.TLSClientConfig = tc
	}
	rp := &httputil.ReverseProxy{
		Rewrite:      rt.rewrite,
		Transport:    rt.transport,
		ErrorHandler: rt.upstreamError,
		BufferPool:   proxyBuffers,
		ErrorLog:     nil,
	}
	rt.rp = rp
	var inner http.Handler = rp
	if fastUpstreamOK(u) {
		rt.fast = newFastUpstream(u, lim, timeout)
		inner = &forwarder{rt}
	}
	h := inner
	for i := len(spec.Stages) - 1; i >= 0; i-- {
		h = spec.Stages[i](h)
	}
	rt.handler = h
	// Stages that are off return the handler they wrap, so h is the proxy
	// itself exactly when no stage does anything on this route.
	rt.fastServe = rt.fast != nil && h == inner && spec.Seal != SealRequired
	return rt, nil
}

// retire closes the upstream connections of a route that is gone: the idle
// ones now, the fast client's busy ones when their exchange ends.
func (rt *route) retire() {
	rt.transport.CloseIdleConnections()
	if rt.fast != nil {
		rt.fast.retire()
	}
}

func (rt *route) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(rt.target)
	// Keep the Host the client asked for, as Caddy does; the upstream's own
	// name is still used for TLS verification.
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	// Out is a clone of In, so the id is normally there already; it is gone
	// only when the client named it in Connection (a hop-by-hop header).
	if pr.Out.Header[headerRequestID] == nil {
		if id := pr.In.Header[headerRequestID]; len(id) > 0 {
			pr.Out.Header[headerRequestID] = []string{id[0]}
		}
	}
}

// ServeHTTP enforces the seal mode and the body limit, then runs the stages
// and the proxy.
func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := reqctx.From(r.Context())
	if info != nil {
		info.Route = rt.spec.Name
		info.Upstream = rt.target.Host
		sealed := info.Sealed
		switch {
		case sealed && rt.spec.Seal == SealOff:
			problem.Error(w, r, http.StatusForbidden, "this route does not accept sealed requests")
			return
		case !sealed && rt.spec.Seal == SealRequired:
			problem.Error(w, r, http.StatusForbidden, "this route requires a sealed request")
			return
		}
	}
	if r.ContentLength > rt.maxBody {
		problem.Error(w, r, http.StatusRequestEntityTooLarge, rt.tooLarge())
		return
	}
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		if rt.maxBody <= maxBufferedBody {
			body, err := readBounded(r.Body, rt.maxBody)
			if err != nil {
				if errors.Is(err, errTooLarge) {
					problem.Error(w, r, http.StatusRequestEntityTooLarge, rt.tooLarge())
				} else {
					problem.Error(w, r, http.StatusBadRequest, "request body could not be read")
				}
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, rt.maxBody)
		}
	}
	rt.handler.ServeHTTP(w, r)
}

var errTooLarge = errors.New("body too large")

func readBounded(r io.Reader, max int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// upstreamError turns a failed exchange into 502/504/413 problem responses
// that say nothing of the upstream's address or the Go error.
func (rt *route) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	status, reason, detail := classifyUpstreamError(r.Context(), err)
	if reason == "client_gone" {
		// Nobody to answer; not the upstream's fault.
		return
	}
	if reason != "body_too_large" {
		rt.m.UpstreamErrors.WithLabelValues(rt.spec.Name, reason).Inc()
	}
	problem.Error(w, r, status, detail)
}

func classifyUpstreamError(ctx context.Context, err error) (status int, reason, detail string) {
	var mbe *http.MaxBytesError
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "body_too_large", "request body too large"
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		return 499, "client_gone", ""
	case errors.As(err, &op) && op.Op == "dial":
		if op.Timeout() {
			return http.StatusBadGateway, "unreachable", "the upstream could not be reached"
		}
		return http.StatusBadGateway, "unreachable", "the upstream could not be reached"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout, "timeout", "the upstream did not answer in time"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadGateway, "reset", "the upstream closed the connection"
	}
	return http.StatusBadGateway, "bad_response", "the upstream's response was invalid"
}

// bufferPool lends the proxy its copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

// get and put pass the pool's slot along, so a put allocates nothing (Put,
// for httputil.BufferPool, takes a slice and allocates a slot for it).
func (b *bufferPool) get() *[]byte  { return b.p.Get().(*[]byte) }
func (b *bufferPool) put(p *[]byte) { b.p.Put(p) }

// tooLarge is the detail of the 413 a body over the route's max_body gets.
func (rt *route) tooLarge() string {
	return "request body exceeds " + strconv.FormatInt(rt.maxBody, 10) + " bytes"
}

var proxyBuffers = &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
