package sealing

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/sealgate/sealgate/appliance/reqctx"
	"github.com/sealgate/sealgate/crypto/seal"
)

func (e *Endpoint) serveGateway(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, "POST")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != seal.MediaTypeRequest {
		problem415(w, r)
		return
	}
	msg, err := e.srv.OpenRequest(r.Body)
	if err != nil {
		e.reject(w, r, err)
		return
	}
	dec := seal.NewDecoder(msg.Body(), seal.Limits{MaxFieldSection: e.maxHead})
	head, err := dec.ReadRequestHead()
	if err != nil {
		e.countRecords(msg.Body().Records(), 0)
		e.reject(w, r, err)
		return
	}
	inner, err := e.innerRequest(r, head, dec)
	if err != nil {
		e.countRecords(msg.Body().Records(), 0)
		e.reject(w, r, err)
		return
	}
	if info := reqctx.From(r.Context()); info != nil {
		info.Sealed = true
	}

	h := w.Header()
	h.Set("Content-Type", seal.MediaTypeResponse)
	h.Set("Cache-Control", "no-store")
	sw := &sealedWriter{outer: w, rc: http.NewResponseController(w), header: make(http.Header)}
	sw.rw = msg.ResponseWriter(w)
	// Let a handler stream its response while it still reads the body.
	_ = sw.rc.EnableFullDuplex()
	next.ServeHTTP(sw, inner)
	if err := sw.finish(); err != nil {
		e.log.Debug("sealed response cut short", "err", err.Error(), "remote", r.RemoteAddr)
	}
	if b, ok := inner.Body.(*innerBody); ok && b.sealErr != nil {
		e.countReject(b.sealErr)
	}
	e.countRecords(msg.Body().Records(), sw.rw.Records())
}

func problem415(w http.ResponseWriter, r *http.Request) {
	problemError(w, r, http.StatusUnsupportedMediaType, "send the sealed request as "+seal.MediaTypeRequest)
}

func (e *Endpoint) countRecords(in, out uint64) {
	if e.m == nil {
		return
	}
	if in > 0 {
		e.m.SealRecords.WithLabelValues("in").Add(float64(in))
	}
	if out > 0 {
		e.m.SealRecords.WithLabelValues("out").Add(float64(out))
	}
}

// hopByHop are connection-specific fields that make an HTTP/2 message
// malformed (RFC 9113, Section 8.2.2), so RFC 9292 forbids them too.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true,
	"transfer-encoding": true, "upgrade": true,
}

// innerRequest turns the decoded head into the request the router sees:
// the outer request's context, peer address and TLS state, the inner
// method, target, headers and streaming body.
func (e *Endpoint) innerRequest(outer *http.Request, head *seal.Request, dec *seal.Decoder) (*http.Request, error) {
	u, err := url.ParseRequestURI(head.Path)
	if err != nil || head.Path == "*" {
		return nil, fmt.Errorf("%w: inner path %q: not an origin-form target", seal.ErrMalformedBHTTP, head.Path)
	}
	hdr := make(http.Header, len(head.Header))
	host := head.Authority
	for _, f := range head.Header {
		if !httpguts.ValidHeaderFieldName(f.Name) || !httpguts.ValidHeaderFieldValue(f.Value) {
			return nil, fmt.Errorf("%w: inner field %q", seal.ErrMalformedBHTTP, f.Name)
		}
		if hopByHop[f.Name] || (f.Name == "te" && f.Value != "trailers") {
			return nil, fmt.Errorf("%w: connection-specific field %q in a sealed request", seal.ErrMalformedBHTTP, f.Name)
		}
		if f.Name == "host" {
			if host == "" {
				host = f.Value
			}
			continue
		}
		key := textproto.CanonicalMIMEHeaderKey(f.Name)
		hdr[key] = append(hdr[key], f.Value)
	}
	if host == "" {
		host = outer.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return nil, fmt.Errorf("%w: inner authority %q", seal.ErrMalformedBHTTP, host)
	}
	inner := &http.Request{
		Method:     head.Method,
		URL:        u,
		Proto:      outer.Proto,
		ProtoMajor: outer.ProtoMajor,
		ProtoMinor: outer.ProtoMinor,
		Header:     hdr,
		Host:       host,
		RemoteAddr: outer.RemoteAddr,
		RequestURI: head.Path,
		TLS:        outer.TLS,
	}
	for _, t := range hdr.Values("Trailer") {
		for _, k := range strings.Split(t, ",") {
			if k = strings.TrimSpace(k); k != "" {
				if inner.Trailer == nil {
					inner.Trailer = make(http.Header)
				}
				inner.Trailer[textproto.CanonicalMIMEHeaderKey(k)] = nil
			}
		}
	}
	body := &innerBody{dec: dec, src: dec.Body(), req: inner, remaining: -1}
	inner.ContentLength = -1
	if cl := hdr.Values("Content-Length"); len(cl) > 0 {
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if len(cl) > 1 || err != nil || n < 0 {
			return nil, fmt.Errorf("%w: inner content-length %q", seal.ErrMalformedBHTTP, cl)
		}
		inner.ContentLength, body.remaining = n, n
	}
	if inner.ContentLength != 0 {
		// Peek: an empty body becomes http.NoBody so proxies send none.
		var one [1]byte
		n, err := io.ReadFull(body, one[:])
		switch {
		case n == 1:
			body.peeked = []byte{one[0]}
		case err == io.EOF && inner.ContentLength == -1:
			inner.ContentLength = 0
		case err != nil:
			return nil, err
		}
	}
	if inner.ContentLength == 0 {
		if _, err := io.Copy(io.Discard, body); err != nil {
			return nil, err
		}
		inner.Body = http.NoBody
	} else {
		inner.Body = body
	}
	return inner.WithContext(withSealed(outer.Context())), nil
}

// innerBody streams the inner content, checks it against Content-Length
// and fills the declared trailers at its end.
type innerBody struct {
	dec       *seal.Decoder
	src       io.Reader
	req       *http.Request
	peeked    []byte
	remaining int64 // -1: no content-length
	done      bool
	sealErr   error
}

func (b *innerBody) Read(p []byte) (int, error) {
	if len(b.peeked) > 0 && len(p) > 0 {
		n := copy(p, b.peeked)
		b.peeked = b.peeked[n:]
		return n, nil
	}
	if b.done {
		return 0, io.EOF
	}
	n, err := b.src.Read(p)
	if b.remaining >= 0 {
		if int64(n) > b.remaining {
			return 0, b.fail(fmt.Errorf("%w: inner content longer than its content-length", seal.ErrMalformedBHTTP))
		}
		b.remaining -= int64(n)
	}
	if err == io.EOF {
		if b.remaining > 0 {
			return n, b.fail(fmt.Errorf("%w: inner content shorter than its content-length", seal.ErrMalformedBHTTP))
		}
		trailer, ferr := b.dec.Finish()
		if ferr != nil {
			return n, b.fail(ferr)
		}
		for _, f := range trailer {
			if !httpguts.ValidHeaderFieldName(f.Name) || !httpguts.ValidHeaderFieldValue(f.Value) {
				continue
			}
			if b.req.Trailer == nil {
				b.req.Trailer = make(http.Header)
			}
			k := textproto.CanonicalMIMEHeaderKey(f.Name)
			b.req.Trailer[k] = append(b.req.Trailer[k], f.Value)
		}
		b.done = true
		return n, io.EOF
	}
	if err != nil {
		return n, b.fail(err)
	}
	return n, nil
}

func (b *innerBody) fail(err error) error {
	if b.sealErr == nil {
		b.sealErr = err
	}
	return err
}

func (b *innerBody) Close() error { return nil }

// sealedWriter is the ResponseWriter the router writes the inner response
// to. It encodes it as indeterminate-length Binary HTTP and seals it record
// by record into the outer response, flushing as records complete.
type sealedWriter struct {
	outer   http.ResponseWriter
	rc      *http.ResponseController
	rw      *seal.RecordWriter
	cw      *seal.ContentWriter
	header  http.Header
	info    []seal.InformationalResponse
	status  int
	trailer []string // declared trailer names
	err     error
}

func (s *sealedWriter) Header() http.Header { return s.header }

func (s *sealedWriter) WriteHeader(code int) {
	if s.cw != nil || s.err != nil {
		return
	}
	if code >= 100 && code <= 199 {
		if code == http.StatusSwitchingProtocols {
			s.err = errors.New("sealed responses cannot switch protocols")
			return
		}
		s.info = append(s.info, seal.InformationalResponse{Status: code, Header: fields(s.header, nil)})
		return
	}
	if code < 200 || code > 599 {
		code = http.StatusInternalServerError
	}
	s.status = code
	for _, v := range s.header.Values("Trailer") {
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				s.trailer = append(s.trailer, textproto.CanonicalMIMEHeaderKey(k))
			}
		}
	}
	skip := map[string]bool{"Trailer": true}
	s.cw, s.err = seal.WriteResponseHead(s.rw, &seal.Response{Informational: s.info, Status: code, Header: fields(s.header, skip)})
}

func (s *sealedWriter) Write(p []byte) (int, error) {
	if s.cw == nil && s.err == nil {
		if s.header.Get("Content-Type") == "" && len(p) > 0 {
			s.header.Set("Content-Type", http.DetectContentType(p))
		}
		s.WriteHeader(http.StatusOK)
	}
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.cw.Write(p)
	if err != nil {
		s.err = err
	}
	return n, err
}

// Flush seals what is buffered as a record and flushes the outer response.
func (s *sealedWriter) Flush() {
	if s.cw == nil && s.err == nil {
		s.WriteHeader(http.StatusOK)
	}
	if s.err != nil {
		return
	}
	if err := s.rw.Flush(); err != nil {
		s.err = err
		return
	}
	s.rc.Flush()
}

// FlushError is Flush for http.ResponseController.
func (s *sealedWriter) FlushError() error {
	s.Flush()
	return s.err
}

// finish writes the trailer and seals the final record.
func (s *sealedWriter) finish() error {
	if s.cw == nil && s.err == nil {
		s.WriteHeader(http.StatusOK)
	}
	if s.err != nil {
		return s.err
	}
	var trailer []seal.Field
	for _, k := range s.trailer {
		for _, v := range s.header.Values(k) {
			trailer = append(trailer, seal.Field{Name: strings.ToLower(k), Value: v})
		}
	}
	for k, vs := range s.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vs {
				trailer = append(trailer, seal.Field{Name: strings.ToLower(name), Value: v})
			}
		}
	}
	if err := s.cw.Close(validFields(trailer)); err != nil {
		return err
	}
	return s.rw.Close()
}

// fields converts a header to Binary HTTP field lines, lowercase, without
// connection-specific or invalid fields.
func fields(h http.Header, skip map[string]bool) []seal.Field {
	var out []seal.Field
	for k, vs := range h {
		if skip[k] || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		name := strings.ToLower(k)
		if hopByHop[name] {
			continue
		}
		for _, v := range vs {
			out = append(out, seal.Field{Name: name, Value: strings.TrimSpace(v)})
		}
	}
	return validFields(out)
}

func validFields(fs []seal.Field) []seal.Field {
	out := fs[:0]
	for _, f := range fs {
		if httpguts.ValidHeaderFieldName(f.Name) && httpguts.ValidHeaderFieldValue(f.Value) && !strings.ContainsAny(f.Value, "\r\n\x00") {
			out = append(out, f)
		}
	}
	return out
}
