package main

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

func TestUDPFrame(t *testing.T) {
	src := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	dst := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	f := udpFrame(src, dst, netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1"), 4000, 9)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"length", len(f), frameLen},
		{"dst_mac", net.HardwareAddr(f[0:6]).String(), dst.String()},
		{"src_mac", net.HardwareAddr(f[6:12]).String(), src.String()},
		{"ethertype", binary.BigEndian.Uint16(f[12:14]), uint16(0x0800)},
		{"ip_total_length", binary.BigEndian.Uint16(f[16:18]), uint16(46)},
		{"ip_proto", f[23], byte(17)},
		{"ip_src", netip.AddrFrom4([4]byte(f[26:30])).String(), "192.0.2.2"},
		{"ip_dst", netip.AddrFrom4([4]byte(f[30:34])).String(), "192.0.2.1"},
		// A header with a correct checksum sums to 0xffff, so its checksum over itself is 0.
		{"ip_checksum_verifies", ipChecksum(f[14:34]), uint16(0)},
		{"udp_dport", binary.BigEndian.Uint16(f[36:38]), uint16(9)},
		{"udp_length", binary.BigEndian.Uint16(f[38:40]), uint16(26)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestIPChecksumRFC1071(t *testing.T) {
	// The worked example of the IPv4 header checksum (192.168.0.1 → 192.168.0.199, UDP), checksum 0xb861.
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := ipChecksum(h); got != 0xb861 {
		t.Errorf("checksum = %#04x, want 0xb861", got)
	}
}
