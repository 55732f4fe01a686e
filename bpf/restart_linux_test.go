package bpf

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/bpf/internal/netnstest"
)

// TestRestartRefusesNothing runs a client in a loop against a steered port while the "daemon" restarts
// several times the way the real one does: the successor receives the listening socket (here a dup of its
// descriptor), the predecessor closes its descriptors and the Steering, the successor re-opens the
// Steering and registers the socket it received. No connection may fail.
func TestRestartRefusesNothing(t *testing.T) {
	ns := netnstest.New(t)
	opts := Options{BPFFS: testBPFFS(t), NetNS: ns.Path, LockWait: 5 * time.Second}
	var (
		listener *net.TCPListener
		decoy    *net.TCPListener
	)
	if err := ns.Do(func() error {
		listener = listenTCP(t, "tcp4", "127.0.0.1:0")
		decoy = listenTCP(t, "tcp4", "127.0.0.1:7443") // what the port would reach unsteered
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	serveName(decoy, "decoy")
	serveName(listener, "engine")
	s, err := OpenSteering(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetBindings([]Binding{{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Port: 7443, Dest: "api"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterSocket("api", listener); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var (
		ok, failed atomic.Int64
		firstErr   atomic.Value
		wg         sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = ns.Do(func() error {
			for ctx.Err() == nil {
				got, err := whoAnswers("127.0.0.1:7443")
				if err == nil && got != "engine" {
					err = &wrongServer{got}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
			return nil
		})
	}()

	for range 5 {
		time.Sleep(50 * time.Millisecond)
		// Handover: the successor gets the same socket.
		f, err := listener.File()
		if err != nil {
			t.Fatal(err)
		}
		next, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		serveName(next, "engine")
		// The predecessor exits.
		listener.Close()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // nobody holds the Steering now
		// The successor starts.
		if s, err = OpenSteering(opts); err != nil {
			t.Fatal(err)
		}
		if err := s.SetBindings([]Binding{{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Port: 7443, Dest: "api"}}); err != nil {
			t.Fatal(err)
		}
		listener = next.(*net.TCPListener)
		if err := s.RegisterSocket("api", listener); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	wg.Wait()
	listener.Close()
	s.Close()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d connections failed (first: %v), %d succeeded across 5 restarts", failed.Load(), firstErr.Load(), ok.Load())
	}
	t.Logf("%d connections across 5 restarts, none refused", ok.Load())
}

type wrongServer struct{ got string }

func (w *wrongServer) Error() string { return "reached " + w.got + " instead of the engine" }
