package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Byte builders for the frames the guard tests feed to the XDP program. Checksums are left zero: the
// guard does not verify them.

var (
	macDst = []byte{0x02, 0, 0, 0, 0, 0x01}
	macSrc = []byte{0x02, 0, 0, 0, 0, 0x02}
)

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
	etherARP  = 0x0806
	tpid8021Q = 0x8100
	tpidQinQ  = 0x88a8

	tcpSYN = 0x02
	tcpACK = 0x10
)

// ether returns an Ethernet header with the given VLAN tags (TPIDs, outermost first) and ethertype.
func ether(etherType uint16, tpids ...uint16) []byte {
	b := append(append([]byte{}, macDst...), macSrc...)
	for i, t := range tpids {
		b = binary.BigEndian.AppendUint16(b, t)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i)) // VLAN id
	}
	return binary.BigEndian.AppendUint16(b, etherType)
}

func ipv4(src, dst string, proto uint8, fragOffset uint16, payload []byte) []byte {
	b := make([]byte, 20)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(b[6:], fragOffset&0x1fff)
	b[8] = 64
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return append(b, payload...)
}

func ipv6(src, dst string, next uint8, payload []byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = next
	b[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, payload...)
}

// ext6 is an IPv6 options-style extension header (hop-by-hop, routing, destination options) of
// 8*(units+1) bytes.
func ext6(next uint8, units uint8, payload []byte) []byte {
	b := make([]byte, 8*(int(units)+1))
	b[0], b[1] = next, units
	return append(b, payload...)
}

func frag6(next uint8, offset uint16, payload []byte) []byte {
	b := make([]byte, 8)
	b[0] = next
	binary.BigEndian.PutUint16(b[2:], offset<<3)
	return append(b, payload...)
}

func tcp(srcPort, dstPort uint16, flags uint8) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], srcPort)
	binary.BigEndian.PutUint16(b[2:], dstPort)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	return b
}

func udp(srcPort, dstPort uint16) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:], srcPort)
	binary.BigEndian.PutUint16(b[2:], dstPort)
	binary.BigEndian.PutUint16(b[4:], 8)
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}
