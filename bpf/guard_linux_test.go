package bpf

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/sealgate/sealgate/bpf/internal/netnstest"
	"golang.org/x/sys/unix"
)

const (
	xdpDrop = 1
	xdpPass = 2
)

// openTestGuard opens a guard in a fresh namespace with a private bpffs.
func openTestGuard(t testing.TB) (*Guard, *netnstest.NS) {
	t.Helper()
	ns := netnstest.New(t)
	g, err := OpenGuard(Options{BPFFS: testBPFFS(t), NetNS: ns.Path})
	if err != nil {
		t.Fatalf("OpenGuard: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	return g, ns
}

// counters returns the guard's counters for ifindex 1 (BPF_PROG_TEST_RUN's loopback) by reason.
func counters(t testing.TB, g *Guard) map[string]uint64 {
	t.Helper()
	cs, err := g.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	out := make(map[string]uint64)
	for _, c := range cs {
		if c.Interface == "lo" {
			out[c.Verdict+"/"+c.Reason] = c.Packets
		}
	}
	return out
}

func run(t testing.TB, g *Guard, frame []byte) uint32 {
	t.Helper()
	ret, err := g.objs.Guard.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("running the guard on a %d-byte frame: %v", len(frame), err)
	}
	return ret
}

func TestGuardFrames(t *testing.T) {
	g, ns := openTestGuard(t)
	if err := g.SetProtectedPorts([]uint16{443}); err != nil {
		t.Fatal(err)
	}
	if err := g.SetRate("", 1, 3); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"198.51.100.0/24", "2001:db8:bad::/48"} {
		if err := g.Block(netip.MustParsePrefix(p), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// Expired entries: one alone (passes), one inside a live /24 (the /24 still blocks).
	past := monotonicNow() - 1
	for _, p := range []string{"192.0.2.99/32", "198.51.100.7/32"} {
		k, _ := blocklistKey(netip.MustParsePrefix(p))
		if err := g.putBlock(k, blockValue{ExpiresNs: past, Prefixlen: k.Prefixlen}); err != nil {
			t.Fatal(err)
		}
	}

	const dst4, dst6 = "192.0.2.1", "2001:db8::1"
	syn4 := func(src string) []byte {
		return cat(ether(etherIPv4), ipv4(src, dst4, unix.IPPROTO_TCP, 0, tcp(40000, 443, tcpSYN)))
	}
	v6tcp := tcp(40000, 443, tcpACK)
	tests := []struct {
		name   string
		frame  []byte
		want   uint32
		reason string // verdict/reason counter that must grow by one
	}{
		{"ipv4 tcp ack", cat(ether(etherIPv4), ipv4("192.0.2.10", dst4, unix.IPPROTO_TCP, 0, tcp(40000, 443, tcpACK))), xdpPass, "pass/tcp"},
		{"ipv4 syn unprotected port", cat(ether(etherIPv4), ipv4("192.0.2.10", dst4, unix.IPPROTO_TCP, 0, tcp(40000, 80, tcpSYN))), xdpPass, "pass/tcp"},
		{"ipv6 tcp", cat(ether(etherIPv6), ipv6("2001:db8::10", dst6, unix.IPPROTO_TCP, v6tcp)), xdpPass, "pass/tcp"},
		{"ipv6 hop-by-hop and dest options", cat(ether(etherIPv6), ipv6("2001:db8::10", dst6, unix.IPPROTO_HOPOPTS, ext6(unix.IPPROTO_DSTOPTS, 0, ext6(unix.IPPROTO_TCP, 2, v6tcp)))), xdpPass, "pass/tcp"},
		{"ipv6 routing then first fragment", cat(ether(etherIPv6), ipv6("2001:db8::10", dst6, unix.IPPROTO_ROUTING, ext6(unix.IPPROTO_FRAGMENT, 0, frag6(unix.IPPROTO_TCP, 0, v6tcp)))), xdpPass, "pass/tcp"},
		{"ipv6 later fragment", cat(ether(etherIPv6), ipv6("2001:db8::10", dst6, unix.IPPROTO_FRAGMENT, frag6(unix.IPPROTO_TCP, 100, v6tcp))), xdpPass, "pass/fragment"},
		{"ipv6 seven extension headers", cat(ether(etherIPv6), ipv6("2001:db8::10", dst6, unix.IPPROTO_DSTOPTS,
			ext6(unix.IPPROTO_DSTOPTS, 0, ext6(unix.IPPROTO_DSTOPTS, 0, ext6(unix.IPPROTO_DSTOPTS, 0, ext6(unix.IPPROTO_DSTOPTS, 0,
				ext6(unix.IPPROTO_DSTOPTS, 0, ext6(unix.IPPROTO_DSTOPTS, 0, ext6(unix.IPPROTO_TCP, 0, v6tcp))))))))), xdpPass, "pass/ext_headers"},
		{"ipv6 extension header cut short", cat(ether(etherIPv6), ipv6("2001:db8::10", dst6, unix.IPPROTO_HOPOPTS, ext6(unix.IPPROTO_TCP, 4, nil))[:40+14]), xdpPass, "pass/truncated"},
		{"vlan 802.1Q", cat(ether(etherIPv4, tpid8021Q), ipv4("192.0.2.10", dst4, unix.IPPROTO_TCP, 0, tcp(40000, 443, tcpACK))), xdpPass, "pass/tcp"},
		{"qinq 802.1ad + 802.1Q", cat(ether(etherIPv6, tpidQinQ, tpid8021Q), ipv6("2001:db8::10", dst6, unix.IPPROTO_TCP, v6tcp)), xdpPass, "pass/tcp"},
		{"three vlan tags", cat(ether(etherIPv4, tpidQinQ, tpid8021Q, tpid8021Q), ipv4("198.51.100.1", dst4, unix.IPPROTO_TCP, 0, tcp(1, 443, tcpSYN))), xdpPass, "pass/vlan_depth"},
		{"vlan tag cut short", cat(ether(etherIPv4, tpid8021Q))[:16], xdpPass, "pass/truncated"},
		{"truncated ipv4 header", cat(ether(etherIPv4), ipv4("192.0.2.10", dst4, unix.IPPROTO_TCP, 0, nil)[:12]), xdpPass, "pass/truncated"},
		{"truncated tcp header", cat(ether(etherIPv4), ipv4("192.0.2.10", dst4, unix.IPPROTO_TCP, 0, tcp(1, 443, tcpSYN)[:10])), xdpPass, "pass/truncated"},
		{"ipv4 ihl below 5", func() []byte {
			f := cat(ether(etherIPv4), ipv4("192.0.2.10", dst4, unix.IPPROTO_TCP, 0, tcp(1, 443, tcpACK)))
			f[14] = 0x44
			return f
		}(), xdpPass, "pass/malformed"},
		{"tcp offset below 5", func() []byte {
			f := cat(ether(etherIPv4), ipv4("192.0.2.10", dst4, unix.IPPROTO_TCP, 0, tcp(1, 443, tcpACK)))
			f[14+20+12] = 0x40
			return f
		}(), xdpPass, "pass/malformed"},
		{"ipv4 udp", cat(ether(etherIPv4), ipv4("192.0.2.10", dst4, unix.IPPROTO_UDP, 0, udp(53, 53))), xdpPass, "pass/non_tcp"},
		{"ipv6 icmp", cat(ether(etherIPv6), ipv6("2001:db8::10", dst6, unix.IPPROTO_ICMPV6, make([]byte, 8))), xdpPass, "pass/non_tcp"},
		{"arp", cat(ether(etherARP), make([]byte, 28)), xdpPass, "pass/non_ip"},
		{"ipv4 later fragment", cat(ether(etherIPv4), ipv4("192.0.2.10", dst4, unix.IPPROTO_TCP, 100, make([]byte, 20))), xdpPass, "pass/fragment"},
		{"blocked ipv4 source", cat(ether(etherIPv4), ipv4("198.51.100.20", dst4, unix.IPPROTO_TCP, 0, tcp(1, 80, tcpACK))), xdpDrop, "drop/blocklist"},
		{"blocked ipv4 source udp", cat(ether(etherIPv4), ipv4("198.51.100.20", dst4, unix.IPPROTO_UDP, 0, udp(1, 53))), xdpDrop, "drop/blocklist"},
		{"blocked ipv4 source fragment", cat(ether(etherIPv4), ipv4("198.51.100.20", dst4, unix.IPPROTO_TCP, 100, make([]byte, 20))), xdpDrop, "drop/blocklist"},
		{"blocked ipv6 source", cat(ether(etherIPv6), ipv6("2001:db8:bad::5", dst6, unix.IPPROTO_TCP, v6tcp)), xdpDrop, "drop/blocklist"},
		{"blocked source behind qinq", cat(ether(etherIPv4, tpidQinQ, tpid8021Q), ipv4("198.51.100.20", dst4, unix.IPPROTO_TCP, 0, tcp(1, 443, tcpSYN))), xdpDrop, "drop/blocklist"},
		{"blocked source with cut extension header", cat(ether(etherIPv6), ipv6("2001:db8:bad::5", dst6, unix.IPPROTO_HOPOPTS, ext6(unix.IPPROTO_TCP, 4, nil))[:40+14]), xdpDrop, "drop/blocklist"},
		{"expired entry passes", cat(ether(etherIPv4), ipv4("192.0.2.99", dst4, unix.IPPROTO_TCP, 0, tcp(1, 80, tcpACK))), xdpPass, "pass/tcp"},
		{"expired /32 inside live /24 still blocked", cat(ether(etherIPv4), ipv4("198.51.100.7", dst4, unix.IPPROTO_TCP, 0, tcp(1, 80, tcpACK))), xdpDrop, "drop/blocklist"},
		{"neighbour of blocked prefix passes", cat(ether(etherIPv4), ipv4("198.51.101.1", dst4, unix.IPPROTO_TCP, 0, tcp(1, 80, tcpACK))), xdpPass, "pass/tcp"},
		// rate 1/s, burst 3: the first three SYNs pass, the rest of the burst drops.
		{"syn 1", syn4("192.0.2.50"), xdpPass, "pass/tcp"},
		{"syn 2", syn4("192.0.2.50"), xdpPass, "pass/tcp"},
		{"syn 3", syn4("192.0.2.50"), xdpPass, "pass/tcp"},
		{"syn 4 above the bucket", syn4("192.0.2.50"), xdpDrop, "drop/syn_rate"},
		{"syn 5 above the bucket", syn4("192.0.2.50"), xdpDrop, "drop/syn_rate"},
		{"syn from another source", syn4("192.0.2.51"), xdpPass, "pass/tcp"},
		{"syn-ack from the limited source", cat(ether(etherIPv4), ipv4("192.0.2.50", dst4, unix.IPPROTO_TCP, 0, tcp(40000, 443, tcpSYN|tcpACK))), xdpPass, "pass/tcp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := counters(t, g)
			var got uint32
			if err := ns.Do(func() error { got = run(t, g, tc.frame); return nil }); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("verdict %d, want %d", got, tc.want)
			}
			after := counters(t, g)
			for _, r := range Reasons() {
				key := r[0] + "/" + r[1]
				want := before[key]
				if key == tc.reason {
					want++
				}
				if after[key] != want {
					t.Errorf("counter %s = %d, want %d", key, after[key], want)
				}
			}
		})
	}
}

// TestGuardCountersAcrossCPUs runs frames on every CPU and checks Stats sums the per-CPU values.
func TestGuardCountersAcrossCPUs(t *testing.T) {
	g, ns := openTestGuard(t)
	frame := cat(ether(etherIPv4), ipv4("192.0.2.10", "192.0.2.1", unix.IPPROTO_UDP, 0, udp(1, 2)))
	cpus := runtime.NumCPU()
	const perCPU = 7
	for cpu := range cpus {
		err := ns.Do(func() error {
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return fmt.Errorf("pinning to CPU %d: %w", cpu, err)
			}
			for range perCPU {
				run(t, g, frame)
			}
			// The thread was pinned: give it back all CPUs before it returns to the pool.
			var all unix.CPUSet
			for i := range cpus {
				all.Set(i)
			}
			return unix.SchedSetaffinity(0, &all)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var per []uint64
	if err := g.objs.GuardCounters.Lookup(counterKey{Ifindex: 1, Reason: 1}, &per); err != nil {
		t.Fatalf("reading the per-CPU counter: %v", err)
	}
	for cpu, v := range per[:cpus] {
		if v != perCPU {
			t.Errorf("CPU %d counted %d packets, want %d", cpu, v, perCPU)
		}
	}
	if got := counters(t, g)["pass/non_tcp"]; got != uint64(perCPU*cpus) {
		t.Errorf("Stats sums %d packets, want %d over %d CPUs", got, perCPU*cpus, cpus)
	}
}

// FuzzGuardFrame feeds arbitrary frames to the guard: with no blocklist and no protected ports every
// frame must pass, and be counted exactly once.
func FuzzGuardFrame(f *testing.F) {
	f.Add(cat(ether(etherIPv4), ipv4("192.0.2.10", "192.0.2.1", unix.IPPROTO_TCP, 0, tcp(1, 443, tcpSYN))))
	f.Add(cat(ether(etherIPv6, tpidQinQ, tpid8021Q), ipv6("2001:db8::1", "2001:db8::2", unix.IPPROTO_HOPOPTS, ext6(unix.IPPROTO_FRAGMENT, 1, frag6(unix.IPPROTO_TCP, 0, tcp(1, 443, tcpSYN))))))
	f.Add(cat(ether(etherARP), make([]byte, 28)))
	f.Add(make([]byte, 14))
	g, _ := openTestGuard(f)
	total := func(t *testing.T) uint64 {
		var n uint64
		for _, c := range counters(t, g) {
			n += c
		}
		return n
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 3000 {
			return // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet or longer than a page
		}
		before := total(t)
		if got := run(t, g, frame); got != xdpPass {
			t.Fatalf("verdict %d for % x, want pass", got, frame)
		}
		if after := total(t); after != before+1 {
			t.Fatalf("counters grew by %d, want 1", after-before)
		}
	})
}
