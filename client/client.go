// Package client is the Go client SDK for sealgate's sealing protocol
// (crypto/seal/PROTOCOL.md). Its Transport is an http.RoundTripper that
// makes any http.Client send sealed requests: it fetches and caches the
// appliance's key configuration, opens and renews sessions, seals each
// request as Binary HTTP records, unseals the response as it streams in,
// and turns protocol refusals into *ProblemError. Curl is the engine of
// `sealgate curl`.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/crypto/seal"
)

// Well-known paths of the sealing endpoint.
const (
	PathKeys    = "/.well-known/sealgate/keys"
	PathSession = "/.well-known/sealgate/session"
	PathGateway = "/.well-known/sealgate/gateway"
)

// Problem types the Transport recovers from by itself (PROTOCOL.md).
const (
	problemKey     = "https://iana.org/assignments/http-problem-types#ohttp-key"
	problemStale   = "urn:sealgate:problem:seal:stale-session"
	problemExpired = "urn:sealgate:problem:seal:expired-session"
)

// ProblemError is a refusal by the sealing endpoint, from its RFC 9457
// problem document.
type ProblemError struct {
	StatusCode int
	Type       string `json:"type"`
	Title      string `json:"title"`
	Detail     string `json:"detail"`
}

func (p *ProblemError) Error() string {
	msg := fmt.Sprintf("sealed request refused: %d", p.StatusCode)
	if p.Title != "" {
		msg += " " + p.Title
	}
	if p.Detail != "" {
		msg += ": " + p.Detail
	}
	return msg
}

// Transport is an http.RoundTripper that seals every request. The zero
// value is not usable; call New. It is safe for concurrent use.
type Transport struct {
	// Base carries the outer requests to the appliance.
	Base http.RoundTripper
	// KEMs in order of preference; the first the server offers is used.
	KEMs []seal.KEMID
	// AEAD forces the record AEAD; zero takes the server's first choice,
	// which follows its CPU features.
	AEAD seal.AEADID
	// RenewBefore renews a session this long before its ticket expires.
	RenewBefore time.Duration
	// KeyTTL is how long a fetched key configuration is trusted without
	// re-fetching (a 422 re-fetches at once).
	KeyTTL time.Duration
	// Now is the clock.
	Now func() time.Time

	mu      sync.Mutex
	origins map[string]*origin
}

type origin struct {
	mu      sync.Mutex
	configs []seal.KeyConfig
	fetched time.Time
	session *seal.ClientSession
}

// New returns a Transport that sends the outer requests over base
// (http.DefaultTransport when nil). It prefers the hybrid post-quantum KEM.
func New(base http.RoundTripper) *Transport {
	if base == nil {
		base = http.DefaultTransport
	}
	return &Transport{
		Base:        base,
		KEMs:        []seal.KEMID{seal.KEMMLKEM768X25519, seal.KEMX25519, seal.KEMP256},
		RenewBefore: time.Minute,
		KeyTTL:      5 * time.Minute,
		Now:         time.Now,
		origins:     make(map[string]*origin),
	}
}

func (t *Transport) origin(key string) *origin {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.origins[key]
	if o == nil {
		o = &origin{}
		t.origins[key] = o
	}
	return o
}

// Session returns the open session for the origin of u (scheme://host),
// fetching keys and opening one when needed.
func (t *Transport) Session(ctx context.Context, u string) (*seal.ClientSession, error) {
	base, err := originOf(u)
	if err != nil {
		return nil, err
	}
	return t.session(ctx, base, t.origin(base))
}

func originOf(raw string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, raw, nil)
	if err != nil {
		return "", err
	}
	if req.URL.Scheme != "https" && req.URL.Scheme != "http" {
		return "", fmt.Errorf("sealing needs an http or https URL, not %q", req.URL.Scheme)
	}
	return req.URL.Scheme + "://" + req.URL.Host, nil
}

func (t *Transport) session(ctx context.Context, base string, o *origin) (*seal.ClientSession, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := t.Now()
	if o.session != nil && now.Add(t.RenewBefore).Before(o.session.Expires) {
		return o.session, nil
	}
	o.session = nil
	if o.configs == nil || now.Sub(o.fetched) > t.KeyTTL {
		cs, err := t.fetchKeys(ctx, base)
		if err != nil {
			return nil, err
		}
		o.configs, o.fetched = cs, now
	}
	cfg, aead, err := t.choose(o.configs)
	if err != nil {
		return nil, err
	}
	body, pending, err := seal.NewSessionRequest(cfg, aead)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+PathSession, strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", seal.MediaTypeSession)
	resp, err := t.Base.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("opening sealed session: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || mediaType(resp) != seal.MediaTypeSessionResponse {
		perr := readProblem(resp)
		if perr.Type == problemKey {
			o.configs = nil
		}
		return nil, fmt.Errorf("opening sealed session: %w", perr)
	}
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return nil, fmt.Errorf("opening sealed session: %w", err)
	}
	s, err := pending.Finish(rb)
	if err != nil {
		return nil, fmt.Errorf("opening sealed session: %w", err)
	}
	o.session = s
	return s, nil
}

// choose picks the first preferred KEM the server offers, and the forced
// AEAD or the server's first.
func (t *Transport) choose(cs []seal.KeyConfig) (seal.KeyConfig, seal.AEADID, error) {
	for _, kem := range t.KEMs {
		for _, c := range cs {
			if c.KEM != kem {
				continue
			}
			for _, a := range c.Algorithms {
				if a.KDF == seal.KDFHKDFSHA256 && (t.AEAD == 0 || a.AEAD == t.AEAD) && a.AEAD.KeyLen() > 0 {
					return c, a.AEAD, nil
				}
			}
		}
	}
	return seal.KeyConfig{}, 0, fmt.Errorf("no key configuration matches the client's KEMs and AEAD: %w", seal.ErrUnsupported)
}

func (t *Transport) fetchKeys(ctx context.Context, base string) ([]seal.KeyConfig, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+PathKeys, nil)
	if err != nil {
		return nil, err
	}
	resp, err := t.Base.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("fetching sealing keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || mediaType(resp) != seal.MediaTypeKeys {
		return nil, fmt.Errorf("fetching sealing keys from %s: %w (is sealing enabled on this appliance?)", base, readProblem(resp))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("fetching sealing keys: %w", err)
	}
	cs, err := seal.ParseKeyConfigs(b)
	if err != nil {
		return nil, fmt.Errorf("parsing sealing keys: %w", err)
	}
	return cs, nil
}

func mediaType(resp *http.Response) string {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return mt
}

func readProblem(resp *http.Response) *ProblemError {
	p := &ProblemError{StatusCode: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if mediaType(resp) == "application/problem+json" {
		json.Unmarshal(b, p)
	}
	if p.Title == "" {
		p.Title = http.StatusText(resp.StatusCode)
	}
	return p
}

// RoundTrip seals req, sends it to the gateway of req's origin and returns
// the unsealed response, whose body streams as records arrive. A refusal
// the Transport can recover from (new keys, expired or stale session) is
// retried once when the body can be replayed.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base, err := originOf(req.URL.String())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	o := t.origin(base)
	if req.GetBody == nil && req.Body != nil && req.Body != http.NoBody && req.ContentLength > 0 && req.ContentLength <= smallBody {
		// Keep a small body so a recoverable refusal can be retried.
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("reading request body: %w", err)
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	for attempt := 0; ; attempt++ {
		s, err := t.session(req.Context(), base, o)
		var perr *ProblemError
		if err != nil && attempt == 0 && errors.As(err, &perr) && recoverable(perr) {
			continue // session() dropped what the problem invalidated
		}
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := t.send(req, base, s)
		if err == nil || !errors.As(err, &perr) || attempt > 0 || !recoverable(perr) {
			return resp, err
		}
		o.mu.Lock()
		if o.session == s {
			o.session = nil
		}
		if perr.Type == problemKey {
			o.configs = nil
		}
		o.mu.Unlock()
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, err
			}
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

func recoverable(p *ProblemError) bool {
	return p.Type == problemKey || p.Type == problemStale || p.Type == problemExpired
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

var hopByHop = []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "te"}

// innerRequest is the Binary HTTP head of req.
func innerRequest(req *http.Request) *seal.Request {
	authority := req.Host
	if authority == "" {
		authority = req.URL.Host
	}
	inner := &seal.Request{Method: req.Method, Scheme: req.URL.Scheme, Authority: authority, Path: req.URL.RequestURI()}
	if inner.Method == "" {
		inner.Method = http.MethodGet
	}
	for k, vs := range req.Header {
		name := strings.ToLower(k)
		if slices.Contains(hopByHop, name) || name == "content-length" {
			continue
		}
		for _, v := range vs {
			inner.Header = append(inner.Header, seal.Field{Name: name, Value: strings.TrimSpace(v)})
		}
	}
	if req.ContentLength > 0 {
		inner.Header = append(inner.Header, seal.Field{Name: "content-length", Value: strconv.FormatInt(req.ContentLength, 10)})
	}
	if len(req.Trailer) > 0 {
		var names []string
		for k := range req.Trailer {
			names = append(names, strings.ToLower(k))
		}
		slices.Sort(names)
		inner.Header = append(inner.Header, seal.Field{Name: "trailer", Value: strings.Join(names, ", ")})
	}
	slices.SortStableFunc(inner.Header, func(a, b seal.Field) int { return strings.Compare(a.Name, b.Name) })
	return inner
}

func (t *Transport) send(req *http.Request, base string, s *seal.ClientSession) (*http.Response, error) {
	seq := s.NextSeq()
	head := innerRequest(req)
	var body io.Reader
	abort := func(error) {}
	if req.Body == nil || req.Body == http.NoBody || (req.ContentLength > 0 && req.ContentLength <= smallBody) {
		// Small: seal it all now and send it with a Content-Length.
		var buf bytes.Buffer
		if err := writeSealed(&buf, s, seq, head, req); err != nil {
			return nil, err
		}
		body = &buf
	} else {
		pr, pw := io.Pipe()
		go func() {
			pw.CloseWithError(writeSealed(pw, s, seq, head, req))
		}()
		body, abort = pr, func(err error) { pr.CloseWithError(err) }
	}
	outer, err := http.NewRequestWithContext(req.Context(), http.MethodPost, base+PathGateway, body)
	if err != nil {
		abort(err)
		return nil, err
	}
	outer.Header.Set("Content-Type", seal.MediaTypeRequest)
	resp, err := t.Base.RoundTrip(outer)
	if err != nil {
		abort(err)
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || mediaType(resp) != seal.MediaTypeResponse {
		defer resp.Body.Close()
		abort(errors.New("sealed request refused"))
		return nil, readProblem(resp)
	}
	dec := seal.NewDecoder(s.OpenResponse(resp.Body, seq), seal.Limits{})
	rh, err := dec.ReadResponseHead()
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("unsealing response: %w", err)
	}
	out := &http.Response{
		Status:     strconv.Itoa(rh.Status) + " " + http.StatusText(rh.Status),
		StatusCode: rh.Status,
		Proto:      resp.Proto, ProtoMajor: resp.ProtoMajor, ProtoMinor: resp.ProtoMinor,
		Header:        make(http.Header),
		ContentLength: -1,
		Request:       req,
		TLS:           resp.TLS,
	}
	for _, f := range rh.Header {
		k := textproto.CanonicalMIMEHeaderKey(f.Name)
		out.Header[k] = append(out.Header[k], f.Value)
	}
	if cl, err := strconv.ParseInt(out.Header.Get("Content-Length"), 10, 64); err == nil && cl >= 0 {
		out.ContentLength = cl
	}
	for _, v := range out.Header.Values("Trailer") {
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				if out.Trailer == nil {
					out.Trailer = make(http.Header)
				}
				out.Trailer[textproto.CanonicalMIMEHeaderKey(k)] = nil
			}
		}
	}
	if req.Method == http.MethodHead {
		out.ContentLength = max(out.ContentLength, -1)
	}
	out.Body = &responseBody{dec: dec, src: dec.Body(), outer: resp.Body, resp: out}
	return out, nil
}

// smallBody is the largest request body sealed in full before sending;
// larger or unknown-length bodies stream.
const smallBody = 64 << 10

// writeSealed encodes and seals req into w as message seq.
func writeSealed(w io.Writer, s *seal.ClientSession, seq uint64, head *seal.Request, req *http.Request) error {
	rw, err := s.SealRequest(w, seq)
	if err != nil {
		return err
	}
	cw, err := seal.WriteRequestHead(rw, head)
	if err != nil {
		return err
	}
	if req.Body != nil {
		defer req.Body.Close()
		if _, err := io.Copy(cw, req.Body); err != nil {
			return fmt.Errorf("reading request body: %w", err)
		}
	}
	var trailer []seal.Field
	for k, vs := range req.Trailer {
		for _, v := range vs {
			trailer = append(trailer, seal.Field{Name: strings.ToLower(k), Value: v})
		}
	}
	if err := cw.Close(trailer); err != nil {
		return err
	}
	return rw.Close()
}

// responseBody streams the unsealed content and fills the trailers at EOF.
type responseBody struct {
	dec   *seal.Decoder
	src   io.Reader
	outer io.ReadCloser
	resp  *http.Response
	done  bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.src.Read(p)
	if err == io.EOF {
		trailer, ferr := b.dec.Finish()
		if ferr != nil {
			return n, fmt.Errorf("unsealing response: %w", ferr)
		}
		for _, f := range trailer {
			if b.resp.Trailer == nil {
				b.resp.Trailer = make(http.Header)
			}
			k := textproto.CanonicalMIMEHeaderKey(f.Name)
			b.resp.Trailer[k] = append(b.resp.Trailer[k], f.Value)
		}
		b.done = true
		return n, io.EOF
	}
	if err != nil {
		return n, fmt.Errorf("unsealing response: %w", err)
	}
	return n, nil
}

func (b *responseBody) Close() error { return b.outer.Close() }
