package bpf

import (
	"net"
	"net/netip"
	"testing"

	"github.com/sealgate/sealgate/bpf/internal/netnstest"
)

func TestSteeringNetNS(t *testing.T) {
	ns := netnstest.New(t)
	bpffs := testBPFFS(t)
	ns.AddAddr(t, "lo", netip.MustParsePrefix("2001:db8::1/128"))
	ns.AddAddr(t, "lo", netip.MustParsePrefix("2001:db8::2/128"))

	err := ns.Do(func() error {
		engine4 := listenTCP(t, "tcp4", "127.0.0.1:0")
		engine6 := listenTCP(t, "tcp6", "[::1]:0")
		special := listenTCP(t, "tcp4", "127.0.0.1:0")
		other := listenTCP(t, "tcp", "[::]:8080") // the unprotected server on the steered port
		plain := listenTCP(t, "tcp", "[::]:8081")
		serveName(engine4, "engine")
		serveName(engine6, "engine")
		serveName(special, "special")
		serveName(other, "other")
		serveName(plain, "plain")

		s, err := OpenSteering(Options{BPFFS: bpffs, NetNS: ns.Path})
		if err != nil {
			t.Fatalf("OpenSteering: %v", err)
		}
		defer s.Close()
		bindings := []Binding{
			{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: 8080, Dest: "api"},
			{Proto: "tcp", Prefix: netip.MustParsePrefix("2001:db8::/32"), Port: 8080, Dest: "api"},
			{Prefix: netip.MustParsePrefix("127.0.0.2/32"), Port: 8080, Dest: "special"},
			{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Port: 8082, Dest: "ghost"},
		}
		if err := s.SetBindings(bindings); err != nil {
			t.Fatalf("SetBindings: %v", err)
		}
		for dest, l := range map[string]*net.TCPListener{"api": engine4, "api6": engine6, "special": special} {
			if dest == "api6" {
				dest = "api"
			}
			if err := s.RegisterSocket(dest, l); err != nil {
				t.Fatalf("RegisterSocket(%s): %v", dest, err)
			}
		}

		before, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, addr, want string
			refused          bool
		}{
			{name: "ipv4 loopback", addr: "127.0.0.1:8080", want: "engine"},
			{name: "ipv4 other local address", addr: "127.0.0.3:8080", want: "engine"},
			{name: "ipv4 far in 127/8", addr: "127.200.1.1:8080", want: "engine"},
			{name: "ipv6 first", addr: "[2001:db8::1]:8080", want: "engine"},
			{name: "ipv6 second", addr: "[2001:db8::2]:8080", want: "engine"},
			{name: "ipv6 outside prefix reaches the server", addr: "[::1]:8080", want: "other"},
			{name: "longest prefix wins", addr: "127.0.0.2:8080", want: "special"},
			{name: "unsteered port", addr: "127.0.0.1:8081", want: "plain"},
			{name: "binding without socket is refused", addr: "127.0.0.1:8082", refused: true},
		}
		var steered, misses uint64
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var (
					got string
					err error
				)
				if nerr := ns.Do(func() error { got, err = whoAnswers(tc.addr); return nil }); nerr != nil {
					t.Fatal(nerr)
				}
				if tc.refused {
					misses++
					if !isRefused(err) {
						t.Fatalf("dial %s: got %q, %v; want connection refused", tc.addr, got, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("dial %s: %v", tc.addr, err)
				}
				if got != tc.want {
					t.Fatalf("dial %s reached %q, want %q", tc.addr, got, tc.want)
				}
				if tc.want == "engine" || tc.want == "special" {
					steered++
				}
			})
		}
		after, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if d := after.Steered - before.Steered; d != steered {
			t.Errorf("steered counter grew by %d, want %d", d, steered)
		}
		if d := after.Misses - before.Misses; d != misses {
			t.Errorf("misses counter grew by %d, want %d", d, misses)
		}
		if after.Lookups-before.Lookups < uint64(len(tests)) {
			t.Errorf("lookups grew by %d, want at least %d", after.Lookups-before.Lookups, len(tests))
		}
		if after.Errors != before.Errors {
			t.Errorf("errors grew by %d, want 0", after.Errors-before.Errors)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
