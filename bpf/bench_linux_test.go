package bpf

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/sealgate/sealgate/bpf/internal/netnstest"
	"golang.org/x/sys/unix"
)

// BenchmarkGuardXDP measures the guard per packet with BPF_PROG_TEST_RUN (the kernel's own timing over
// 1000 repetitions per iteration), on the pass and drop paths.
func BenchmarkGuardXDP(b *testing.B) {
	g, _ := openTestGuard(b)
	if err := g.SetProtectedPorts([]uint16{443}); err != nil {
		b.Fatal(err)
	}
	if err := g.SetRate("", 1_000_000, 1_000_000); err != nil {
		b.Fatal(err)
	}
	if err := g.Block(netip.MustParsePrefix("198.51.100.0/24"), 0); err != nil {
		b.Fatal(err)
	}
	// A blocklist of realistic size: 10000 /32s elsewhere.
	for i := range 10000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 32)
		if err := g.Block(p, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"pass_tcp_ack_ipv4", cat(ether(etherIPv4), ipv4("192.0.2.10", "192.0.2.1", unix.IPPROTO_TCP, 0, tcp(40000, 443, tcpACK))), xdpPass},
		{"pass_syn_bucket_ipv4", cat(ether(etherIPv4), ipv4("192.0.2.10", "192.0.2.1", unix.IPPROTO_TCP, 0, tcp(40000, 443, tcpSYN))), xdpPass},
		{"pass_tcp_ipv6_ext_qinq", cat(ether(etherIPv6, tpidQinQ, tpid8021Q), ipv6("2001:db8::10", "2001:db8::1", unix.IPPROTO_HOPOPTS, ext6(unix.IPPROTO_TCP, 0, tcp(1, 443, tcpACK)))), xdpPass},
		{"drop_blocklist_ipv4", cat(ether(etherIPv4), ipv4("198.51.100.20", "192.0.2.1", unix.IPPROTO_TCP, 0, tcp(40000, 443, tcpSYN))), xdpDrop},
	}
	const repeat = 1000
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var total time.Duration
			var n int
			for b.Loop() {
				ret, per, err := g.objs.Guard.Benchmark(tc.frame, repeat, nil)
				if err != nil {
					b.Fatal(err)
				}
				if ret != tc.want {
					b.Fatalf("verdict %d, want %d", ret, tc.want)
				}
				total += per
				n++
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(n), "ns/packet")
		})
	}
}

// BenchmarkSteeredConnect measures TCP connection setup through a steered port against the engine
// listener's own address, alternating the two in one run, and reports their ratio.
func BenchmarkSteeredConnect(b *testing.B) {
	ns := netnstest.New(b)
	bpffs := testBPFFS(b)
	err := ns.Do(func() error {
		engine := listenTCP(b, "tcp4", "127.0.0.1:0")
		go func() {
			for {
				c, err := engine.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		s, err := OpenSteering(Options{BPFFS: bpffs, NetNS: ns.Path})
		if err != nil {
			return err
		}
		defer s.Close()
		if err := s.SetBindings([]Binding{{Prefix: netip.MustParsePrefix("127.0.0.2/32"), Port: 443, Dest: "api"}}); err != nil {
			return err
		}
		if err := s.RegisterSocket("api", engine); err != nil {
			return err
		}
		direct := engine.Addr().String()
		steered := net.JoinHostPort("127.0.0.2", strconv.Itoa(443))
		connect := func(addr string) time.Duration {
			start := time.Now()
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				b.Fatalf("dial %s: %v", addr, err)
			}
			_ = c.(*net.TCPConn).SetLinger(0) // RST on close: no TIME_WAIT build-up
			c.Close()
			return time.Since(start)
		}
		b.ReportAllocs()
		var tDirect, tSteered time.Duration
		n := 0
		for b.Loop() {
			tDirect += connect(direct)
			tSteered += connect(steered)
			n++
		}
		st, err := s.Stats()
		if err != nil {
			return err
		}
		if st.Steered < uint64(n) {
			b.Fatalf("steered counter %d after %d steered connections", st.Steered, n)
		}
		b.ReportMetric(float64(tDirect.Nanoseconds())/float64(n), "direct-ns/conn")
		b.ReportMetric(float64(tSteered.Nanoseconds())/float64(n), "steered-ns/conn")
		b.ReportMetric(float64(tSteered)/float64(tDirect), "steered/direct")
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
