package bpf

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"
)

var (
	// ErrNotSupported means the operating system or the kernel lacks what steering or the guard need
	// (Linux 5.9 or later with sk_lookup, XDP links and BPF_PROG_TEST_RUN).
	ErrNotSupported = errors.New("ebpf steering and guard are not supported on this system")
	// ErrPermission means the process lacks CAP_BPF, CAP_NET_ADMIN or CAP_SYS_ADMIN (for bpffs).
	ErrPermission = errors.New("missing privileges for eBPF (run as root or via the systemd unit, which grants CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)")
	// ErrLocked means another process holds the pinned state of this network namespace.
	ErrLocked = errors.New("another sealgate daemon holds the eBPF state of this network namespace")
	// ErrNotFound means the interface, prefix or destination named in a call is not known.
	ErrNotFound = errors.New("not found")
)

// DefaultBPFFS is where bpffs is mounted (and mounted by [OpenSteering] and [OpenGuard] when absent).
const DefaultBPFFS = "/sys/fs/bpf"

// Options are the common settings of [OpenSteering], [OpenGuard] and [Cleanup].
type Options struct {
	// BPFFS is the bpffs mount point; empty means DefaultBPFFS. State is pinned under
	// BPFFS/sealgate/<netns-inode>/.
	BPFFS string
	// NetNS is the path of the network namespace to work in (for example /proc/PID/ns/net or
	// /run/netns/NAME); empty means the namespace of the calling thread.
	NetNS string
	// Logger receives the few events worth a line (re-attached interface, replaced map); nil discards.
	Logger *slog.Logger
	// LockWait is how long Open waits for another process (the predecessor in a restart handover) to
	// release the pin directory before failing with ErrLocked; 0 fails at once.
	LockWait time.Duration
}

func (o Options) bpffs() string {
	if o.BPFFS == "" {
		return DefaultBPFFS
	}
	return o.BPFFS
}

func (o Options) logger(component string) *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger.With("component", component)
}

// Binding steers new connections of Proto to an address in Prefix on Port into the listening socket
// registered for Dest. The longest matching prefix wins; IPv4 prefixes also match v4-mapped IPv6.
type Binding struct {
	Proto  string       `json:"proto"` // "tcp" (default when empty) or "udp"
	Prefix netip.Prefix `json:"prefix"`
	Port   uint16       `json:"port"`
	Dest   string       `json:"dest"` // listener name, at most 63 bytes
}

// BindingState is a binding as the kernel holds it and whether its destination has sockets. A binding
// without any socket refuses connections (fail closed).
type BindingState struct {
	Binding
	IPv4Socket bool `json:"ipv4_socket"` // an IPv4 socket is registered for Dest
	IPv6Socket bool `json:"ipv6_socket"` // an IPv6 socket is registered for Dest (also takes IPv4 unless V6ONLY)
}

// SteerStats are the steering counters summed over CPUs since the maps were created (they survive
// restarts).
type SteerStats struct {
	Lookups uint64 `json:"lookups"` // socket lookups for new connections in the namespace
	Steered uint64 `json:"steered"` // assigned to a registered socket
	Misses  uint64 `json:"misses"`  // matched a binding without socket: refused
	Errors  uint64 `json:"errors"`  // the kernel refused the registered socket: refused
}

// XDP attach modes accepted by [Guard.Attach].
const (
	ModeAuto    = "auto"    // native when the driver supports it, generic otherwise
	ModeNative  = "native"  // in the driver (fails if the driver lacks XDP)
	ModeGeneric = "generic" // in the kernel's generic receive path (any interface, slower)
)

// Attachment describes the guard on one interface.
type Attachment struct {
	Interface string `json:"interface"`
	Ifindex   int    `json:"ifindex"`         // 0 while the interface is absent
	Requested string `json:"requested_mode"`  // auto, native or generic
	Mode      string `json:"mode"`            // mode in use: native, generic, offload; "" while absent
	Driver    string `json:"driver"`          // from ethtool, "" if unknown
	ProgramID uint32 `json:"program_id"`      // kernel id of the guard program
	Attached  bool   `json:"attached"`        // false while the interface is absent (Watch re-attaches)
	Error     string `json:"error,omitempty"` // why the last re-attach failed
}

// BlockEntry is one blocklisted source prefix.
type BlockEntry struct {
	Prefix  netip.Prefix `json:"prefix"`
	Expires time.Time    `json:"expires,omitzero"` // zero: never
}

// GuardCounter is the number of packets the guard gave one verdict for one reason on one interface,
// summed over CPUs.
type GuardCounter struct {
	Interface string `json:"interface"` // name, or "ifindex:N" for an interface that is gone
	Verdict   string `json:"verdict"`   // pass or drop
	Reason    string `json:"reason"`    // see Reasons
	Packets   uint64 `json:"packets"`
}

// reasonNames are the guard's reasons, indexed by enum guard_reason (sealgate.h); TestReasons checks
// them against the generated enum.
var reasonNames = [...]struct{ verdict, reason string }{
	{"pass", "tcp"},
	{"pass", "non_tcp"},
	{"pass", "non_ip"},
	{"pass", "fragment"},
	{"pass", "truncated"},
	{"pass", "malformed"},
	{"pass", "ext_headers"},
	{"pass", "vlan_depth"},
	{"drop", "blocklist"},
	{"drop", "syn_rate"},
}

// Reasons lists every (verdict, reason) pair the guard counts, in a fixed order, so metrics can be
// exported with zeros before the first packet.
func Reasons() [][2]string {
	out := make([][2]string, len(reasonNames))
	for i, r := range reasonNames {
		out[i] = [2]string{r.verdict, r.reason}
	}
	return out
}
