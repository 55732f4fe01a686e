package bpf

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/sealgate/sealgate/bpf/internal/netnstest"
	"golang.org/x/sys/unix"
)

// testBPFFS mounts a private bpffs for one test (OpenSteering/OpenGuard mount it) and unmounts it after.
func testBPFFS(tb testing.TB) string {
	tb.Helper()
	netnstest.Privileged(tb)
	dir, err := os.MkdirTemp("", "sealgate-bpffs-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		_ = os.Remove(dir)
	})
	return dir
}

// listenTCP opens a TCP listener without MPTCP (an MPTCP listener cannot enter a SOCKMAP).
func listenTCP(tb testing.TB, network, addr string) *net.TCPListener {
	tb.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		tb.Fatalf("listen %s %s: %v", network, addr, err)
	}
	tb.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

// serveName answers every connection on l with name and closes it.
func serveName(l net.Listener, name string) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(name))
			c.Close()
		}
	}()
}

// whoAnswers dials addr (from the calling thread's namespace) and returns the name the server sent.
func whoAnswers(addr string) (string, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func isRefused(err error) bool {
	return errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ECONNRESET)
}

func newNS(tb testing.TB) *netnstest.NS { return netnstest.New(tb) }
