package bpf

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sealgate/sealgate/bpf/internal/netnstest"
	"golang.org/x/sys/unix"
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

// TestSteeringLifecycle covers registration errors, replacing bindings, a dual-stack socket taking IPv4,
// and failing closed when the engine's socket goes away.
func TestSteeringLifecycle(t *testing.T) {
	ns := netnstest.New(t)
	bpffs := testBPFFS(t)
	var (
		dual, other, v4 *net.TCPListener
		conn            net.Conn
		mptcp           net.Listener
	)
	if err := ns.Do(func() error {
		dual = listenTCP(t, "tcp", "[::]:0") // dual-stack
		other = listenTCP(t, "tcp", "[::]:9090")
		v4 = listenTCP(t, "tcp4", "127.0.0.1:0")
		var err error
		if conn, err = net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(dual.Addr().(*net.TCPAddr).Port))); err != nil {
			return err
		}
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(true)
		mptcp, _ = lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	serveName(dual, "dual")
	serveName(other, "other")
	serveName(v4, "v4")
	dial := func(addr string) (string, error) {
		var (
			got string
			err error
		)
		_ = ns.Do(func() error { got, err = whoAnswers(addr); return nil })
		return got, err
	}

	s, err := OpenSteering(Options{BPFFS: bpffs, NetNS: ns.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	t.Run("registration errors", func(t *testing.T) {
		if err := s.RegisterSocket("api", conn.(*net.TCPConn)); err == nil || !strings.Contains(err.Error(), "not listening") {
			t.Errorf("registering a connection: %v, want a not-listening error", err)
		}
		if mptcp != nil {
			defer mptcp.Close()
			if sockProtocol(t, mptcp.(*net.TCPListener)) == ipprotoMPTCP {
				if err := s.RegisterSocket("api", mptcp.(*net.TCPListener)); err == nil || !strings.Contains(err.Error(), "SetMultipathTCP(false)") {
					t.Errorf("registering an MPTCP listener: %v, want the SetMultipathTCP hint", err)
				}
			} else {
				t.Log("the kernel has no MPTCP: the MPTCP case is not exercised")
			}
		}
		if err := s.RegisterSocket("", dual); err == nil {
			t.Error("registered a socket for an empty destination")
		}
		err := s.SetBindings([]Binding{
			{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Port: 9090, Dest: "a"},
			{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Port: 9090, Dest: "b"},
		})
		if err == nil || !strings.Contains(err.Error(), `steered to both "a" and "b"`) {
			t.Errorf("conflicting bindings: %v", err)
		}
	})

	t.Run("dual-stack socket takes ipv4", func(t *testing.T) {
		if err := s.SetBindings([]Binding{{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Port: 9090, Dest: "api"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterSocket("api", dual); err != nil {
			t.Fatal(err)
		}
		if got, err := dial("127.0.0.1:9090"); err != nil || got != "dual" {
			t.Fatalf("reached %q, %v; want dual", got, err)
		}
		bs, err := s.Bindings()
		if err != nil || len(bs) != 1 || bs[0].IPv4Socket || !bs[0].IPv6Socket {
			t.Fatalf("Bindings() = %+v, %v", bs, err)
		}
	})

	t.Run("ipv4 socket preferred", func(t *testing.T) {
		if err := s.RegisterSocket("api", v4); err != nil {
			t.Fatal(err)
		}
		if got, err := dial("127.0.0.1:9090"); err != nil || got != "v4" {
			t.Fatalf("reached %q, %v; want v4", got, err)
		}
	})

	t.Run("replacing bindings removes stale ones", func(t *testing.T) {
		if err := s.SetBindings([]Binding{{Prefix: netip.MustParsePrefix("127.0.0.9/32"), Port: 9090, Dest: "api"}}); err != nil {
			t.Fatal(err)
		}
		if got, err := dial("127.0.0.1:9090"); err != nil || got != "other" {
			t.Fatalf("unbound address reached %q, %v; want other", got, err)
		}
		if got, err := dial("127.0.0.9:9090"); err != nil || got != "v4" {
			t.Fatalf("bound address reached %q, %v; want v4", got, err)
		}
		bs, err := s.Bindings()
		if err != nil || len(bs) != 1 || bs[0].Prefix != netip.MustParsePrefix("127.0.0.9/32") {
			t.Fatalf("Bindings() = %+v, %v", bs, err)
		}
	})

	t.Run("fails closed without sockets", func(t *testing.T) {
		if err := s.UnregisterSocket("api"); err != nil {
			t.Fatal(err)
		}
		before, _ := s.Stats()
		if got, err := dial("127.0.0.9:9090"); !isRefused(err) {
			t.Fatalf("with no socket registered reached %q, %v; want refused", got, err)
		}
		after, _ := s.Stats()
		if after.Misses != before.Misses+1 {
			t.Errorf("misses %d → %d, want one more", before.Misses, after.Misses)
		}
		if err := s.UnregisterSocket("nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("UnregisterSocket(nope) = %v, want ErrNotFound", err)
		}
	})

	t.Run("closed listener leaves the map", func(t *testing.T) {
		if err := s.RegisterSocket("api", v4); err != nil {
			t.Fatal(err)
		}
		v4.Close()
		if got, err := dial("127.0.0.9:9090"); !isRefused(err) {
			t.Fatalf("after the engine closed its listener reached %q, %v; want refused", got, err)
		}
	})
}

func sockProtocol(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var proto int
	var perr error
	if err := rc.Control(func(fd uintptr) { proto, perr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) }); err != nil {
		t.Fatal(err)
	}
	if perr != nil {
		t.Fatal(perr)
	}
	return proto
}
