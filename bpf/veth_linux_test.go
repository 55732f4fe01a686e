package bpf

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/bpf/internal/netnstest"
)

var (
	hostAddr = netip.MustParsePrefix("10.99.0.1/24")
	peerAddr = netip.MustParsePrefix("10.99.0.2/24")
)

// vethPair is a host namespace with the guard and a peer namespace acting as the client, joined by a
// veth pair named sgh0 (host side) / sgp0 (peer side).
type vethPair struct {
	host, peer *netnstest.NS
	bpffs      string
	server     *net.TCPListener
}

func newVethPair(t *testing.T) *vethPair {
	t.Helper()
	v := &vethPair{host: netnstest.New(t), peer: netnstest.New(t), bpffs: testBPFFS(t)}
	v.link(t)
	if err := v.host.Do(func() error {
		v.server = listenTCP(t, "tcp4", hostAddr.Addr().String()+":443")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	serveName(v.server, "api")
	return v
}

func (v *vethPair) link(t *testing.T) {
	t.Helper()
	netnstest.Veth(t, v.host, "sgh0", hostAddr, v.peer, "sgp0", peerAddr)
}

// dial connects from the peer namespace to the host's port 443 with a short timeout.
func (v *vethPair) dial(timeout time.Duration) error {
	var derr error
	err := v.peer.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		d.SetMultipathTCP(false)
		c, err := d.Dial("tcp4", hostAddr.Addr().String()+":443")
		if err == nil {
			c.Close()
		}
		derr = err
		return nil
	})
	if err != nil {
		return err
	}
	return derr
}

func packets(t *testing.T, g *Guard, iface, verdict, reason string) uint64 {
	t.Helper()
	cs, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Interface == iface && c.Verdict == verdict && c.Reason == reason {
			return c.Packets
		}
	}
	return 0
}

func TestGuardVeth(t *testing.T) {
	for _, mode := range []string{ModeNative, ModeGeneric, ModeAuto} {
		t.Run(mode, func(t *testing.T) {
			v := newVethPair(t)
			g, err := OpenGuard(Options{BPFFS: v.bpffs, NetNS: v.host.Path})
			if err != nil {
				t.Fatalf("OpenGuard: %v", err)
			}
			defer g.Close()
			a, err := g.Attach("sgh0", mode)
			if err != nil {
				t.Fatalf("Attach: %v", err)
			}
			wantMode := mode
			if mode == ModeAuto {
				wantMode = ModeNative // veth has native XDP
			}
			if !a.Attached || a.Mode != wantMode || a.Driver != "veth" || a.ProgramID == 0 {
				t.Fatalf("attachment %+v, want attached in %s mode on driver veth", a, wantMode)
			}
			if err := g.SetProtectedPorts([]uint16{443}); err != nil {
				t.Fatal(err)
			}
			if err := v.dial(2 * time.Second); err != nil {
				t.Fatalf("dial before blocking: %v", err)
			}

			const ttl = 1500 * time.Millisecond
			if err := g.Block(netip.MustParsePrefix("10.99.0.2/32"), ttl); err != nil {
				t.Fatal(err)
			}
			expiry := time.Now().Add(ttl)
			if err := v.dial(300 * time.Millisecond); err == nil {
				t.Fatal("dial from a blocked source succeeded")
			}
			if n := packets(t, g, "sgh0", "drop", "blocklist"); n == 0 {
				t.Error("no packet counted as drop/blocklist on sgh0")
			}
			if bl, err := g.Blocked(); err != nil || len(bl) != 1 || bl[0].Prefix != netip.MustParsePrefix("10.99.0.2/32") {
				t.Errorf("Blocked() = %v, %v; want the one entry", bl, err)
			}

			time.Sleep(time.Until(expiry) + 100*time.Millisecond)
			if err := v.dial(2 * time.Second); err != nil {
				t.Fatalf("dial after the block expired: %v", err)
			}
			if bl, err := g.Blocked(); err != nil || len(bl) != 0 {
				t.Errorf("Blocked() after expiry = %v, %v; want none", bl, err)
			}
		})
	}
}

func TestGuardSynRateVeth(t *testing.T) {
	v := newVethPair(t)
	g, err := OpenGuard(Options{BPFFS: v.bpffs, NetNS: v.host.Path})
	if err != nil {
		t.Fatalf("OpenGuard: %v", err)
	}
	defer g.Close()
	if err := g.SetRate("sgh0", 1, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Attach("sgh0", ModeAuto); err != nil {
		t.Fatal(err)
	}
	if err := g.SetProtectedPorts([]uint16{443}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := v.dial(2 * time.Second); err != nil {
			t.Fatalf("connection %d within the burst: %v", i+1, err)
		}
	}
	if err := v.dial(300 * time.Millisecond); err == nil {
		t.Fatal("third connection within a second passed a bucket of rate 1, burst 2")
	}
	if n := packets(t, g, "sgh0", "drop", "syn_rate"); n == 0 {
		t.Error("no packet counted as drop/syn_rate")
	}
}

func TestGuardWatchReattach(t *testing.T) {
	v := newVethPair(t)
	var logs logBuffer
	g, err := OpenGuard(Options{BPFFS: v.bpffs, NetNS: v.host.Path, Logger: logs.logger()})
	if err != nil {
		t.Fatalf("OpenGuard: %v", err)
	}
	defer g.Close()
	first, err := g.Attach("sgh0", ModeAuto)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Block(netip.MustParsePrefix("10.99.0.2/32"), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watchErr := make(chan error, 1)
	go func() { watchErr <- g.Watch(ctx) }()
	defer func() {
		cancel()
		if err := <-watchErr; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()

	h := v.host.Handle(t)
	l, err := h.LinkByName("sgh0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the guard to notice sgh0 is gone", func() bool {
		as := g.Attachments()
		return len(as) == 1 && !as[0].Attached
	})

	v.link(t)
	var again Attachment
	waitFor(t, "the guard to attach to the new sgh0", func() bool {
		as := g.Attachments()
		again = as[0]
		return len(as) == 1 && as[0].Attached
	})
	if again.Ifindex == first.Ifindex {
		t.Errorf("re-attached to ifindex %d, the old interface's", again.Ifindex)
	}
	nl, err := h.LinkByName("sgh0")
	if err != nil {
		t.Fatal(err)
	}
	if x := nl.Attrs().Xdp; x == nil || !x.Attached || x.ProgId != again.ProgramID {
		t.Fatalf("netlink shows XDP %+v on the new sgh0, want program %d", x, again.ProgramID)
	}
	// The guard really runs on the new interface: the blocked peer cannot connect.
	before := packets(t, g, "sgh0", "drop", "blocklist")
	if err := v.dial(300 * time.Millisecond); err == nil {
		t.Fatal("blocked peer connected through the re-created interface")
	}
	if packets(t, g, "sgh0", "drop", "blocklist") == before {
		t.Error("no drop counted on the re-created interface")
	}
	if !logs.contains("guard attached to interface") || !logs.contains("guarded interface disappeared") {
		t.Errorf("log lacks the disappear/re-attach lines:\n%s", logs.String())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGuardAttachLaterAndDetach: an interface named before it exists is attached by Watch when it
// appears; Detach removes the guard and forgets the interface.
func TestGuardAttachLaterAndDetach(t *testing.T) {
	host, peer := netnstest.New(t), netnstest.New(t)
	g, err := OpenGuard(Options{BPFFS: testBPFFS(t), NetNS: host.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Attach("sgx0", ModeGeneric); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Attach to a missing interface: %v, want ErrNotFound", err)
	}
	if as := g.Attachments(); len(as) != 1 || as[0].Attached || as[0].Requested != ModeGeneric {
		t.Fatalf("Attachments() = %+v, want sgx0 waiting", as)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Watch(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()
	netnstest.Veth(t, host, "sgx0", hostAddr, peer, "sgy0", peerAddr)
	waitFor(t, "Watch to attach sgx0", func() bool {
		as := g.Attachments()
		return len(as) == 1 && as[0].Attached && as[0].Mode == ModeGeneric
	})

	if err := g.Detach("sgx0"); err != nil {
		t.Fatal(err)
	}
	l, err := host.Handle(t).LinkByName("sgx0")
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("XDP program %d still on sgx0 after Detach", x.ProgId)
	}
	if as := g.Attachments(); len(as) != 0 {
		t.Errorf("Attachments() after Detach = %+v", as)
	}
	if err := g.Detach("sgx0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Detach: %v, want ErrNotFound", err)
	}
	if _, err := g.Attach("bad/name", ModeAuto); err == nil {
		t.Error("Attach accepted an impossible interface name")
	}
	if _, err := g.Attach("sgx0", "turbo"); err == nil || !strings.Contains(err.Error(), "mode:") {
		t.Errorf("Attach with a bad mode: %v", err)
	}
}
