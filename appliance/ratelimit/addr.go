package ratelimit

import "net/netip"

// ClientPrefix returns the prefix a client address is limited and blocked
// by: the address itself for IPv4, its /64 for IPv6 (a single host usually
// holds a whole /64, so a /128 would be trivial to step around).
func ClientPrefix(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, err := addr.Prefix(bits)
	if err != nil { // the zero Addr
		return netip.Prefix{}
	}
	return p
}

// ClientKey returns the bucket key of a client address.
func ClientKey(addr netip.Addr) string {
	return "ip:" + ClientPrefix(addr).String()
}
