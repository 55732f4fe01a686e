package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// CurlOptions are the flags of `sealgate curl`.
type CurlOptions struct {
	Method   string   // -X; default GET, or POST with Data
	Data     string   // -d; "@FILE" reads FILE, "@-" stdin
	Headers  []string // -H "Name: value", repeatable
	URL      string
	ShowWire bool   // --show-wire: print the outer exchange as an observer sees it
	Include  bool   // -i: print the inner status line and headers
	Insecure bool   // -k: do not verify the appliance's certificate
	CACert   string // --cacert FILE: trust this CA for the appliance
	Timeout  time.Duration
	AEAD     string // --aead: force aes-128-gcm, aes-256-gcm or chacha20-poly1305
	KEM      string // --kem: x25519, p256 or mlkem768-x25519
	Stdin    io.Reader
}

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// ParseCurlArgs parses `sealgate curl` arguments; flags may follow the URL.
func ParseCurlArgs(args []string, stderr io.Writer) (CurlOptions, error) {
	var o CurlOptions
	fs := flag.NewFlagSet("sealgate curl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sealgate curl [-X METHOD] [-d DATA] [-H 'Name: value']... [-i] [-k] [--cacert FILE] [--show-wire] URL")
		fs.PrintDefaults()
	}
	var headers headerFlags
	fs.StringVar(&o.Method, "X", "", "request method (default GET, or POST with -d)")
	fs.StringVar(&o.Data, "d", "", "request body; @FILE reads a file, @- reads stdin")
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable)")
	fs.BoolVar(&o.ShowWire, "show-wire", false, "print what an observer between client and appliance sees")
	fs.BoolVar(&o.Include, "i", false, "print the response status line and headers")
	fs.BoolVar(&o.Insecure, "k", false, "do not verify the appliance's TLS certificate")
	fs.BoolVar(&o.Insecure, "insecure", false, "same as -k")
	fs.StringVar(&o.CACert, "cacert", "", "PEM file of the CA that signed the appliance's certificate")
	fs.DurationVar(&o.Timeout, "max-time", 30*time.Second, "give up after this long")
	fs.StringVar(&o.AEAD, "aead", "", "force the record AEAD (aes-128-gcm, aes-256-gcm, chacha20-poly1305)")
	fs.StringVar(&o.KEM, "kem", "", "force the KEM (x25519, p256, mlkem768-x25519)")
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return o, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
	if len(rest) != 1 {
		fs.Usage()
		return o, fmt.Errorf("sealgate curl: want exactly one URL, got %d", len(rest))
	}
	o.URL, o.Headers = rest[0], headers
	return o, nil
}

// Curl sends one sealed request and writes the response body to stdout;
// with ShowWire it writes the outer exchange to stderr as an observer on
// the TLS-decrypted path would see it.
func Curl(ctx context.Context, o CurlOptions, stdout, stderr io.Writer) error {
	tlsConf := &tls.Config{InsecureSkipVerify: o.Insecure}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return fmt.Errorf("reading --cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--cacert %s: no PEM certificate found", o.CACert)
		}
		tlsConf.RootCAs = pool
	}
	var base http.RoundTripper = &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, Proxy: http.ProxyFromEnvironment}
	if o.ShowWire {
		base = &WireTransport{Base: base, Out: stderr}
	}
	t := New(base)
	if o.AEAD != "" {
		a, err := parseAEAD(o.AEAD)
		if err != nil {
			return err
		}
		t.AEAD = a
	}
	if o.KEM != "" {
		k, err := parseKEM(o.KEM)
		if err != nil {
			return err
		}
		t.KEMs = []kemID{k}
	}
	var body io.Reader
	var data []byte
	if o.Data != "" {
		var err error
		switch {
		case o.Data == "@-":
			in := o.Stdin
			if in == nil {
				in = os.Stdin
			}
			data, err = io.ReadAll(in)
		case strings.HasPrefix(o.Data, "@"):
			data, err = os.ReadFile(o.Data[1:])
		default:
			data = []byte(o.Data)
		}
		if err != nil {
			return fmt.Errorf("reading -d: %w", err)
		}
		body = bytes.NewReader(data)
	}
	method := o.Method
	if method == "" {
		method = http.MethodGet
		if body != nil {
			method = http.MethodPost
		}
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, o.URL, body)
	if err != nil {
		return fmt.Errorf("sealgate curl: %w", err)
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, h := range o.Headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return fmt.Errorf("-H %q: want 'Name: value'", h)
		}
		if strings.EqualFold(strings.TrimSpace(name), "host") {
			req.Host = strings.TrimSpace(value)
			continue
		}
		req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if o.Include {
		fmt.Fprintf(stdout, "%s %s\r\n", resp.Proto, resp.Status)
		resp.Header.Write(stdout)
		fmt.Fprint(stdout, "\r\n")
	}
	if _, err := io.Copy(stdout, resp.Body); err != nil {
		return fmt.Errorf("reading sealed response: %w", err)
	}
	return nil
}

// WireTransport prints every outer exchange it carries: the request and
// response lines and headers, and a hex dump of each body, the view of an
// observer where TLS ends. Sealed bodies show no plaintext.
type WireTransport struct {
	Base http.RoundTripper
	Out  io.Writer
	// Max is the number of body bytes dumped per message; default 512.
	Max int

	mu sync.Mutex
}

// RoundTrip forwards req over Base and prints the exchange.
func (w *WireTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var sent bytes.Buffer
	var counted countingWriter
	if req.Body != nil {
		r := req.Clone(req.Context())
		r.Body = readCloser{io.TeeReader(req.Body, io.MultiWriter(&limitedBuffer{buf: &sent, max: w.max()}, &counted)), req.Body}
		req = r
	}
	resp, err := w.Base.RoundTrip(req)
	var out bytes.Buffer
	fmt.Fprintf(&out, "> %s %s\n", req.Method, req.URL)
	writeHeaders(&out, "> ", req.Header)
	if req.Body != nil {
		w.dump(&out, "> ", sent.Bytes(), counted.n)
	}
	if err != nil {
		fmt.Fprintf(&out, "! %v\n", err)
		w.print(out.Bytes())
		return nil, err
	}
	fmt.Fprintf(&out, "< %s %s\n", resp.Proto, resp.Status)
	writeHeaders(&out, "< ", resp.Header)
	w.print(out.Bytes())
	resp.Body = &wireBody{ReadCloser: resp.Body, w: w}
	return resp, nil
}

func (w *WireTransport) max() int {
	if w.Max > 0 {
		return w.Max
	}
	return 512
}

func (w *WireTransport) print(b []byte) {
	w.mu.Lock()
	w.Out.Write(b)
	w.mu.Unlock()
}

func (w *WireTransport) dump(out *bytes.Buffer, prefix string, b []byte, total int64) {
	fmt.Fprintf(out, "%s[%d body bytes]\n", prefix, total)
	for _, line := range strings.SplitAfter(strings.TrimRight(hex.Dump(b), "\n"), "\n") {
		if line != "" {
			fmt.Fprintf(out, "%s%s", prefix, strings.TrimRight(line, "\n")+"\n")
		}
	}
	if total > int64(len(b)) {
		fmt.Fprintf(out, "%s... %d more bytes\n", prefix, total-int64(len(b)))
	}
}

func writeHeaders(out *bytes.Buffer, prefix string, h http.Header) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(out, "%s%s: %s\n", prefix, k, v)
		}
	}
}

type wireBody struct {
	io.ReadCloser
	w     *WireTransport
	buf   bytes.Buffer
	n     int64
	shown bool
}

func (b *wireBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if room := b.w.max() - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(n, room)])
	}
	b.n += int64(n)
	if err != nil {
		b.show()
	}
	return n, err
}

func (b *wireBody) Close() error {
	b.show()
	return b.ReadCloser.Close()
}

func (b *wireBody) show() {
	if b.shown {
		return
	}
	b.shown = true
	var out bytes.Buffer
	b.w.dump(&out, "< ", b.buf.Bytes(), b.n)
	b.w.print(out.Bytes())
}

type readCloser struct {
	io.Reader
	io.Closer
}

type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
