package appliance

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// scripted is a plain-HTTP upstream whose answers a test writes: answer
// gets each request (read by net/http's parser) and the connection's
// writer, and returns false to close the connection after it.
type scripted struct {
	ln       net.Listener
	accepted atomic.Int32
	mu       sync.Mutex
	conns    []net.Conn
}

func newScripted(t *testing.T, answer func(r *http.Request, w io.Writer) bool) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		s.closeAll()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, r.Body)
					if !answer(r, c) {
						return
					}
				}
			}()
		}
	}()
	return s
}

// closeAll closes the upstream's side of every connection (an upstream's
// keep-alive timeout).
func (s *scripted) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *scripted) client(t *testing.T) *fastUpstream {
	t.Helper()
	u, _ := url.Parse("http://" + s.ln.Addr().String())
	f := newFastUpstream(u, Limits{DialTimeout: time.Second}, 5*time.Second)
	t.Cleanup(f.retire)
	return f
}

// get sends method path through f and returns the status and the whole
// body, closing a streamed one as the server does.
func get(f *fastUpstream, method, path string) (int, string, error) {
	req := newReq(method, path)
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := f.Do(req, resp); err != nil {
		return 0, "", err
	}
	body := resp.Body()
	if resp.IsBodyStream() {
		var err error
		body, err = io.ReadAll(resp.BodyStream())
		resp.CloseBodyStream()
		if err != nil {
			return resp.StatusCode(), string(body), err
		}
	}
	return resp.StatusCode(), string(body), nil
}

func newReq(method, path string) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.Header.SetHost("api.test")
	req.UseHostHeader = true
	return req
}

func TestUpstreamPoolReusesConnections(t *testing.T) {
	long := strings.Repeat("x", 3*smallUpstreamBody)
	s := newScripted(t, func(r *http.Request, w io.Writer) bool {
		switch r.URL.Path {
		case "/small":
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
		case "/long":
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(long), long)
		case "/chunked":
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
		case "/empty":
			fmt.Fprintf(w, "HTTP/1.1 204 No Content\r\n\r\n")
		case "/interim":
			fmt.Fprintf(w, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		return true
	})
	f := s.client(t)
	want := map[string]string{"/small": "hello", "/long": long, "/chunked": "abcdefg", "/empty": "", "/interim": "ok"}
	for range 3 {
		for _, path := range []string{"/small", "/long", "/chunked", "/empty", "/interim"} {
			code, body, err := get(f, "GET", path)
			if err != nil || body != want[path] {
				t.Fatalf("%s: %d, %d bytes, %v; want %d bytes", path, code, len(body), err, len(want[path]))
			}
		}
		// HEAD: the declared length, no body read (the next exchange
		// on the connection would fail if one were).
		req := newReq("HEAD", "/long")
		resp := fasthttp.AcquireResponse()
		if err := f.Do(req, resp); err != nil || resp.Header.ContentLength() != len(long) || len(resp.Body()) != 0 || resp.IsBodyStream() {
			t.Fatalf("HEAD: %v, length %d, body %d", err, resp.Header.ContentLength(), len(resp.Body()))
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("18 sequential exchanges opened %d upstream connections, want 1", n)
	}
	if d := f.dials.Load(); d != 1 {
		t.Errorf("%d dials, want 1", d)
	}
}

func TestUpstreamPoolClosesWhatCannotBeReused(t *testing.T) {
	s := newScripted(t, func(r *http.Request, w io.Writer) bool {
		switch r.URL.Path {
		case "/close":
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
			return false
		case "/untilclose":
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\n\r\nall of it")
			return false
		default:
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", 2*smallUpstreamBody, strings.Repeat("y", 2*smallUpstreamBody))
			return true
		}
	})
	f := s.client(t)
	for _, path := range []string{"/close", "/untilclose"} {
		if _, body, err := get(f, "GET", path); err != nil || (body != "ok" && body != "all of it") {
			t.Fatalf("%s: %q, %v", path, body, err)
		}
	}
	if n := s.accepted.Load(); n != 2 {
		t.Fatalf("a closing and a close-delimited response: %d connections, want 2 (neither reused)", n)
	}

	// A streamed body closed before its end leaves bytes on the
	// connection: it must not carry the next exchange.
	req := newReq("GET", "/long")
	resp := fasthttp.AcquireResponse()
	if err := f.Do(req, resp); err != nil || !resp.IsBodyStream() {
		t.Fatalf("long body: %v, streamed %v", err, resp.IsBodyStream())
	}
	io.ReadFull(resp.BodyStream(), make([]byte, 100))
	resp.CloseBodyStream()
	if _, body, err := get(f, "GET", "/long"); err != nil || len(body) != 2*smallUpstreamBody {
		t.Fatalf("after an abandoned body: %d bytes, %v", len(body), err)
	}
	if n := s.accepted.Load(); n != 4 {
		t.Errorf("%d connections, want 4: the abandoned body's connection is not reused", n)
	}
}

func TestUpstreamPoolRetriesStaleConnection(t *testing.T) {
	s := newScripted(t, func(r *http.Request, w io.Writer) bool {
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	f := s.client(t)
	if _, _, err := get(f, "GET", "/"); err != nil {
		t.Fatal(err)
	}
	// The upstream drops its idle connection (its keep-alive timeout).
	s.closeAll()
	time.Sleep(50 * time.Millisecond)
	if code, body, err := get(f, "GET", "/"); err != nil || code != 200 || body != "ok" {
		t.Fatalf("GET on a stale pooled connection: %d %q %v; want it retried on a new one", code, body, err)
	}
	// A POST is not idempotent: it is not sent twice.
	s.closeAll()
	time.Sleep(50 * time.Millisecond)
	if _, _, err := get(f, "POST", "/"); err == nil {
		t.Fatal("POST on a stale pooled connection succeeded; want the error, not a second send")
	}
	if code, _, err := get(f, "POST", "/"); err != nil || code != 200 {
		t.Fatalf("POST on a fresh connection: %d %v", code, err)
	}
}

func TestUpstreamPoolBoundsConnections(t *testing.T) {
	release := make(chan struct{})
	s := newScripted(t, func(r *http.Request, w io.Writer) bool {
		if r.URL.Path == "/slow" {
			<-release
		}
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	f := s.client(t)
	f.slots = make(chan struct{}, 1) // one connection at most
	f.waitTimeout = 200 * time.Millisecond
	done := make(chan error, 1)
	go func() {
		_, _, err := get(f, "GET", "/slow")
		done <- err
	}()
	for f.dials.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, _, err := get(f, "GET", "/"); !errors.Is(err, fasthttp.ErrNoFreeConns) {
		t.Fatalf("with the only connection busy past the wait: %v, want ErrNoFreeConns", err)
	}
	// A waiter gets the connection as soon as it is released.
	f.waitTimeout = 5 * time.Second
	got := make(chan error, 1)
	go func() {
		_, _, err := get(f, "GET", "/")
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestUpstreamPoolIdleAndRetire(t *testing.T) {
	long := strings.Repeat("z", 2*smallUpstreamBody)
	s := newScripted(t, func(r *http.Request, w io.Writer) bool {
		if r.URL.Path == "/long" {
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(long), long)
			return true
		}
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	f := s.client(t)
	f.idleTimeout = 40 * time.Millisecond
	if _, _, err := get(f, "GET", "/"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		f.mu.Lock()
		n := len(f.idle)
		f.mu.Unlock()
		if n == 0 && len(f.slots) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an idle connection outlived the idle timeout: %d idle, %d open", n, len(f.slots))
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A retired route's connections close: the idle ones at once, one
	// still streaming a body when its exchange ends.
	f.idleTimeout = time.Hour
	req := newReq("GET", "/long")
	resp := fasthttp.AcquireResponse()
	if err := f.Do(req, resp); err != nil || !resp.IsBodyStream() {
		t.Fatalf("long body: %v, streamed %v", err, resp.IsBodyStream())
	}
	if _, _, err := get(f, "GET", "/"); err != nil { // on a second connection, then pooled
		t.Fatal(err)
	}
	if len(f.slots) != 2 {
		t.Fatalf("%d connections open, want 2", len(f.slots))
	}
	f.retire()
	if len(f.slots) != 1 {
		t.Errorf("%d connections open after retire, want the busy one only", len(f.slots))
	}
	body, err := io.ReadAll(resp.BodyStream())
	resp.CloseBodyStream()
	if err != nil || !bytes.Equal(body, []byte(long)) {
		t.Fatalf("the busy exchange's body: %d bytes, %v", len(body), err)
	}
	if len(f.slots) != 0 {
		t.Errorf("%d connections open after the busy exchange ended, want 0", len(f.slots))
	}
}
