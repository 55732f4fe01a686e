package main

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// frameLen is the size of every flood frame: the Ethernet minimum without FCS.
const frameLen = 60

// udpFrame returns a minimum-size Ethernet/IPv4/UDP frame from src to dst, with a valid IPv4 header
// checksum and UDP checksum 0 (none, allowed over IPv4).
func udpFrame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) []byte {
	f := make([]byte, frameLen)
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45                                             // version 4, IHL 5
	binary.BigEndian.PutUint16(ip[2:4], uint16(frameLen-14)) // total length
	ip[6] = 0x40                                             // DF
	ip[8] = 64                                               // TTL
	ip[9] = 17                                               // UDP
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:12], ipChecksum(ip))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(len(udp)))
	return f
}

// ipChecksum is the Internet checksum (RFC 1071) of an IPv4 header whose checksum field is zero.
func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
