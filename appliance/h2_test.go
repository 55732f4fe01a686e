package appliance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"go/build"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sealgate/sealgate/internal/testpki"
)

// The tests of the engine's own HTTP/2 server (h2.go). Those through
// net/http's client check what an ordinary client sees; the raw ones speak
// frames (h2client below) for what that client cannot be made to send.

// goCommand returns the go command: the one on PATH, or the toolchain's
// that built the test.
func goCommand(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(build.Default.GOROOT, "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Skip("the go command is not installed (neither on PATH nor in GOROOT): cannot run h2spec")
	}
	return p
}

// junitReport is the part of h2spec's JUnit report the test reads.
type junitReport struct {
	Suites []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Package   string    `xml:"package,attr"`
			ClassName string    `xml:"classname,attr"`
			Failure   *xmlInner `xml:"failure"`
			Error     *xmlInner `xml:"error"`
			Skipped   *xmlInner `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

type xmlInner struct {
	Content string `xml:",innerxml"`
}

// TestH2Conformance runs h2spec's whole suite (generic, RFC 7540 and HPACK)
// against the engine's HTTP/2 server.
func TestH2Conformance(t *testing.T) {
	goBin := goCommand(t)
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "hello from upstream\n")
	}), nil)
	_, port, _ := net.SplitHostPort(f.addr)
	report := filepath.Join(t.TempDir(), "report.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "tool", "h2spec", "-t", "-k", "-h", "127.0.0.1", "-p", port, "-o", "5", "-j", report)
	out, runErr := cmd.CombinedOutput()
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("h2spec wrote no report (%v): %v\n%s", runErr, err, out)
	}
	var rep junitReport
	if err := xml.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("h2spec report: %v", err)
	}
	ran := 0
	var failed []string
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			if c.Skipped != nil {
				continue
			}
			ran++
			if c.Failure != nil || c.Error != nil {
				why := ""
				if c.Failure != nil {
					why = c.Failure.Content
				} else {
					why = c.Error.Content
				}
				failed = append(failed, fmt.Sprintf("%s %s: %s", c.Package, c.ClassName, strings.ReplaceAll(why, "\n", " ")))
			}
		}
	}
	t.Logf("h2spec: %d tests ran, %d failed", ran, len(failed))
	if len(failed) > 0 {
		t.Errorf("h2spec: %d of %d tests failed:\n  %s", len(failed), ran, strings.Join(failed, "\n  "))
	}
	if runErr != nil {
		t.Errorf("h2spec exited with %v", runErr)
	}
	if ran < 140 {
		t.Errorf("h2spec ran %d tests, want at least 140", ran)
	}
	if t.Failed() {
		t.Logf("h2spec output:\n%s", out)
	}
}

// warmClient returns an h2 client that has made one request, so it holds
// the connection and the server's SETTINGS before a burst (otherwise it may
// dial several connections at once).
func warmClient(t *testing.T, f *fixture) *http.Client {
	t.Helper()
	c := f.client(true)
	resp, err := c.Get(f.url("/warm"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c
}

// concurrently runs every call at once and fails t with the errors they
// return (the first 10 shown).
func concurrently(t *testing.T, calls []func() error) {
	t.Helper()
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, call := range calls {
		wg.Go(func() { errs[i] = call() })
	}
	wg.Wait()
	bad := 0
	for _, err := range errs {
		if err != nil {
			if bad++; bad <= 10 {
				t.Error(err)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d requests failed", bad, len(calls))
	}
}

// TestH2ManyConcurrentStreams: 200 requests at once on one connection all
// get their own answer, from the engine's server and from net/http's (the
// control).
func TestH2ManyConcurrentStreams(t *testing.T) {
	for _, tt := range []struct {
		name    string
		disable bool
		server  string // sealgate_connections_total's label
	}{{"engine", false, "http2"}, {"net/http", true, "http2_full"}} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) { s.DisableH2FastPath = tt.disable })
			c := warmClient(t, f)
			const n = 200
			calls := make([]func() error, n)
			for i := range n {
				calls[i] = func() error {
					path := fmt.Sprintf("/many/%d", i)
					resp, err := c.Get(f.url(path))
					if err != nil {
						return fmt.Errorf("%s: %v", path, err)
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if want := fmt.Sprintf(`{"path":%q}`, path); err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(body) != want {
						return fmt.Errorf("%s: %d %s %q (%v), want 200 HTTP/2.0 %q", path, resp.StatusCode, resp.Proto, body, err, want)
					}
					return nil
				}
			}
			concurrently(t, calls)
			if got := f.conns(tt.server); got != 1 {
				t.Fatalf("the server counted %d HTTP/2 connections (server=%q), want the 201 requests on 1", got, tt.server)
			}
			if got := f.hits.Load(); got != n+1 {
				t.Fatalf("the upstream saw %d requests, want %d", got, n+1)
			}
		})
	}
}

// TestH2FastResponseFields checks the fields of many fast-path responses on
// one connection, whose values repeat or change from one response to the
// next and whose number varies (the encoder reuses repeated values).
func TestH2FastResponseFields(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/fields/"))
		w.Header().Set("Server", "up")
		if n%3 == 0 {
			w.Header().Set("X-Extra", strconv.Itoa(n))
		}
		w.Header().Set("X-Path", r.URL.Path)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, strings.Repeat("x", n))
	}), nil)
	c := warmClient(t, f)
	const n = 120
	calls := make([]func() error, n)
	for i := range n {
		calls[i] = func() error {
			path := fmt.Sprintf("/fields/%d", i)
			resp, err := c.Get(f.url(path))
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			h := resp.Header
			wantExtra := ""
			if i%3 == 0 {
				wantExtra = strconv.Itoa(i)
			}
			if resp.ProtoMajor != 2 || h.Get("X-Path") != path || h.Get("Server") != "up" || h.Get("X-Extra") != wantExtra ||
				h.Get("Content-Length") != strconv.Itoa(i) || len(body) != i || h.Get("Content-Type") != "text/plain" {
				return fmt.Errorf("%s: %s %v, %d bytes", path, resp.Proto, h, len(body))
			}
			return nil
		}
	}
	concurrently(t, calls)
	if got := f.conns("http2"); got != 1 {
		t.Fatalf("%d h2 connections, want 1", got)
	}
}

// TestH2FlowControl moves bodies five times the server's 1 MiB windows (and
// larger than the client's initial stream window) both ways: they arrive
// whole only if both sides' WINDOW_UPDATEs are sent and honoured.
func TestH2FlowControl(t *testing.T) {
	big := make([]byte, 5<<20)
	rand.Read(big)
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/download" {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			w.Write(big)
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	}), func(s *Spec, _ *testpki.CA) { s.Routes[0].MaxBody = 8 << 20 })
	c := f.client(true)

	t.Run("download", func(t *testing.T) {
		resp, err := c.Get(f.url("/download"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("got %d %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
		}
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("download: %d bytes (err %v), want the upstream's %d bytes intact", len(got), err, len(big))
		}
	})
	sum := sha256.Sum256(big)
	want := fmt.Sprintf("%d %x", len(big), sum)
	for _, tt := range []struct {
		name     string
		declared bool
	}{{"upload with content-length", true}, {"upload without content-length", false}} {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(big)
			if !tt.declared {
				body = io.MultiReader(body) // hides the length
			}
			req, _ := http.NewRequest("POST", f.url("/upload"), body)
			if !tt.declared {
				req.ContentLength = -1
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(out) != want {
				t.Fatalf("got %d %s %q, want 200 over HTTP/2 and the upstream's %q", resp.StatusCode, resp.Proto, out, want)
			}
		})
	}
	if got := f.conns("http2"); got != 1 {
		t.Fatalf("%d HTTP/2 connections, want all transfers on 1", got)
	}
}

// TestH2CancelMidDownload: a client that gives up on a response while it
// streams resets the stream only; the connection serves its next request,
// and the upstream stops being read.
func TestH2CancelMidDownload(t *testing.T) {
	upstreamDone := make(chan int, 1)
	const chunks = 500 // 4 KiB every 20 ms: 10 s if nobody stops it
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := bytes.Repeat([]byte("z"), 4096)
		sent := 0
		defer func() { upstreamDone <- sent }()
		for sent < chunks {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			sent++
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}), nil)
	c := f.client(true)
	var mu sync.Mutex
	var reused []bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		mu.Lock()
		reused = append(reused, i.Reused)
		mu.Unlock()
	}}

	ctx, cancel := context.WithCancel(httptrace.WithClientTrace(context.Background(), trace))
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.url("/stream"), nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("proto %s, want HTTP/2", resp.Proto)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 16<<10)); err != nil {
		t.Fatalf("reading the start of the stream: %v", err)
	}
	cancel()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("the cancelled response read to its end")
	}
	resp.Body.Close()

	req, _ = http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", f.url("/after"), nil)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatalf("request after the cancel: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"path":"/after"}` {
		t.Fatalf("request after the cancel: %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	conns := append([]bool(nil), reused...)
	mu.Unlock()
	if len(conns) != 2 || !conns[1] {
		t.Fatalf("GotConn reused %v, want the second request on the first connection", conns)
	}
	if got := f.conns("http2"); got != 1 {
		t.Fatalf("%d HTTP/2 connections, want 1", got)
	}
	select {
	case sent := <-upstreamDone:
		if sent >= chunks {
			t.Fatal("the upstream's response was read to its end after the client cancelled")
		}
	case <-time.After(8 * time.Second):
		t.Fatal("the upstream was still being read 8 s after the client cancelled")
	}
}

// TestH2GracefulDrain: a request in flight when Shutdown starts completes;
// Shutdown waits for it and reports success.
func TestH2GracefulDrain(t *testing.T) {
	started := make(chan struct{})
	var once sync.Once
	var answered atomic.Bool
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(started) })
		time.Sleep(300 * time.Millisecond)
		answered.Store(true)
		io.WriteString(w, "done")
	}), nil)
	type result struct {
		status int
		proto  string
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := f.client(true).Get(f.url("/slow"))
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{resp.StatusCode, resp.Proto, string(b), err}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.e.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !answered.Load() {
		t.Fatal("Shutdown returned before the in-flight request's upstream answered")
	}
	r := <-got
	if r.err != nil || r.status != 200 || r.proto != "HTTP/2.0" || r.body != "done" {
		t.Fatalf("in-flight request: %d %s %q (%v), want 200 HTTP/2.0 \"done\"", r.status, r.proto, r.body, r.err)
	}
}

// h2client is a raw HTTP/2 client: the test writes frames, a goroutine
// reads the server's into a queue the test waits on. SETTINGS, PING and
// flow control are answered by another goroutine, so the reader never
// waits on a write.
type h2client struct {
	conn     *tls.Conn
	wmu      sync.Mutex // bw, fr's write side, henc, hbuf, prefaced
	prefaced bool
	bw       *bufio.Writer
	fr       *http2.Framer
	henc     *hpack.Encoder
	hbuf     bytes.Buffer

	mu     sync.Mutex
	frames []h2frame
	err    error // the read side ended
	ctl    []func(*http2.Framer) error
	wake   chan struct{}
	ctlc   chan struct{}
	done   chan struct{}
}

// h2frame is what the test needs of one frame from the server.
type h2frame struct {
	typ       http2.FrameType
	stream    uint32
	endStream bool
	fields    []hpack.HeaderField // HEADERS
	data      []byte              // DATA
	code      http2.ErrCode       // RST_STREAM, GOAWAY
	last      uint32              // GOAWAY
}

func (f h2frame) get(name string) string {
	for _, hf := range f.fields {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

func (f h2frame) String() string {
	switch f.typ {
	case http2.FrameHeaders:
		return fmt.Sprintf("HEADERS stream %d end_stream=%v %v", f.stream, f.endStream, f.fields)
	case http2.FrameData:
		return fmt.Sprintf("DATA stream %d end_stream=%v %d bytes", f.stream, f.endStream, len(f.data))
	case http2.FrameRSTStream:
		return fmt.Sprintf("RST_STREAM stream %d %v", f.stream, f.code)
	case http2.FrameGoAway:
		return fmt.Sprintf("GOAWAY last stream %d %v", f.last, f.code)
	}
	return fmt.Sprintf("%v stream %d", f.typ, f.stream)
}

var errH2Wait = errors.New("no frame from the server in time")

func dialH2(t *testing.T, f *fixture) *h2client {
	t.Helper()
	conn, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.Pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		conn.Close()
		t.Fatalf("ALPN chose %q, want h2", p)
	}
	c := &h2client{conn: conn, wake: make(chan struct{}, 1), ctlc: make(chan struct{}, 1), done: make(chan struct{})}
	c.bw = bufio.NewWriterSize(conn, 64<<10)
	c.fr = http2.NewFramer(c.bw, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.henc = hpack.NewEncoder(&c.hbuf)
	ctlDone := make(chan struct{})
	go c.readLoop()
	go c.ctlLoop(ctlDone)
	t.Cleanup(func() {
		conn.Close()
		<-c.done
		<-ctlDone
	})
	return c
}

// write runs fn with the framer and sends what it wrote. The first write
// sends the client preface and SETTINGS ahead of it, in the same flush: a
// test of timeouts does not lose time between the two.
func (c *h2client) write(fn func(*http2.Framer) error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.prefaced {
		c.prefaced = true
		if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
			return err
		}
		if err := c.fr.WriteSettings(); err != nil {
			return err
		}
	}
	if err := fn(c.fr); err != nil {
		return err
	}
	return c.bw.Flush()
}

// headers sends a header block (HEADERS, then CONTINUATIONs if needed).
func (c *h2client) headers(id uint32, endStream bool, fields ...hpack.HeaderField) error {
	return c.write(func(fr *http2.Framer) error {
		c.hbuf.Reset()
		for _, hf := range fields {
			c.henc.WriteField(hf)
		}
		block := c.hbuf.Bytes()
		frag := block[:min(len(block), 16384)]
		block = block[len(frag):]
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: endStream, EndHeaders: len(block) == 0}); err != nil {
			return err
		}
		for len(block) > 0 {
			frag = block[:min(len(block), 16384)]
			block = block[len(frag):]
			if err := fr.WriteContinuation(id, len(block) == 0, frag); err != nil {
				return err
			}
		}
		return nil
	})
}

// reqFields are a request's pseudo-header fields and extra name, value
// pairs.
func reqFields(method, path string, extra ...string) []hpack.HeaderField {
	hf := []hpack.HeaderField{
		{Name: ":method", Value: method}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "localhost"}, {Name: ":path", Value: path},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		hf = append(hf, hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return hf
}

func (c *h2client) readLoop() {
	defer close(c.done)
	for {
		fr, err := c.fr.ReadFrame()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			c.signal(c.wake)
			c.signal(c.ctlc)
			return
		}
		ev := h2frame{typ: fr.Header().Type, stream: fr.Header().StreamID}
		var ctl func(*http2.Framer) error
		switch fr := fr.(type) {
		case *http2.SettingsFrame:
			if !fr.IsAck() {
				ctl = func(w *http2.Framer) error { return w.WriteSettingsAck() }
			}
		case *http2.PingFrame:
			if !fr.IsAck() {
				data := fr.Data
				ctl = func(w *http2.Framer) error { return w.WritePing(true, data) }
			}
		case *http2.MetaHeadersFrame:
			ev.endStream = fr.StreamEnded()
			ev.fields = fr.Fields
		case *http2.DataFrame:
			ev.endStream = fr.StreamEnded()
			ev.data = bytes.Clone(fr.Data())
			if n, id, more := fr.Length, fr.StreamID, !fr.StreamEnded(); n > 0 {
				// Credit back at once: the tests read every byte.
				ctl = func(w *http2.Framer) error {
					if err := w.WriteWindowUpdate(0, n); err != nil || !more {
						return err
					}
					return w.WriteWindowUpdate(id, n)
				}
			}
		case *http2.RSTStreamFrame:
			ev.code = fr.ErrCode
		case *http2.GoAwayFrame:
			ev.code, ev.last = fr.ErrCode, fr.LastStreamID
		}
		c.mu.Lock()
		c.frames = append(c.frames, ev)
		if ctl != nil {
			c.ctl = append(c.ctl, ctl)
		}
		c.mu.Unlock()
		c.signal(c.wake)
		if ctl != nil {
			c.signal(c.ctlc)
		}
	}
}

func (c *h2client) ctlLoop(done chan struct{}) {
	defer close(done)
	for range c.ctlc {
		c.mu.Lock()
		ctl, ended := c.ctl, c.err != nil
		c.ctl = nil
		c.mu.Unlock()
		if ended {
			return
		}
		for _, fn := range ctl {
			if c.write(fn) != nil {
				return // the connection is gone
			}
		}
	}
}

func (c *h2client) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// next returns the server's next frame; the error is the read side's
// (io.EOF once the server closed) or errH2Wait after d.
func (c *h2client) next(d time.Duration) (h2frame, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		c.mu.Lock()
		if len(c.frames) > 0 {
			f := c.frames[0]
			c.frames = c.frames[1:]
			c.mu.Unlock()
			return f, nil
		}
		err := c.err
		c.mu.Unlock()
		if err != nil {
			return h2frame{}, err
		}
		select {
		case <-c.wake:
		case <-timer.C:
			return h2frame{}, errH2Wait
		}
	}
}

// streamFrame returns the next frame on stream id, or a GOAWAY; the server's
// other stream-0 frames and other streams' frames are skipped.
func (c *h2client) streamFrame(id uint32, d time.Duration) (h2frame, error) {
	deadline := time.Now().Add(d)
	for {
		f, err := c.next(time.Until(deadline))
		if err != nil {
			return f, err
		}
		if f.stream == id || f.typ == http2.FrameGoAway {
			return f, nil
		}
	}
}

// response reads a whole response on stream id: its final header block and
// its body. 1xx header blocks are returned in interim.
func (c *h2client) response(id uint32, d time.Duration) (interim []h2frame, head h2frame, body []byte, err error) {
	gotHead := false
	for {
		f, err := c.streamFrame(id, d)
		if err != nil {
			return interim, head, body, err
		}
		switch f.typ {
		case http2.FrameGoAway:
			return interim, head, body, fmt.Errorf("stream %d: %v", id, f)
		case http2.FrameRSTStream:
			return interim, head, body, fmt.Errorf("stream %d reset: %v", id, f)
		case http2.FrameHeaders:
			if s := f.get(":status"); len(s) == 3 && s[0] == '1' {
				interim = append(interim, f)
				continue
			}
			if !gotHead {
				head, gotHead = f, true
			}
		case http2.FrameData:
			body = append(body, f.data...)
		}
		if f.endStream {
			return interim, head, body, nil
		}
	}
}

// TestH2ExpectContinue: a request announcing Expect: 100-continue gets a
// 100 before it sends its body, then the final response.
func TestH2ExpectContinue(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got:%s", b)
	}), nil)
	c := dialH2(t, f)
	if err := c.headers(1, false, reqFields("POST", "/upload", "content-length", "5", "expect", "100-continue", "content-type", "text/plain")...); err != nil {
		t.Fatal(err)
	}
	first, err := c.streamFrame(1, 10*time.Second)
	if err != nil {
		t.Fatalf("waiting for the 100 without having sent the body: %v", err)
	}
	if first.typ != http2.FrameHeaders || first.get(":status") != "100" || first.endStream {
		t.Fatalf("first frame on the stream: %v, want HEADERS :status 100 without END_STREAM", first)
	}
	if err := c.write(func(fr *http2.Framer) error { return fr.WriteData(1, true, []byte("hello")) }); err != nil {
		t.Fatal(err)
	}
	interim, head, body, err := c.response(1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(interim) != 0 {
		t.Errorf("more 1xx after the body was sent: %v", interim)
	}
	if head.get(":status") != "200" || string(body) != "got:hello" {
		t.Fatalf("final response %v body %q, want 200 \"got:hello\"", head, body)
	}
}

// TestH2IdleTimeout: a request slower than the idle timeout is not cut; once
// the connection is idle that long the server says GOAWAY (NO_ERROR) and
// closes it.
func TestH2IdleTimeout(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(700 * time.Millisecond)
		io.WriteString(w, "slow")
	}), func(s *Spec, _ *testpki.CA) { s.Limits.IdleTimeout = 300 * time.Millisecond })
	c := dialH2(t, f)
	if err := c.headers(1, true, reqFields("GET", "/slow")...); err != nil {
		t.Fatal(err)
	}
	_, head, body, err := c.response(1, 10*time.Second)
	if err != nil {
		t.Fatalf("a request longer than the idle timeout: %v", err)
	}
	if head.get(":status") != "200" || string(body) != "slow" {
		t.Fatalf("response %v body %q, want 200 \"slow\"", head, body)
	}
	var away *h2frame
	for {
		fr, err := c.next(10 * time.Second)
		if errors.Is(err, errH2Wait) {
			t.Fatal("the idle connection was still open 10 s after its last response; the idle timeout is 300ms")
		}
		if err != nil {
			if away == nil {
				t.Fatalf("the connection ended (%v) without a GOAWAY", err)
			}
			break // closed after the GOAWAY
		}
		switch {
		case fr.typ == http2.FrameGoAway:
			if away != nil {
				t.Fatalf("a second GOAWAY: %v", fr)
			}
			away = &fr
			if fr.code != http2.ErrCodeNo || fr.last != 1 {
				t.Fatalf("%v, want GOAWAY NO_ERROR with last stream 1", fr)
			}
		case fr.stream != 0:
			t.Fatalf("unexpected frame on an idle connection: %v", fr)
		}
	}
}

// TestH2HeadersTooLarge: request headers over MaxHeaderBytes are
// answered 431 (problem+json), as over HTTP/1.1 (TestHeaderTooLarge),
// without reaching the upstream, and the connection goes on.
func TestH2HeadersTooLarge(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) { s.Limits.MaxHeaderBytes = 4096 })
	// refused sends fields on stream 1 of a new connection and checks the
	// 431.
	refused := func(t *testing.T, fields ...string) *h2client {
		t.Helper()
		before := f.hits.Load()
		c := dialH2(t, f)
		if err := c.headers(1, true, reqFields("GET", "/too-large", fields...)...); err != nil {
			t.Fatal(err)
		}
		_, head, body, err := c.response(1, 10*time.Second)
		if err != nil {
			t.Fatalf("want a 431 response, got %v", err)
		}
		if head.get(":status") != "431" || head.get("content-type") != "application/problem+json" {
			t.Fatalf("response %v, want 431 application/problem+json", head)
		}
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil || p["status"] != float64(431) {
			t.Fatalf("problem body %q (%v), want a problem with status 431", body, err)
		}
		if n := f.hits.Load() - before; n != 0 {
			t.Fatalf("the upstream saw %d requests, want the oversized one kept from it", n)
		}
		return c
	}
	// next checks the connection serves stream 3, with fields.
	next := func(t *testing.T, c *h2client, fields ...string) {
		t.Helper()
		if err := c.headers(3, true, reqFields("GET", "/next", fields...)...); err != nil {
			t.Fatal(err)
		}
		_, head, body, err := c.response(3, 10*time.Second)
		if err != nil {
			t.Fatalf("the connection after the 431: %v", err)
		}
		if head.get(":status") != "200" || string(body) != `{"path":"/next"}` {
			t.Fatalf("after the 431: %v body %q, want 200 {\"path\":\"/next\"}", head, body)
		}
	}

	t.Run("many fields", func(t *testing.T) {
		// 8 fields of 1000 bytes: twice the limit, each field under it.
		val := func(i int) string { return strings.Repeat(strconv.Itoa(i), 1000) }
		var big []string
		for i := range 8 {
			big = append(big, fmt.Sprintf("x-big-%d", i), val(i))
		}
		c := refused(t, big...)
		// The server must have kept its HPACK table in step while it
		// dropped the fields: x-big-7 is in both sides' tables now, and
		// sent again it is one index on the wire.
		next(t, c, "x-big-7", val(7))
		if up := f.lastReq.Load(); up == nil || up.Header.Get("X-Big-7") != val(7) {
			t.Fatal("the upstream did not get x-big-7 as sent: the server's HPACK table went out of step")
		}
	})
	t.Run("one field", func(t *testing.T) {
		// One field of 8000 bytes, as TestHeaderTooLarge sends over
		// HTTP/1.1 (a large cookie or token).
		c := refused(t, "x-big", strings.Repeat("q", 8000))
		next(t, c)
	})
}

// TestH2RapidReset: streams opened and reset at once, a thousand times
// (CVE-2023-44487), leave the server serving. The connection must then
// either answer a normal request or end with a GOAWAY the client receives
// (RFC 9113 §5.4.1, §6.8: the client learns why, and which streams were
// processed); and a new connection is served.
func TestH2RapidReset(t *testing.T) {
	f := newFixture(t, nil, nil)
	c := dialH2(t, f)
	const n = 1000
	var wrote int
	for i := range n {
		id := uint32(2*i + 1)
		// Each pair goes out as soon as it is made, as an attacking
		// client sends it.
		err := c.write(func(fr *http2.Framer) error {
			c.hbuf.Reset()
			for _, hf := range reqFields("GET", fmt.Sprintf("/reset/%d", i)) {
				c.henc.WriteField(hf)
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
				return err
			}
			return fr.WriteRSTStream(id, http2.ErrCodeCancel)
		})
		if err != nil {
			break // the server ended the connection; checked below
		}
		wrote++
	}
	next := uint32(2*n + 1)
	sent := wrote == n && c.headers(next, true, reqFields("GET", "/after-burst")...) == nil
	var (
		away     *h2frame
		answered bool
		resets   int
		end      error
	)
	for !answered && end == nil {
		fr, err := c.next(10 * time.Second)
		if errors.Is(err, errH2Wait) {
			t.Fatalf("neither an answer to stream %d nor the end of the connection within 10 s of the burst (GOAWAY: %v)", next, away)
		}
		if err != nil {
			end = err
			break
		}
		switch {
		case fr.typ == http2.FrameGoAway:
			if away == nil {
				away = &fr
			}
		case fr.typ == http2.FrameRSTStream:
			resets++
		}
		if sent && fr.stream == next {
			if fr.typ != http2.FrameHeaders || fr.get(":status") != "200" {
				t.Fatalf("stream %d after the burst: %v, want a 200", next, fr)
			}
			answered = true
		}
	}
	switch {
	case answered:
		t.Logf("the connection still serves after %d resets (GOAWAY: %v)", n, away)
	case away == nil:
		t.Errorf("the connection ended (%v) without a GOAWAY reaching the client, after %d pairs written and %d RST_STREAMs received", end, wrote, resets)
	default:
		t.Logf("the server ended the connection: %v", away)
		if sent && away.last >= next {
			t.Errorf("%v covers stream %d, which was never answered", away, next)
		}
	}
	resp, err := f.client(true).Get(f.url("/fresh"))
	if err != nil {
		t.Fatalf("a new connection after the burst: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"path":"/fresh"}` {
		t.Fatalf("a new connection after the burst: %d %q", resp.StatusCode, body)
	}
}

// TestH2HandlerPath: requests the fast path does not take (a path net/http
// decodes, a 404, a staged route) run the engine's handler on the same h2
// connection, concurrently, with bodies both ways.
func TestH2HandlerPath(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, _ := io.Copy(sum, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path":%q,"n":%d,"sha":"%x"}`, r.URL.Path, n, sum.Sum(nil))
	}), func(s *Spec, _ *testpki.CA) {
		s.Routes[0].MaxBody = 8 << 20
		s.Routes = append(s.Routes, RouteSpec{Name: "staged", Listener: "api", Match: "/staged/", Upstream: s.Routes[0].Upstream,
			MaxBody: 8 << 20, Stages: []func(http.Handler) http.Handler{markStage}})
	})
	c := warmClient(t, f)
	upload := make([]byte, 3<<20)
	rand.Read(upload)
	want := sha256.Sum256(upload)
	var calls []func() error
	for i := range 20 {
		calls = append(calls, func() error {
			// %7E is "~": net/http decodes it, so the fast path leaves
			// it to the handler.
			path := fmt.Sprintf("/enc/%%7E%d", i)
			resp, err := c.Get(f.url(path))
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if w := fmt.Sprintf(`"path":"/enc/~%d"`, i); resp.StatusCode != 200 || !strings.Contains(string(body), w) {
				return fmt.Errorf("%s: %d %s, want %s", path, resp.StatusCode, body, w)
			}
			return nil
		})
	}
	for _, path := range []string{"/staged/up", "/enc/%7Eup"} {
		calls = append(calls, func() error {
			resp, err := c.Post(f.url(path), "application/octet-stream", bytes.NewReader(upload))
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var errs []error
			if w := fmt.Sprintf(`"n":%d,"sha":"%x"`, len(upload), want); resp.StatusCode != 200 || !strings.Contains(string(body), w) {
				errs = append(errs, fmt.Errorf("POST %s: %d %s, want %s", path, resp.StatusCode, body, w))
			}
			if path == "/staged/up" && resp.Header.Get("X-Stage") != "ran" {
				errs = append(errs, fmt.Errorf("POST %s: the stage did not run (headers %v)", path, resp.Header))
			}
			return errors.Join(errs...)
		})
	}
	concurrently(t, calls)
	if got := f.conns("http2"); got != 1 {
		t.Fatalf("%d h2 connections, want all requests on 1", got)
	}
}

// TestH2LargeResponseStreams: a response of known length goes out as it is
// framed, not gathered whole first. The upstream sends 256 KiB and waits
// until the client has read 64 KiB of it before it sends the rest: with the
// response held back until it is complete, neither side would move.
func TestH2LargeResponseStreams(t *testing.T) {
	const total, first = 1 << 20, 256 << 10
	clientHas := make(chan struct{})
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(total))
		chunk := bytes.Repeat([]byte("y"), first)
		w.Write(chunk)
		w.(http.Flusher).Flush()
		select {
		case <-clientHas:
		case <-time.After(5 * time.Second):
			return // the response stays short: the client sees an error
		}
		w.Write(bytes.Repeat([]byte("y"), total-first))
	}), nil)
	resp, err := f.client(true).Get(f.url("/big"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatalf("the first 64 KiB did not arrive: %v", err)
	}
	close(clientHas)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || len(rest) != total-64<<10 {
		t.Fatalf("the rest: %d bytes, %v; want %d", len(rest), err, total-64<<10)
	}
}

// pipeTransport gives a pipe the CloseWrite the server calls on TLS.
type pipeTransport struct{ net.Conn }

func (pipeTransport) CloseWrite() error { return nil }

// h2Seed is a client's bytes after the preface: frames written by x/net's
// Framer (and header blocks by its encoder) through fn.
func h2Seed(fn func(fr *http2.Framer, block func(fields ...string) []byte)) []byte {
	var out, hb bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	enc := hpack.NewEncoder(&hb)
	block := func(fields ...string) []byte {
		hb.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return bytes.Clone(hb.Bytes())
	}
	fr.WriteSettings()
	fn(fr, block)
	return out.Bytes()
}

// FuzzH2Frames feeds arbitrary bytes after the client preface to the
// engine's HTTP/2 server, as a client could: it must not panic (a panic
// anywhere ends the fuzzing process), and it must end the connection once
// the client has gone.
func FuzzH2Frames(f *testing.F) {
	fx := newFixture(f, nil, nil)
	fx.e.mu.Lock()
	srv := fx.e.servers["api"]
	fx.e.mu.Unlock()
	get := func(fr *http2.Framer, block func(...string) []byte, id uint32, end bool, path string) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: end, EndHeaders: true,
			BlockFragment: block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", path)})
	}
	f.Add(h2Seed(func(fr *http2.Framer, b func(...string) []byte) { get(fr, b, 1, true, "/a") }))
	f.Add(h2Seed(func(fr *http2.Framer, b func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
			BlockFragment: b(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/up", "content-length", "5", "expect", "100-continue")})
		fr.WriteData(1, false, []byte("he"))
		fr.WriteWindowUpdate(0, 1000)
		fr.WriteData(1, true, []byte("llo"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, BlockFragment: b(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/t", "trailer", "x-sum")})
		fr.WriteData(3, false, []byte("body"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndStream: true, EndHeaders: true, BlockFragment: b("x-sum", "1")})
	}))
	f.Add(h2Seed(func(fr *http2.Framer, b func(...string) []byte) {
		get(fr, b, 1, false, "/%7Ehandler")
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
		fr.WritePing(false, [8]byte{1, 2, 3})
		fr.WritePriority(5, http2.PriorityParam{StreamDep: 5})
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384})
		get(fr, b, 7, true, "/b")
		fr.WriteWindowUpdate(7, 1<<30)
		fr.WriteGoAway(7, http2.ErrCodeNo, nil)
	}))
	f.Add(h2Seed(func(fr *http2.Framer, b func(...string) []byte) {
		blk := b(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/c", "cookie", "a=1", "cookie", "b=2")
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, BlockFragment: blk[:3]})
		fr.WriteContinuation(1, true, blk[3:])
		fr.WriteData(9, true, []byte("idle"))
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			fx.e.serveH2(srv, pipeTransport{a}, tls.ConnectionState{Version: tls.VersionTLS13, NegotiatedProtocol: "h2"}, &guardedConn{Conn: a})
		}()
		go io.Copy(io.Discard, b)
		b.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := b.Write([]byte(http2.ClientPreface)); err == nil {
			b.Write(data)
		}
		b.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the server kept the connection 10 s after the client closed it")
		}
	})
}

// TestH2StalledBody: a client that stops sending a request body it started
// gets 408 after idle_timeout without a byte, with and without a declared
// length; a small body's request never reached the upstream (it is sent
// once buffered, and it never was).
func TestH2StalledBody(t *testing.T) {
	f := newFixture(t, nil, func(s *Spec, _ *testpki.CA) { s.Limits.IdleTimeout = 300 * time.Millisecond })
	for _, extra := range [][]string{{"content-length", "10"}, nil} {
		c := dialH2(t, f)
		if err := c.headers(1, false, reqFields("POST", "/stall", extra...)...); err != nil {
			t.Fatal(err)
		}
		if err := c.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, []byte("abc")) }); err != nil {
			t.Fatal(err)
		}
		_, head, body, err := c.response(1, 10*time.Second)
		if err != nil {
			t.Fatalf("%v: %v", extra, err)
		}
		if head.get(":status") != "408" || !strings.Contains(string(body), "not received in time") {
			t.Fatalf("%v: %v %q, want 408", extra, head, body)
		}
	}
	if n := f.hits.Load(); n != 0 {
		t.Fatalf("the upstream saw %d requests", n)
	}
}

// TestH2StreamedBodyOverLimit: on a route whose max_body is above what the
// engine buffers, a body of unknown length streams to the upstream; past
// max_body the client gets 413 and the upstream never sees the body end as
// if it were complete.
func TestH2StreamedBodyOverLimit(t *testing.T) {
	const limit = 9 << 20
	upstreamGot := make(chan error, 1)
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err == nil {
			err = fmt.Errorf("the upstream read a complete body of %d bytes", n)
		} else {
			err = nil // aborted: what it should see
		}
		upstreamGot <- err
	}), func(s *Spec, _ *testpki.CA) { s.Routes[0].MaxBody = limit })
	body := io.LimitReader(zeroReader{}, limit+1<<20) // no length: streamed
	resp, err := f.client(true).Post(f.url("/big-upload"), "application/octet-stream", io.NopCloser(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("%d %s, want 413", resp.StatusCode, b)
	}
	select {
	case err := <-upstreamGot:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream handler did not finish")
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// taskFunc runs a function as an h2 pool task.
type taskFunc func()

func (f taskFunc) serveStream() { f() }

func TestH2WorkersReuseAndEnd(t *testing.T) {
	p := &h2workers{every: 20 * time.Millisecond}
	counts := func() (idle, live int) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.idle), p.live
	}
	// Sequential functions share one goroutine.
	for range 50 {
		done := make(chan struct{})
		p.run(taskFunc(func() { close(done) }))
		<-done
		for {
			if idle, _ := counts(); idle == 1 {
				break
			}
			runtime.Gosched()
		}
	}
	if _, live := counts(); live != 1 {
		t.Fatalf("50 sequential functions ran on %d goroutines, want 1", live)
	}
	// Concurrent ones get a goroutine each.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 8 {
		wg.Add(1)
		p.run(taskFunc(func() {
			wg.Done()
			<-release
		}))
	}
	wg.Wait()
	if _, live := counts(); live != 8 {
		t.Fatalf("8 concurrent functions: %d goroutines, want 8", live)
	}
	close(release)
	// Idle ones end within two periods; the cleaner stops with the last.
	deadline := time.Now().Add(5 * time.Second)
	for {
		idle, live := counts()
		p.mu.Lock()
		cleaning := p.cleaning
		p.mu.Unlock()
		if idle == 0 && live == 0 && !cleaning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after idling: %d idle, %d live, cleaner running %v; want none", idle, live, cleaning)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// And the pool starts again.
	done := make(chan struct{})
	p.run(taskFunc(func() { close(done) }))
	<-done
}
