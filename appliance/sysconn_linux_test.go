package appliance

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection, the first wrapped
// as a sysConn.
func tcpPair(t *testing.T) (*sysConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	t.Cleanup(func() {
		c.Close()
		peer.Close()
	})
	sc, ok := newSysConn(c).(*sysConn)
	if !ok {
		t.Fatal("a TCP connection was not wrapped")
	}
	return sc, peer
}

func TestSysConnCarriesBytesBothWays(t *testing.T) {
	sc, peer := tcpPair(t)
	// More than the socket buffers hold: writes wait for room through the
	// poller and resume where they stopped.
	data := make([]byte, 16<<20)
	rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	n, err := sc.Write(data)
	if err != nil || n != len(data) {
		t.Fatalf("wrote %d of %d: %v", n, len(data), err)
	}
	sc.CloseWrite()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("the peer read %d bytes, not what was written", len(b))
	}

	go func() {
		peer.Write(data[:1<<20])
		peer.Close()
	}()
	b, err := io.ReadAll(sc)
	if err != nil || !bytes.Equal(b, data[:1<<20]) {
		t.Fatalf("read %d bytes, %v; want 1 MiB then EOF", len(b), err)
	}
	if n, err := sc.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("after the end: %d, %v; want io.EOF", n, err)
	}
}

func TestSysConnErrorsAsTCPConn(t *testing.T) {
	sc, peer := tcpPair(t)
	// A deadline: a timeout, as net.Conn promises.
	sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := sc.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read error %#v, want a *net.OpError for read", err)
	}
	sc.SetReadDeadline(time.Time{})

	// The peer resets: ECONNRESET, as errors.Is sees it.
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	time.Sleep(20 * time.Millisecond)
	if _, err := sc.Read(make([]byte, 10)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after a reset: %v, want ECONNRESET", err)
	}

	// Closed here: net.ErrClosed.
	sc.Close()
	if _, err := sc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
	if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
}

// TestSysConnCloseUnblocksRead: a read waiting in the poller returns when
// the connection is closed from another goroutine, as net.TCPConn's does.
func TestSysConnCloseUnblocksRead(t *testing.T) {
	sc, _ := tcpPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := sc.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	sc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read interrupted by Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting read did not return when the connection closed")
	}
}

// TestSysConnAllocations: reads and writes allocate nothing (the functions
// handed to RawConn are made once per connection).
func TestSysConnAllocations(t *testing.T) {
	sc, peer := tcpPair(t)
	buf := make([]byte, 64)
	msg := []byte("ping")
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := sc.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf[:4]); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(sc, buf[:4]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per write, read and round trip, want 0", allocs)
	}
}

// TestSysConnSendWithRead: a request handed to sendWithRead goes out once,
// whole, with the next Read, which returns the reply; one larger than the
// socket buffers still goes out whole; a write the peer refuses is
// reported as a write error that errors.Is sees.
func TestSysConnSendWithRead(t *testing.T) {
	sc, peer := tcpPair(t)
	echo := func(n int) <-chan []byte {
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, n)
			if _, err := io.ReadFull(peer, b); err != nil {
				got <- nil
				return
			}
			got <- b
			peer.Write([]byte("reply"))
		}()
		return got
	}
	for _, size := range []int{100, 16 << 20} {
		req := make([]byte, size)
		rand.Read(req)
		got := echo(size)
		sc.sendWithRead(req)
		buf := make([]byte, 64)
		n, err := sc.Read(buf)
		if err != nil || string(buf[:n]) != "reply" {
			t.Fatalf("%d-byte request: read %q, %v; want the reply", size, buf[:n], err)
		}
		if b := <-got; !bytes.Equal(b, req) {
			t.Fatalf("%d-byte request: the peer read %d bytes, not the request", size, len(b))
		}
	}
	// Nothing was left to send twice: a plain read now waits for new bytes.
	go peer.Write([]byte("more"))
	buf := make([]byte, 64)
	if n, err := sc.Read(buf); err != nil || string(buf[:n]) != "more" {
		t.Fatalf("the read after: %q, %v; want \"more\"", buf[:n], err)
	}

	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	time.Sleep(20 * time.Millisecond)
	sc.Read(buf) // sees the reset
	sc.sendWithRead([]byte("after the reset"))
	_, err := sc.Read(buf)
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" || !(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("a request to a reset peer: %v; want a write error, EPIPE or ECONNRESET", err)
	}
}

// TestSysConnSendWithReadAllocations: the exchange allocates nothing.
func TestSysConnSendWithReadAllocations(t *testing.T) {
	sc, peer := tcpPair(t)
	go func() {
		b := make([]byte, 4)
		for {
			if _, err := io.ReadFull(peer, b); err != nil {
				return
			}
			peer.Write(b)
		}
	}()
	buf := make([]byte, 64)
	msg := []byte("ping")
	allocs := testing.AllocsPerRun(200, func() {
		sc.sendWithRead(msg)
		if _, err := io.ReadFull(sc, buf[:4]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per exchange, want 0", allocs)
	}
}
