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
