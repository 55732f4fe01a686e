package bpf

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Steering is the loaded sk_lookup program of one network namespace: bindings, registered sockets and
// counters. Its methods are safe for concurrent use.
type Steering struct {
	mu   sync.Mutex
	log  *slog.Logger
	dir  *pinDir
	objs steerObjects
	link link.Link
}

// OpenSteering loads the steering program, reuses the maps pinned by an earlier run (so bindings and
// registered sockets survive a restart), and attaches the program to the network namespace through a
// pinned link that outlives the process. A pinned link from an earlier run is moved to this program
// atomically. Close releases file descriptors only.
func OpenSteering(opts Options) (_ *Steering, err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising the memlock limit: %w", permission(err))
	}
	nsPath := opts.NetNS
	if nsPath == "" {
		nsPath = "/proc/thread-self/ns/net"
	}
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &st); err != nil {
		return nil, fmt.Errorf("reading network namespace %s: %w", nsPath, err)
	}

	s := &Steering{log: opts.logger("steer")}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.dir, err = openPinDir(opts.bpffs(), st.Ino, "steer", opts.LockWait); err != nil {
		return nil, err
	}
	spec, err := loadSteer()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded steering object: %w", err)
	}
	if err := loadPinned(spec, &s.objs, s.dir, s.log); err != nil {
		return nil, fmt.Errorf("loading the steering program: %w", err)
	}
	valid := func(info *link.Info) bool {
		nn := info.NetNs()
		return nn != nil && uint64(nn.NetnsInode) == st.Ino
	}
	attach := func() (link.Link, error) {
		l, err := link.AttachNetNs(int(ns.Fd()), s.objs.Steer)
		if err != nil {
			return nil, fmt.Errorf("attaching the steering program to the network namespace: %w", permission(err))
		}
		return l, nil
	}
	if s.link, err = attachPinned(s.dir.file("link"), s.objs.Steer, valid, attach, s.log); err != nil {
		return nil, err
	}
	return s, nil
}

// Close releases the file descriptors and the lock. The program stays attached and the maps (with the
// registered sockets) stay pinned, so steering keeps working while the daemon restarts.
func (s *Steering) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.link != nil {
		errs = append(errs, s.link.Close())
		s.link = nil
	}
	errs = append(errs, s.objs.Close())
	errs = append(errs, s.dir.Close())
	return errors.Join(errs...)
}

// dests reads the name → id table.
func (s *Steering) dests() (map[string]uint32, error) {
	out := make(map[string]uint32)
	var (
		k  steerDestName
		id uint32
	)
	it := s.objs.SteerDests.Iterate()
	for it.Next(&k, &id) {
		out[k.String()] = id
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading destination ids: %w", err)
	}
	return out, nil
}

// destID returns dest's id, allocating the lowest free one when dest is new.
func (s *Steering) destID(ids map[string]uint32, dest string) (uint32, error) {
	if id, ok := ids[dest]; ok {
		return id, nil
	}
	used := make(map[uint32]bool, len(ids))
	for _, id := range ids {
		used[id] = true
	}
	for id := uint32(0); id < maxDests; id++ {
		if used[id] {
			continue
		}
		// A free id may still hold sockets of a destination that was removed: clear them.
		for _, slot := range []uint32{2 * id, 2*id + 1} {
			if err := s.deleteSocket(slot); err != nil {
				return 0, fmt.Errorf("clearing socket slot %d: %w", slot, err)
			}
		}
		if err := s.objs.SteerDests.Put(destNameKey(dest), id); err != nil {
			return 0, fmt.Errorf("recording destination %q: %w", dest, err)
		}
		ids[dest] = id
		return id, nil
	}
	return 0, fmt.Errorf("destination %q: more than %d destinations", dest, maxDests)
}

// deleteSocket empties a socket map slot; the kernel answers EINVAL for an empty one.
func (s *Steering) deleteSocket(slot uint32) error {
	err := s.objs.SteerSockets.Delete(slot)
	if err == nil || errors.Is(err, ebpf.ErrKeyNotExist) || errors.Is(err, unix.EINVAL) {
		return nil
	}
	return err
}

func (s *Steering) hasSocket(slot uint32) bool {
	var cookie uint64
	return s.objs.SteerSockets.Lookup(slot, &cookie) == nil
}

// SetBindings replaces the whole set of bindings: new keys are added before stale ones are removed, so
// a binding present in both the old and the new set never stops steering. Two bindings with the same
// protocol, prefix and port but different destinations are an error.
func (s *Steering) SetBindings(bindings []Binding) error {
	if len(bindings) > maxBindings {
		return fmt.Errorf("bindings: %d is more than the supported %d", len(bindings), maxBindings)
	}
	want := make(map[steerKey]string, len(bindings))
	for i, b := range bindings {
		k, err := bindingKey(b)
		if err != nil {
			return fmt.Errorf("binding[%d]: %w", i, err)
		}
		if prev, ok := want[k]; ok && prev != b.Dest {
			return fmt.Errorf("binding[%d]: %s %s port %d is steered to both %q and %q", i, protoName(k.Protocol), b.Prefix.Masked(), b.Port, prev, b.Dest)
		}
		want[k] = b.Dest
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	ids, err := s.dests()
	if err != nil {
		return err
	}
	inUse := make(map[string]bool)
	for _, b := range bindings { // in order, so new destinations get ids deterministically
		if _, err := s.destID(ids, b.Dest); err != nil {
			return err
		}
		inUse[b.Dest] = true
	}
	for k, dest := range want {
		if err := s.objs.SteerBindings.Put(k, steerValue{DestID: ids[dest]}); err != nil {
			return fmt.Errorf("adding binding %s: %w", bindingFromKey(k).Prefix, err)
		}
	}

	var (
		k     steerKey
		v     steerValue
		stale []steerKey
	)
	it := s.objs.SteerBindings.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading bindings: %w", err)
	}
	for _, k := range stale {
		if err := s.objs.SteerBindings.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing binding %s: %w", bindingFromKey(k).Prefix, err)
		}
	}

	// Forget destinations that have neither bindings nor sockets.
	for dest, id := range ids {
		if inUse[dest] || s.hasSocket(2*id) || s.hasSocket(2*id+1) {
			continue
		}
		if err := s.objs.SteerDests.Delete(destNameKey(dest)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forgetting destination %q: %w", dest, err)
		}
	}
	return nil
}

// RegisterSocket puts a listening socket of dest into the socket map; it replaces the previous socket of
// the same family. Register one socket per family: an IPv4 socket takes IPv4 connections, an IPv6 socket
// IPv6 ones, and also IPv4 ones when no IPv4 socket is registered and it is not IPV6_V6ONLY. A TCP
// socket must be listening and must not be MPTCP (create it with
// net.ListenConfig.SetMultipathTCP(false)). The kernel removes the socket from the map when its last file
// descriptor closes, so hand the same descriptors to a successor process to steer across restarts.
func (s *Steering) RegisterSocket(dest string, c syscall.Conn) error {
	if err := validDest(dest); err != nil {
		return err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("socket for %q: %w", dest, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, err := s.dests()
	if err != nil {
		return err
	}
	id, err := s.destID(ids, dest)
	if err != nil {
		return err
	}
	var regErr error
	cerr := rc.Control(func(fd uintptr) {
		regErr = s.register(dest, id, int(fd))
	})
	if cerr != nil {
		return fmt.Errorf("socket for %q: %w", dest, cerr)
	}
	return regErr
}

func (s *Steering) register(dest string, id uint32, fd int) error {
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("socket for %q: reading its family: %w", dest, err)
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return fmt.Errorf("socket for %q: reading its protocol: %w", dest, err)
	}
	var slot uint32
	switch domain {
	case unix.AF_INET:
		slot = 2 * id
	case unix.AF_INET6:
		slot = 2*id + 1
	default:
		return fmt.Errorf("socket for %q: family %d is neither IPv4 nor IPv6", dest, domain)
	}
	switch proto {
	case ipprotoMPTCP:
		return fmt.Errorf("socket for %q is MPTCP, which sk_lookup cannot steer to: create the listener with net.ListenConfig.SetMultipathTCP(false)", dest)
	case ipprotoTCP:
		listening, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		if err != nil {
			return fmt.Errorf("socket for %q: %w", dest, err)
		}
		if listening == 0 {
			return fmt.Errorf("socket for %q is not listening: register the listener, not a connection", dest)
		}
	case ipprotoUDP:
	default:
		return fmt.Errorf("socket for %q: protocol %d is neither TCP nor UDP", dest, proto)
	}
	// The same socket registered again (a successor re-registering the
	// listener it inherited): leave the entry alone. Replacing a socket with
	// itself tears its psock down and up, and a connection arriving in that
	// instant is reset.
	if cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); err == nil {
		var cur uint64
		if s.objs.SteerSockets.Lookup(slot, &cur) == nil && cur == cookie {
			return nil
		}
	}
	if err := s.objs.SteerSockets.Update(slot, uint64(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("registering socket for %q: %w", dest, permission(err))
	}
	return nil
}

// UnregisterSocket removes dest's sockets from the socket map: its bindings then refuse connections
// until a socket is registered again.
func (s *Steering) UnregisterSocket(dest string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, err := s.dests()
	if err != nil {
		return err
	}
	id, ok := ids[dest]
	if !ok {
		return fmt.Errorf("destination %q: %w", dest, ErrNotFound)
	}
	for _, slot := range []uint32{2 * id, 2*id + 1} {
		if err := s.deleteSocket(slot); err != nil {
			return fmt.Errorf("unregistering socket for %q: %w", dest, err)
		}
	}
	return nil
}

// Bindings returns the bindings the kernel holds, sorted by destination, port and prefix, each with
// whether its destination has sockets.
func (s *Steering) Bindings() ([]BindingState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, err := s.dests()
	if err != nil {
		return nil, err
	}
	names := make(map[uint32]string, len(ids))
	for n, id := range ids {
		names[id] = n
	}
	var (
		k   steerKey
		v   steerValue
		out []BindingState
	)
	it := s.objs.SteerBindings.Iterate()
	for it.Next(&k, &v) {
		b := bindingFromKey(k)
		b.Dest = names[v.DestID]
		if b.Dest == "" {
			b.Dest = fmt.Sprintf("id:%d", v.DestID)
		}
		out = append(out, BindingState{Binding: b, IPv4Socket: s.hasSocket(2 * v.DestID), IPv6Socket: s.hasSocket(2*v.DestID + 1)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading bindings: %w", err)
	}
	slices.SortFunc(out, func(a, b BindingState) int {
		switch {
		case a.Dest != b.Dest:
			return cmp.Compare(a.Dest, b.Dest)
		case a.Port != b.Port:
			return int(a.Port) - int(b.Port)
		case a.Proto != b.Proto:
			return cmp.Compare(a.Proto, b.Proto)
		}
		return cmp.Compare(a.Prefix.String(), b.Prefix.String())
	})
	return out, nil
}

// Stats returns the counters summed over CPUs.
func (s *Steering) Stats() (SteerStats, error) {
	var sums [steerCounterMax]uint64
	for i := range sums {
		var per []uint64
		if err := s.objs.SteerCounters.Lookup(uint32(i), &per); err != nil {
			return SteerStats{}, fmt.Errorf("reading steering counters: %w", err)
		}
		for _, v := range per {
			sums[i] += v
		}
	}
	return SteerStats{Lookups: sums[0], Steered: sums[1], Misses: sums[2], Errors: sums[3]}, nil
}
