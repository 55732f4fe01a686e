package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The types below mirror the structs of sealgate.h byte for byte. They are written by hand so the key
// translation builds and is tested on every OS; TestLayout checks them against the bpf2go-generated
// types (and so against the C compiler's layout).

type steerKey struct {
	Prefixlen uint32
	Protocol  uint8
	Pad       uint8
	Port      uint16 // host byte order
	Addr      [16]byte
}

type steerValue struct {
	DestID uint32
}

type steerDestName struct {
	Name [64]byte
}

type blockKey struct {
	Prefixlen uint32
	Addr      [16]byte
}

type blockValue struct {
	ExpiresNs uint64
	Prefixlen uint32
	Pad       uint32
}

type rateConfig struct {
	Rate  uint32
	Burst uint32
}

type bucketKey struct {
	Addr [16]byte
}

type bucket struct {
	Tokens uint64
	LastNs uint64
}

type counterKey struct {
	Ifindex uint32
	Reason  uint32
}

const (
	steerFixedBits  = 32  // protocol, pad and port, always matched in full
	v4MappedBits    = 96  // ::ffff:0:0/96
	maxDests        = 128 // STEER_MAX_DESTS
	maxDestNameLen  = 63  // STEER_DEST_NAME_LEN - 1 for the NUL
	ipprotoTCP      = 6
	ipprotoUDP      = 17
	ipprotoMPTCP    = 262
	maxBindings     = 4096 // STEER_MAX_BINDINGS
	maxPorts        = 1024 // GUARD_MAX_PORTS
	nsecPerToken    = 1_000_000_000
	steerCounterMax = 4
)

// protoNumber maps a binding's protocol name to its IP protocol number.
func protoNumber(proto string) (uint8, error) {
	switch strings.ToLower(proto) {
	case "", "tcp":
		return ipprotoTCP, nil
	case "udp":
		return ipprotoUDP, nil
	}
	return 0, fmt.Errorf("proto: %q is not tcp or udp", proto)
}

func protoName(n uint8) string {
	switch n {
	case ipprotoTCP:
		return "tcp"
	case ipprotoUDP:
		return "udp"
	}
	return fmt.Sprintf("ip%d", n)
}

// addrKey returns the 16-byte form of a prefix (IPv4 v4-mapped) and its length in those 128 bits.
func addrKey(p netip.Prefix) ([16]byte, uint32, error) {
	if !p.IsValid() {
		return [16]byte{}, 0, errors.New("prefix: not a valid CIDR prefix (e.g. 192.0.2.0/24 or 2001:db8::/32)")
	}
	if p.Addr().Zone() != "" {
		return [16]byte{}, 0, fmt.Errorf("prefix: %s has a zone; zones are not supported", p)
	}
	p = p.Masked()
	bits := uint32(p.Bits())
	if p.Addr().Is4() {
		bits += v4MappedBits
	}
	return p.Addr().As16(), bits, nil
}

// prefixFromKey is the inverse of addrKey: a v4-mapped key of at least 96 bits is an IPv4 prefix.
func prefixFromKey(addr [16]byte, bits uint32) netip.Prefix {
	a := netip.AddrFrom16(addr)
	if a.Is4In6() && bits >= v4MappedBits {
		return netip.PrefixFrom(a.Unmap(), int(bits-v4MappedBits))
	}
	return netip.PrefixFrom(a, int(bits))
}

// validDest checks a destination (listener) name.
func validDest(dest string) error {
	switch {
	case dest == "":
		return errors.New("dest: must name a listener")
	case len(dest) > maxDestNameLen:
		return fmt.Errorf("dest: %q is longer than %d bytes", dest, maxDestNameLen)
	case strings.IndexByte(dest, 0) >= 0:
		return fmt.Errorf("dest: %q contains a NUL byte", dest)
	}
	return nil
}

// bindingKey translates a binding into its LPM trie key.
func bindingKey(b Binding) (steerKey, error) {
	proto, err := protoNumber(b.Proto)
	if err != nil {
		return steerKey{}, err
	}
	if b.Port == 0 {
		return steerKey{}, errors.New("port: must be 1-65535")
	}
	if err := validDest(b.Dest); err != nil {
		return steerKey{}, err
	}
	addr, bits, err := addrKey(b.Prefix)
	if err != nil {
		return steerKey{}, err
	}
	return steerKey{Prefixlen: steerFixedBits + bits, Protocol: proto, Port: b.Port, Addr: addr}, nil
}

// bindingFromKey is the inverse of bindingKey, without the destination.
func bindingFromKey(k steerKey) Binding {
	bits := uint32(0)
	if k.Prefixlen > steerFixedBits {
		bits = k.Prefixlen - steerFixedBits
	}
	return Binding{Proto: protoName(k.Protocol), Prefix: prefixFromKey(k.Addr, bits), Port: k.Port}
}

func destNameKey(dest string) steerDestName {
	var n steerDestName
	copy(n.Name[:], dest)
	return n
}

func (n steerDestName) String() string {
	b := n.Name[:]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// blocklistKey translates a source prefix into its LPM trie key and the value's prefixlen.
func blocklistKey(p netip.Prefix) (blockKey, error) {
	addr, bits, err := addrKey(p)
	if err != nil {
		return blockKey{}, err
	}
	return blockKey{Prefixlen: bits, Addr: addr}, nil
}

// ProtectedPorts returns the sorted, distinct TCP ports of bindings: the ports whose new connections the
// guard rate-limits ([Guard.SetProtectedPorts]).
func ProtectedPorts(bindings []Binding) []uint16 {
	seen := make(map[uint16]bool)
	var out []uint16
	for _, b := range bindings {
		if p, err := protoNumber(b.Proto); err != nil || p != ipprotoTCP || b.Port == 0 || seen[b.Port] {
			continue
		}
		seen[b.Port] = true
		out = append(out, b.Port)
	}
	slices.Sort(out)
	return out
}

// xdpPinPrefix starts the pin names of the guard's XDP links.
const xdpPinPrefix = "xdp_"

// pinName turns an interface name into a bpffs file name: bpffs refuses dots, interface names refuse
// colons.
func pinName(prefix, iface string) string {
	return prefix + strings.ReplaceAll(iface, ".", ":")
}

func ifaceFromPin(prefix, name string) (string, bool) {
	s, ok := strings.CutPrefix(name, prefix)
	return strings.ReplaceAll(s, ":", "."), ok && s != ""
}
