// Package netnstest runs test code in fresh network namespaces with veth pairs, and skips privileged
// tests with a reason when not root (failing them instead under SEALGATE_PRIVILEGED_TESTS=1).
package netnstest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Privileged skips t unless the process is root; with SEALGATE_PRIVILEGED_TESTS=1 it fails instead.
func Privileged(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("SEALGATE_PRIVILEGED_TESTS") == "1" {
		tb.Fatal("SEALGATE_PRIVILEGED_TESTS=1 but not running as root: eBPF and network namespaces need root")
	}
	tb.Skip("needs root for eBPF and network namespaces (run as root; CI sets SEALGATE_PRIVILEGED_TESTS=1)")
}

// NS is a network namespace created for a test; it lives until the test ends.
type NS struct {
	f *os.File
	// Path opens the namespace (a /proc/PID/fd/N path), for bpf.Options.NetNS.
	Path string
}

// New creates a network namespace with its loopback interface up, removed at the end of the test.
func New(tb testing.TB) *NS {
	tb.Helper()
	Privileged(tb)
	f, err := create()
	if err != nil {
		tb.Fatalf("creating network namespace: %v", err)
	}
	ns := &NS{f: f, Path: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd())}
	tb.Cleanup(func() { f.Close() })
	if err := ns.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		tb.Fatalf("bringing lo up in the test namespace: %v", err)
	}
	return ns
}

func create() (*os.File, error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("unshare: %w", err)
	}
	f, ferr := os.Open("/proc/thread-self/ns/net")
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the new namespace: leave it locked so the runtime discards it.
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("returning to the original namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return f, ferr
}

// FD returns the namespace's file descriptor.
func (n *NS) FD() int { return int(n.f.Fd()) }

// Handle returns a netlink handle working in the namespace.
func (n *NS) Handle(tb testing.TB) *netlink.Handle {
	tb.Helper()
	h, err := netlink.NewHandleAt(netns.NsHandle(n.FD()))
	if err != nil {
		tb.Fatalf("netlink handle in test namespace: %v", err)
	}
	tb.Cleanup(h.Close)
	return h
}

// Do runs fn on an OS thread that is inside the namespace. Sockets created by fn belong to the
// namespace; goroutines fn starts do not run inside it.
func (n *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Setns(n.FD(), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering test namespace: %w", err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("leaving test namespace (thread discarded): %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// AddAddr adds a local address (no duplicate address detection) to the interface named dev in n.
func (n *NS) AddAddr(tb testing.TB, dev string, p netip.Prefix) {
	tb.Helper()
	h := n.Handle(tb)
	l, err := h.LinkByName(dev)
	if err != nil {
		tb.Fatalf("finding %s: %v", dev, err)
	}
	addr := &netlink.Addr{IPNet: prefixNet(p), Flags: unix.IFA_F_NODAD}
	if err := h.AddrAdd(l, addr); err != nil {
		tb.Fatalf("adding %s to %s: %v", p, dev, err)
	}
}

// Veth creates a veth pair: hostName in host with hostAddr, peerName in peer with peerAddr, both up.
func Veth(tb testing.TB, host *NS, hostName string, hostAddr netip.Prefix, peer *NS, peerName string, peerAddr netip.Prefix) {
	tb.Helper()
	h := host.Handle(tb)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostName},
		PeerName:      peerName,
		PeerNamespace: netlink.NsFd(peer.FD()),
	}
	if err := h.LinkAdd(veth); err != nil {
		tb.Fatalf("creating veth %s/%s: %v", hostName, peerName, err)
	}
	for _, side := range []struct {
		ns   *NS
		name string
		addr netip.Prefix
	}{{host, hostName, hostAddr}, {peer, peerName, peerAddr}} {
		hh := side.ns.Handle(tb)
		l, err := hh.LinkByName(side.name)
		if err != nil {
			tb.Fatalf("finding %s: %v", side.name, err)
		}
		if err := hh.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(side.addr), Flags: unix.IFA_F_NODAD}); err != nil {
			tb.Fatalf("adding %s to %s: %v", side.addr, side.name, err)
		}
		if err := hh.LinkSetUp(l); err != nil {
			tb.Fatalf("bringing %s up: %v", side.name, err)
		}
	}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
