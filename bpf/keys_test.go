package bpf

import (
	"net/netip"
	"strings"
	"testing"
)

func TestBindingKey(t *testing.T) {
	mapped := func(s string) [16]byte { return netip.MustParseAddr(s).As16() }
	tests := []struct {
		name     string
		b        Binding
		wantLen  uint32
		wantAddr [16]byte
		wantProt uint8
		wantErr  string
	}{
		{name: "ipv4 any", b: Binding{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: 443, Dest: "api"}, wantLen: 32 + 96, wantAddr: mapped("::ffff:0.0.0.0"), wantProt: 6},
		{name: "ipv4 host", b: Binding{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Port: 443, Dest: "api"}, wantLen: 32 + 128, wantAddr: mapped("::ffff:192.0.2.10"), wantProt: 6},
		{name: "ipv4 /24 masked", b: Binding{Prefix: netip.MustParsePrefix("192.0.2.77/24"), Port: 8443, Dest: "api"}, wantLen: 32 + 120, wantAddr: mapped("::ffff:192.0.2.0"), wantProt: 6},
		{name: "ipv6 any", b: Binding{Proto: "tcp", Prefix: netip.MustParsePrefix("::/0"), Port: 443, Dest: "api"}, wantLen: 32, wantAddr: [16]byte{}, wantProt: 6},
		{name: "ipv6 /32", b: Binding{Proto: "TCP", Prefix: netip.MustParsePrefix("2001:db8::/32"), Port: 443, Dest: "api"}, wantLen: 32 + 32, wantAddr: mapped("2001:db8::"), wantProt: 6},
		{name: "v4-mapped ipv6 prefix stays ipv6", b: Binding{Prefix: netip.MustParsePrefix("::ffff:192.0.2.0/120"), Port: 443, Dest: "api"}, wantLen: 32 + 120, wantAddr: mapped("::ffff:192.0.2.0"), wantProt: 6},
		{name: "udp", b: Binding{Proto: "udp", Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 53, Dest: "dns"}, wantLen: 32 + 104, wantAddr: mapped("::ffff:10.0.0.0"), wantProt: 17},
		{name: "bad proto", b: Binding{Proto: "sctp", Prefix: netip.MustParsePrefix("::/0"), Port: 1, Dest: "x"}, wantErr: "proto:"},
		{name: "port zero", b: Binding{Prefix: netip.MustParsePrefix("::/0"), Dest: "x"}, wantErr: "port:"},
		{name: "no dest", b: Binding{Prefix: netip.MustParsePrefix("::/0"), Port: 1}, wantErr: "dest:"},
		{name: "long dest", b: Binding{Prefix: netip.MustParsePrefix("::/0"), Port: 1, Dest: strings.Repeat("a", 64)}, wantErr: "longer than 63"},
		{name: "invalid prefix", b: Binding{Port: 1, Dest: "x"}, wantErr: "prefix:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := bindingKey(tc.b)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Prefixlen != tc.wantLen || k.Addr != tc.wantAddr || k.Protocol != tc.wantProt || k.Port != tc.b.Port || k.Pad != 0 {
				t.Fatalf("key %+v, want prefixlen %d addr %x proto %d port %d", k, tc.wantLen, tc.wantAddr, tc.wantProt, tc.b.Port)
			}
			back := bindingFromKey(k)
			if back.Prefix != canonical(tc.b.Prefix) || back.Port != tc.b.Port || back.Proto != protoName(tc.wantProt) {
				t.Fatalf("round trip gave %+v from %+v", back, tc.b)
			}
		})
	}
}

func TestBlocklistKey(t *testing.T) {
	tests := []struct {
		prefix  string
		wantLen uint32
	}{
		{"198.51.100.7/32", 128},
		{"198.51.100.0/24", 120},
		{"0.0.0.0/0", 96},
		{"2001:db8::/48", 48},
		{"::/0", 0},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			p := netip.MustParsePrefix(tc.prefix)
			k, err := blocklistKey(p)
			if err != nil {
				t.Fatal(err)
			}
			if k.Prefixlen != tc.wantLen || k.Addr != p.Addr().As16() {
				t.Fatalf("key %+v, want prefixlen %d addr %x", k, tc.wantLen, p.Addr().As16())
			}
			if back := prefixFromKey(k.Addr, k.Prefixlen); back != p {
				t.Fatalf("round trip gave %s", back)
			}
		})
	}
}

func TestProtectedPorts(t *testing.T) {
	bs := []Binding{
		{Proto: "tcp", Port: 443}, {Port: 8443}, {Port: 443}, {Proto: "udp", Port: 53}, {Proto: "bogus", Port: 1},
	}
	got := ProtectedPorts(bs)
	if len(got) != 2 || got[0] != 443 || got[1] != 8443 {
		t.Fatalf("ProtectedPorts = %v, want [443 8443]", got)
	}
}

func TestPinName(t *testing.T) {
	for _, iface := range []string{"eth0", "eth0.100", "bond0.10.20", "veth-a_b"} {
		t.Run(iface, func(t *testing.T) {
			pin := pinName(xdpPinPrefix, iface)
			if strings.Contains(pin, ".") {
				t.Fatalf("pin name %q has a dot, which bpffs refuses", pin)
			}
			back, ok := ifaceFromPin(xdpPinPrefix, pin)
			if !ok || back != iface {
				t.Fatalf("ifaceFromPin(%q) = %q, %v", pin, back, ok)
			}
		})
	}
	if _, ok := ifaceFromPin(xdpPinPrefix, "guard_ports"); ok {
		t.Error("a map pin was taken for an interface")
	}
}

func TestReasons(t *testing.T) {
	seen := make(map[[2]string]bool)
	for _, r := range Reasons() {
		if r[0] != "pass" && r[0] != "drop" {
			t.Errorf("verdict %q of reason %q is not pass or drop", r[0], r[1])
		}
		if seen[r] {
			t.Errorf("reason %v listed twice", r)
		}
		seen[r] = true
	}
}

// FuzzBindingKey checks that any prefix string that parses survives the trip through the LPM key,
// and that bad input never panics.
func FuzzBindingKey(f *testing.F) {
	for _, s := range []string{"0.0.0.0/0", "::/0", "192.0.2.1/32", "2001:db8::/33", "::ffff:1.2.3.4/128", "1.2.3.4/33", "x"} {
		f.Add(s, uint16(443), "tcp")
	}
	f.Fuzz(func(t *testing.T, prefix string, port uint16, proto string) {
		p, perr := netip.ParsePrefix(prefix)
		k, err := bindingKey(Binding{Proto: proto, Prefix: p, Port: port, Dest: "api"})
		if err != nil {
			return
		}
		if perr != nil {
			t.Fatalf("accepted unparsable prefix %q", prefix)
		}
		back := bindingFromKey(k)
		if back.Prefix != canonical(p) || back.Port != port {
			t.Fatalf("%q port %d → %+v → %+v", prefix, port, k, back)
		}
	})
}

// canonical is the form a prefix takes in the kernel: masked, and a v4-mapped IPv6 prefix of at least 96
// bits as the IPv4 prefix it matches.
func canonical(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}
