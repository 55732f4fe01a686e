package bpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Guard is the loaded XDP guard of one network namespace: its attachments, blocklist, rate limits and
// counters. Its methods are safe for concurrent use.
type Guard struct {
	mu     sync.Mutex
	log    *slog.Logger
	dir    *pinDir
	objs   guardObjects
	ns     *os.File
	nsIno  uint64
	nl     *netlink.Handle
	ownNS  bool // the calling process's namespace: no setns needed
	ifaces map[string]*guardIface
	rates  map[string]rateConfig // per interface name, applied to its current ifindex
}

// guardIface is an interface the guard should be on; link is nil while the interface is absent.
type guardIface struct {
	name      string
	requested string
	link      link.Link
	ifindex   int
	driver    string
	err       string
}

// OpenGuard loads the guard program, reuses the maps pinned by an earlier run (the blocklist and rate
// buckets survive a restart) and takes over the XDP links it pinned, moving each to this program
// atomically. Close releases file descriptors only; the guard stays on its interfaces.
func OpenGuard(opts Options) (_ *Guard, err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising the memlock limit: %w", permission(err))
	}
	nsPath := opts.NetNS
	if nsPath == "" {
		nsPath = "/proc/thread-self/ns/net"
	}
	g := &Guard{log: opts.logger("guard"), ifaces: make(map[string]*guardIface), rates: make(map[string]rateConfig)}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if g.ns, err = os.Open(nsPath); err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", nsPath, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(g.ns.Fd()), &st); err != nil {
		return nil, fmt.Errorf("reading network namespace %s: %w", nsPath, err)
	}
	g.nsIno = st.Ino
	if g.dir, err = openPinDir(opts.bpffs(), st.Ino, "guard", opts.LockWait); err != nil {
		return nil, err
	}
	spec, err := loadGuard()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded guard object: %w", err)
	}
	if err := loadPinned(spec, &g.objs, g.dir, g.log); err != nil {
		return nil, fmt.Errorf("loading the guard program: %w", err)
	}
	g.ownNS = opts.NetNS == ""
	if g.ownNS {
		// The daemon's own namespace: no setns (which needs CAP_SYS_ADMIN and
		// is forbidden by the unit's RestrictNamespaces=).
		g.nl, err = netlink.NewHandle()
	} else {
		g.nl, err = netlink.NewHandleAt(netns.NsHandle(int(g.ns.Fd())))
	}
	if err != nil {
		return nil, fmt.Errorf("opening netlink in the network namespace: %w", permission(err))
	}
	if err := g.restore(); err != nil {
		return nil, err
	}
	return g, nil
}

// restore takes over the XDP links pinned by an earlier run.
func (g *Guard) restore() error {
	entries, err := os.ReadDir(g.dir.path)
	if err != nil {
		return fmt.Errorf("reading pin directory %s: %w", g.dir.path, err)
	}
	for _, e := range entries {
		name, ok := ifaceFromPin(xdpPinPrefix, e.Name())
		if !ok {
			continue
		}
		gi := &guardIface{name: name, requested: ModeAuto}
		g.ifaces[name] = gi
		if err := g.attach(gi); err != nil {
			gi.err = err.Error()
			g.log.Warn("guard not re-attached to interface; it will be when the interface appears", "interface", name, "error", err.Error())
		}
	}
	return nil
}

// Close releases file descriptors and the lock; the guard stays attached to its interfaces and the
// maps stay pinned.
func (g *Guard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for _, gi := range g.ifaces {
		if gi.link != nil {
			errs = append(errs, gi.link.Close())
			gi.link = nil
		}
	}
	errs = append(errs, g.objs.Close())
	if g.nl != nil {
		g.nl.Close()
		g.nl = nil
	}
	if g.ns != nil {
		errs = append(errs, g.ns.Close())
		g.ns = nil
	}
	errs = append(errs, g.dir.Close())
	return errors.Join(errs...)
}

// Attach puts the guard on the interface named iface in mode auto (native when the driver supports it,
// generic otherwise), native or generic, and pins the link so the guard stays across restarts. An
// interface that does not exist yet is remembered (the error wraps ErrNotFound) and attached by Watch
// when it appears.
func (g *Guard) Attach(iface, mode string) (Attachment, error) {
	if err := validMode(mode); err != nil {
		return Attachment{}, fmt.Errorf("mode: %w", err)
	}
	if mode == "" {
		mode = ModeAuto
	}
	if iface == "" || len(iface) > 15 || strings.ContainsAny(iface, "/: \t\n") {
		return Attachment{}, fmt.Errorf("interface: %q is not an interface name", iface)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	gi, ok := g.ifaces[iface]
	if !ok {
		gi = &guardIface{name: iface}
		g.ifaces[iface] = gi
	}
	if gi.requested != mode && gi.link != nil {
		if actual := g.mode(gi.ifindex); mode != ModeAuto && actual != mode {
			g.unpin(gi)
		}
	}
	gi.requested = mode
	err := g.attach(gi)
	if err != nil {
		gi.err = err.Error()
		return g.describe(gi), err
	}
	gi.err = ""
	a := g.describe(gi)
	g.log.Info("guard attached", "interface", iface, "mode", a.Mode, "requested_mode", mode, "driver", a.Driver, "ifindex", a.Ifindex)
	return a, nil
}

// attach (re)attaches gi to the interface currently named gi.name. Called with g.mu held.
func (g *Guard) attach(gi *guardIface) error {
	l, err := g.nl.LinkByName(gi.name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			g.unpin(gi)
			return fmt.Errorf("interface %q: %w (the guard attaches when it appears)", gi.name, ErrNotFound)
		}
		return fmt.Errorf("looking up interface %q: %w", gi.name, permission(err))
	}
	ifindex := l.Attrs().Index
	if gi.link != nil && gi.ifindex == ifindex {
		return nil
	}
	if gi.link != nil {
		g.unpin(gi)
	}
	valid := func(info *link.Info) bool {
		x := info.XDP()
		return x != nil && int(x.Ifindex) == ifindex
	}
	attach := func() (link.Link, error) {
		var xl link.Link
		err := inNetNS(g.ns, g.nsIno, func() error {
			var err error
			xl, err = attachXDP(g.objs.Guard, ifindex, gi.requested)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("attaching the guard to %s: %w", gi.name, err)
		}
		return xl, nil
	}
	xl, err := attachPinned(g.dir.file(pinName(xdpPinPrefix, gi.name)), g.objs.Guard, valid, attach, g.log)
	if err != nil {
		return err
	}
	if gi.requested != ModeAuto && g.mode(ifindex) != gi.requested {
		// A pinned link from an earlier run in another mode: replace it.
		_ = xl.Unpin()
		xl.Close()
		if xl, err = attachPinned(g.dir.file(pinName(xdpPinPrefix, gi.name)), g.objs.Guard, valid, attach, g.log); err != nil {
			return err
		}
	}
	if gi.ifindex != 0 && gi.ifindex != ifindex {
		_ = g.objs.GuardConfig.Delete(uint32(gi.ifindex))
	}
	gi.link, gi.ifindex = xl, ifindex
	gi.driver = g.driver(gi.name)
	if rc, ok := g.rates[gi.name]; ok {
		if err := g.objs.GuardConfig.Put(uint32(ifindex), rc); err != nil {
			return fmt.Errorf("setting the SYN rate of %s: %w", gi.name, err)
		}
	}
	return nil
}

// attachXDP attaches prog to ifindex in the requested mode; auto tries native, then generic.
func attachXDP(prog *ebpf.Program, ifindex int, mode string) (link.Link, error) {
	flags := []link.XDPAttachFlags{link.XDPDriverMode, link.XDPGenericMode}
	switch mode {
	case ModeNative:
		flags = flags[:1]
	case ModeGeneric:
		flags = flags[1:]
	}
	var errs []error
	for _, f := range flags {
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: f})
		if err == nil {
			return l, nil
		}
		errs = append(errs, permission(err))
		if errors.Is(err, ErrPermission) || errors.Is(err, unix.EPERM) {
			break
		}
	}
	err := errors.Join(errs...)
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("another XDP program is on the interface (remove it with `ip link set dev IFACE xdp off`): %w", err)
	}
	if mode == ModeNative && errors.Is(err, unix.EOPNOTSUPP) {
		return nil, fmt.Errorf("the driver has no native XDP (use mode generic or auto): %w", err)
	}
	return nil, err
}

// unpin removes gi's link: detaches the guard from the interface. Called with g.mu held.
func (g *Guard) unpin(gi *guardIface) {
	if gi.link != nil {
		_ = gi.link.Unpin()
		_ = gi.link.Close()
		gi.link = nil
	} else if err := os.Remove(g.dir.file(pinName(xdpPinPrefix, gi.name))); err != nil && !errors.Is(err, os.ErrNotExist) {
		g.log.Warn("removing stale pin", "interface", gi.name, "error", err.Error())
	}
}

// mode reports the XDP mode in use on ifindex, from netlink.
func (g *Guard) mode(ifindex int) string {
	l, err := g.nl.LinkByIndex(ifindex)
	if err != nil || l.Attrs().Xdp == nil || !l.Attrs().Xdp.Attached {
		return ""
	}
	switch l.Attrs().Xdp.AttachMode {
	case 1:
		return ModeNative
	case 2:
		return ModeGeneric
	case 3:
		return "offload"
	}
	return "multi"
}

// driver returns the interface's driver name from ethtool, "" when unknown.
func (g *Guard) driver(iface string) string {
	var name string
	_ = inNetNS(g.ns, g.nsIno, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		info, err := unix.IoctlGetEthtoolDrvinfo(fd, iface)
		if err != nil {
			return err
		}
		name = unix.ByteSliceToString(info.Driver[:])
		return nil
	})
	return name
}

func (g *Guard) describe(gi *guardIface) Attachment {
	a := Attachment{Interface: gi.name, Requested: gi.requested, Driver: gi.driver, Error: gi.err}
	if gi.link == nil {
		return a
	}
	a.Attached, a.Ifindex, a.Mode = true, gi.ifindex, g.mode(gi.ifindex)
	if info, err := gi.link.Info(); err == nil {
		a.ProgramID = uint32(info.Program)
	}
	return a
}

// Detach removes the guard from iface (and forgets it, so Watch no longer re-attaches it).
func (g *Guard) Detach(iface string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	gi, ok := g.ifaces[iface]
	if !ok {
		return fmt.Errorf("interface %q has no guard: %w", iface, ErrNotFound)
	}
	g.unpin(gi)
	if gi.ifindex != 0 {
		if err := g.objs.GuardConfig.Delete(uint32(gi.ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing the SYN rate of %s: %w", iface, err)
		}
	}
	delete(g.ifaces, iface)
	return nil
}

// Attachments returns the guard's interfaces sorted by name.
func (g *Guard) Attachments() []Attachment {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Attachment, 0, len(g.ifaces))
	for _, gi := range g.ifaces {
		out = append(out, g.describe(gi))
	}
	slices.SortFunc(out, func(a, b Attachment) int { return strings.Compare(a.Interface, b.Interface) })
	return out
}

// SetProtectedPorts replaces the set of TCP ports whose new connections (SYN without ACK) are counted
// against each source's token bucket; see ProtectedPorts.
func (g *Guard) SetProtectedPorts(ports []uint16) error {
	if len(ports) > maxPorts {
		return fmt.Errorf("protected ports: %d is more than the supported %d", len(ports), maxPorts)
	}
	want := make(map[uint16]bool, len(ports))
	for _, p := range ports {
		if p == 0 {
			return errors.New("protected ports: 0 is not a port")
		}
		want[p] = true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for p := range want {
		if err := g.objs.GuardPorts.Put(p, uint8(1)); err != nil {
			return fmt.Errorf("protecting port %d: %w", p, err)
		}
	}
	var (
		p     uint16
		v     uint8
		stale []uint16
	)
	it := g.objs.GuardPorts.Iterate()
	for it.Next(&p, &v) {
		if !want[p] {
			stale = append(stale, p)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading protected ports: %w", err)
	}
	for _, p := range stale {
		if err := g.objs.GuardPorts.Delete(p); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("unprotecting port %d: %w", p, err)
		}
	}
	return nil
}

// SetRate sets the SYN token bucket of iface: rate new connections per second per source, up to burst
// at once; rate 0 means no limit on iface. iface "" sets the default for interfaces without their own.
// The setting follows the interface name across re-creation.
func (g *Guard) SetRate(iface string, rate, burst uint32) error {
	if rate > 0 && burst == 0 {
		return errors.New("syn_burst: must be at least 1 when syn_rate is set")
	}
	rc := rateConfig{Rate: rate, Burst: burst}
	g.mu.Lock()
	defer g.mu.Unlock()
	if iface == "" {
		if err := g.objs.GuardConfig.Put(uint32(0), rc); err != nil {
			return fmt.Errorf("setting the default SYN rate: %w", err)
		}
		return nil
	}
	g.rates[iface] = rc
	if gi, ok := g.ifaces[iface]; ok && gi.link != nil {
		if err := g.objs.GuardConfig.Put(uint32(gi.ifindex), rc); err != nil {
			return fmt.Errorf("setting the SYN rate of %s: %w", iface, err)
		}
	}
	return nil
}

// Block drops every packet from sources in p on all guarded interfaces for ttl (0: until Unblock).
// Blocking a prefix again replaces its expiry.
func (g *Guard) Block(p netip.Prefix, ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("ttl: %s is negative", ttl)
	}
	k, err := blocklistKey(p)
	if err != nil {
		return err
	}
	v := blockValue{Prefixlen: k.Prefixlen}
	if ttl > 0 {
		v.ExpiresNs = monotonicNow() + uint64(ttl)
	}
	return g.putBlock(k, v)
}

func (g *Guard) putBlock(k blockKey, v blockValue) error {
	if err := g.objs.GuardBlocklist.Put(k, v); err != nil {
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.E2BIG) {
			return fmt.Errorf("blocking %s: the blocklist is full (%d entries); remove entries or block wider prefixes: %w", prefixFromKey(k.Addr, k.Prefixlen), blocklistMax, err)
		}
		return fmt.Errorf("blocking %s: %w", prefixFromKey(k.Addr, k.Prefixlen), err)
	}
	return nil
}

const blocklistMax = 65536 // GUARD_MAX_BLOCKS

// Unblock removes p from the blocklist; the error wraps ErrNotFound when p is not in it.
func (g *Guard) Unblock(p netip.Prefix) error {
	k, err := blocklistKey(p)
	if err != nil {
		return err
	}
	if err := g.objs.GuardBlocklist.Delete(k); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("%s is not blocked: %w", p.Masked(), ErrNotFound)
		}
		return fmt.Errorf("unblocking %s: %w", p.Masked(), err)
	}
	return nil
}

// Blocked returns the live blocklist entries sorted by prefix, and removes expired ones.
func (g *Guard) Blocked() ([]BlockEntry, error) {
	now, wall := monotonicNow(), time.Now()
	var (
		k       blockKey
		v       blockValue
		out     []BlockEntry
		expired []blockKey
	)
	it := g.objs.GuardBlocklist.Iterate()
	for it.Next(&k, &v) {
		if v.ExpiresNs != 0 && v.ExpiresNs <= now {
			expired = append(expired, k)
			continue
		}
		e := BlockEntry{Prefix: prefixFromKey(k.Addr, k.Prefixlen)}
		if v.ExpiresNs != 0 {
			e.Expires = wall.Add(time.Duration(v.ExpiresNs - now)).Round(time.Millisecond)
		}
		out = append(out, e)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading the blocklist: %w", err)
	}
	for _, k := range expired {
		_ = g.objs.GuardBlocklist.Delete(k)
	}
	slices.SortFunc(out, func(a, b BlockEntry) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out, nil
}

// Stats returns the packet counters per interface, verdict and reason, summed over CPUs, sorted.
func (g *Guard) Stats() ([]GuardCounter, error) {
	g.mu.Lock()
	names := make(map[int]string, len(g.ifaces))
	for _, gi := range g.ifaces {
		if gi.ifindex != 0 {
			names[gi.ifindex] = gi.name
		}
	}
	g.mu.Unlock()
	var (
		k   counterKey
		per []uint64
		out []GuardCounter
	)
	it := g.objs.GuardCounters.Iterate()
	for it.Next(&k, &per) {
		if int(k.Reason) >= len(reasonNames) {
			continue
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		name, ok := names[int(k.Ifindex)]
		if !ok {
			if l, err := g.nl.LinkByIndex(int(k.Ifindex)); err == nil {
				name = l.Attrs().Name
			} else {
				name = fmt.Sprintf("ifindex:%d", k.Ifindex)
			}
			names[int(k.Ifindex)] = name
		}
		r := reasonNames[k.Reason]
		out = append(out, GuardCounter{Interface: name, Verdict: r.verdict, Reason: r.reason, Packets: sum})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading guard counters: %w", err)
	}
	slices.SortFunc(out, func(a, b GuardCounter) int {
		if c := strings.Compare(a.Interface, b.Interface); c != 0 {
			return c
		}
		if c := strings.Compare(a.Verdict, b.Verdict); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return out, nil
}

// Watch follows link changes in the namespace until ctx ends: when a guarded interface disappears its
// link is dropped, and when an interface of that name appears again the guard is attached to it, each
// with a log line. It returns nil when ctx ends, an error when the subscription fails.
func (g *Guard) Watch(ctx context.Context) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	var nsp *netns.NsHandle
	if !g.ownNS {
		nsh := netns.NsHandle(int(g.ns.Fd()))
		nsp = &nsh
	}
	subErr := make(chan error, 1)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		Namespace:    nsp,
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case subErr <- err:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("subscribing to link changes: %w", permission(err))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-subErr:
			return fmt.Errorf("link change subscription: %w", err)
		case u, ok := <-updates:
			if !ok {
				return errors.New("link change subscription closed by the kernel")
			}
			g.linkChanged(u)
		}
	}
}

func (g *Guard) linkChanged(u netlink.LinkUpdate) {
	name, index := u.Attrs().Name, u.Attrs().Index
	g.mu.Lock()
	defer g.mu.Unlock()
	gi, ok := g.ifaces[name]
	if !ok {
		return
	}
	if u.Header.Type == unix.RTM_DELLINK {
		if gi.ifindex == index && gi.link != nil {
			g.unpin(gi)
			_ = g.objs.GuardConfig.Delete(uint32(index))
			gi.ifindex = 0
			g.log.Warn("guarded interface disappeared; the guard attaches again when it returns", "interface", name)
		}
		return
	}
	if gi.link != nil && gi.ifindex == index {
		return
	}
	if err := g.attach(gi); err != nil {
		gi.err = err.Error()
		g.log.Error("guarded interface appeared but the guard could not attach", "interface", name, "error", err.Error())
		return
	}
	gi.err = ""
	g.log.Info("guard attached to interface", "interface", name, "ifindex", index, "mode", g.mode(index), "driver", gi.driver)
}
