package systemd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/sealgate/sealgate/bpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// childSpec is what the parent test hands to the unprivileged child.
type childSpec struct {
	BPFFS string `json:"bpffs"` // a bpffs mount laid out like the host's /sys/fs/bpf
}

// opResult is the outcome of one privileged operation in the child.
type opResult struct {
	Op      string `json:"op"`
	Err     string `json:"err,omitempty"`
	Perm    bool   `json:"perm,omitempty"`    // failed with EPERM or EACCES
	Skipped string `json:"skipped,omitempty"` // a prerequisite failed
}

// childReport is the child's single line of output.
type childReport struct {
	CapEff string `json:"cap_eff"` // CapEff from /proc/self/status, hex
	UID    int    `json:"uid"`
	// ListenFDNames is $LISTEN_FDNAMES: descriptors systemd handed back from the fd store.
	ListenFDNames string     `json:"listen_fdnames,omitempty"`
	Results       []opResult `json:"results"`
}

// The operations, in order. Each names the operations it needs.
var childOps = []struct {
	name  string
	needs []string
}{
	{"bind_privileged_port", nil},
	{"netlink_link_up", nil},
	{"netlink_create_veth", []string{"netlink_link_up"}},
	{"bpf_maps", nil},
	{"sockmap", nil},
	{"load_xdp", []string{"bpf_maps"}},
	{"load_sk_lookup", []string{"sockmap"}},
	{"attach_xdp", []string{"load_xdp", "netlink_create_veth"}},
	{"attach_sk_lookup", []string{"load_sk_lookup"}},
	{"sockmap_insert_listener", []string{"sockmap", "netlink_link_up"}},
	{"steer_connection", []string{"attach_sk_lookup", "sockmap_insert_listener"}},
	{"pin_objects", []string{"bpf_maps", "attach_sk_lookup", "attach_xdp"}},
	{"reopen_pinned_map", []string{"pin_objects"}},
	// Go sizes listen() backlogs from this file; the unit must leave it readable.
	{"read_somaxconn", nil},
	// The real loaders and programs of package bpf (steer.c, guard.c), as the daemon runs them.
	{"real_steering", []string{"netlink_link_up"}},
	{"real_guard", []string{"netlink_create_veth"}},
}

// serviceOps run only when the child is started by systemd (NOTIFY_SOCKET is set): they
// check what the unit's directories and sandbox give the daemon.
var serviceOps = []struct {
	name  string
	needs []string
}{
	{"read_config", nil},
	{"write_state_dir", nil},
	{"admin_socket", nil},
	{"fdstore_listener", []string{"sockmap_insert_listener"}},
}

// childState carries objects from one operation to the next.
type childState struct {
	spec                       childSpec
	privileged, engine, admin  net.Listener
	lpm, lru, counters, sockmp *ebpf.Map
	xdp, skLookup              *ebpf.Program
	xdpLink, skLink            link.Link
	pinDir                     string
}

// capsChild runs in the re-executed test binary as an unprivileged user holding only the
// ambient capabilities the parent gave it, inside a fresh network namespace. It performs
// what the daemon does at start and prints one JSON report on stdout.
func capsChild(specJSON string) int {
	var spec childSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "capability child: bad spec: %v\n", err)
		return 2
	}
	st := &childState{spec: spec}
	report := childReport{CapEff: capEff(), UID: os.Getuid(), ListenFDNames: os.Getenv("LISTEN_FDNAMES")}
	failed := map[string]bool{}
	ops := childOps
	notify := os.Getenv("NOTIFY_SOCKET")
	if notify != "" {
		ops = append(slices.Clone(ops), serviceOps...)
	}
	for _, op := range ops {
		res := opResult{Op: op.name}
		for _, n := range op.needs {
			if failed[n] {
				res.Skipped = n
			}
		}
		if res.Skipped == "" {
			if err := st.run(op.name); err != nil {
				res.Err = err.Error()
				res.Perm = errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
			}
		}
		failed[op.name] = res.Err != "" || res.Skipped != ""
		report.Results = append(report.Results, res)
	}
	if err := json.NewEncoder(os.Stdout).Encode(report); err != nil {
		fmt.Fprintf(os.Stderr, "capability child: %v\n", err)
		return 2
	}
	if notify != "" {
		return serveUntilTerm(notify)
	}
	return 0
}

// serveUntilTerm plays the daemon's part of the systemd protocol after the operations:
// READY=1; WATCHDOG=1 at half the watchdog interval; RELOADING=1 with MONOTONIC_USEC and
// then READY=1 on SIGHUP; STOPPING=1 on SIGTERM, then exit 0.
func serveUntilTerm(notify string) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	var watchdog <-chan time.Time
	if usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
		tick := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
		defer tick.Stop()
		watchdog = tick.C
	}
	send := func(state string) bool {
		if err := sdNotify(notify, state, nil); err != nil {
			fmt.Fprintf(os.Stderr, "sd_notify %q: %v\n", state, err)
			return false
		}
		return true
	}
	if !send("READY=1\nSTATUS=capability probe done") {
		return 1
	}
	for {
		select {
		case <-watchdog:
			send("WATCHDOG=1")
		case sig := <-sigs:
			if sig == syscall.SIGTERM {
				if !send("STOPPING=1") {
					return 1
				}
				return 0
			}
			var ts unix.Timespec
			if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
				fmt.Fprintf(os.Stderr, "clock_gettime: %v\n", err)
				return 1
			}
			send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000))
			send("READY=1\nSTATUS=reloaded")
		}
	}
}

// sdNotify sends one datagram to $NOTIFY_SOCKET, with file descriptors when fds is set.
func sdNotify(socket, state string, fds []int) error {
	if strings.HasPrefix(socket, "@") {
		socket = "\x00" + socket[1:]
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	return unix.Sendmsg(fd, []byte(state), oob, &unix.SockaddrUnix{Name: socket}, 0)
}

// capEff returns the effective capability mask of this process.
func capEff() string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown: " + err.Error()
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// listenTCP listens without MPTCP: an MPTCP listener cannot go into a SOCKMAP.
func listenTCP(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp4", addr)
}

func (st *childState) run(op string) error {
	switch op {
	case "bind_privileged_port":
		l, err := listenTCP("0.0.0.0:443")
		st.privileged = l
		return err
	case "netlink_link_up":
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	case "netlink_create_veth":
		if old, err := netlink.LinkByName("sg0"); err == nil { // left by a previous run
			if err := netlink.LinkDel(old); err != nil {
				return err
			}
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sg0"}, PeerName: "sg1"}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		for _, name := range []string{"sg0", "sg1"} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
		}
		return nil
	case "bpf_maps":
		return st.makeMaps()
	case "sockmap":
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "sg_sockmap", Type: ebpf.SockMap, KeySize: 4, ValueSize: 8, MaxEntries: 4})
		st.sockmp = m
		return err
	case "load_xdp":
		p, err := ebpf.NewProgram(xdpSpec(st.lpm, st.lru, st.counters))
		st.xdp = p
		return err
	case "load_sk_lookup":
		p, err := ebpf.NewProgram(skLookupSpec(st.sockmp))
		st.skLookup = p
		return err
	case "attach_xdp":
		iface, err := net.InterfaceByName("sg0")
		if err != nil {
			return err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: st.xdp, Interface: iface.Index, Flags: link.XDPDriverMode})
		if err != nil {
			l, err = link.AttachXDP(link.XDPOptions{Program: st.xdp, Interface: iface.Index, Flags: link.XDPGenericMode})
		}
		st.xdpLink = l
		return err
	case "attach_sk_lookup":
		ns, err := os.Open("/proc/self/ns/net")
		if err != nil {
			return err
		}
		defer ns.Close()
		l, err := link.AttachNetNs(int(ns.Fd()), st.skLookup)
		st.skLink = l
		return err
	case "sockmap_insert_listener":
		l, err := engineListener()
		if err != nil {
			return err
		}
		st.engine = l
		raw, err := l.(*net.TCPListener).SyscallConn()
		if err != nil {
			return err
		}
		var putErr error
		if err := raw.Control(func(fd uintptr) { putErr = st.sockmp.Put(uint32(0), uint64(fd)) }); err != nil {
			return err
		}
		return putErr
	case "steer_connection":
		return acceptSteered(st.engine, "127.0.0.1:443")
	case "real_steering":
		return st.realSteering()
	case "real_guard":
		return st.realGuard()
	case "pin_objects":
		return st.pin()
	case "reopen_pinned_map":
		m, err := ebpf.LoadPinnedMap(filepath.Join(st.pinDir, "blocklist"), nil)
		if err != nil {
			return err
		}
		return m.Close()
	case "read_somaxconn":
		_, err := os.ReadFile("/proc/sys/net/core/somaxconn")
		return err
	case "read_config":
		_, err := os.ReadFile("/etc/sealgate/sealgate.toml")
		return err
	case "write_state_dir":
		return os.WriteFile(filepath.Join(os.Getenv("STATE_DIRECTORY"), "probe"), []byte("ok\n"), 0o600)
	case "admin_socket":
		path := filepath.Join(os.Getenv("RUNTIME_DIRECTORY"), "admin.sock")
		// RuntimeDirectoryPreserve=restart keeps the previous instance's socket file.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return err
		}
		st.admin = l
		return os.Chmod(path, 0o660)
	case "fdstore_listener":
		raw, err := st.engine.(*net.TCPListener).SyscallConn()
		if err != nil {
			return err
		}
		var sendErr error
		err = raw.Control(func(fd uintptr) {
			sendErr = sdNotify(os.Getenv("NOTIFY_SOCKET"), "FDSTORE=1\nFDNAME=engine", []int{int(fd)})
		})
		return errors.Join(err, sendErr)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// engineListener returns the listener systemd handed back from the fd store after a
// restart (LISTEN_FDS, first descriptor 3), or a new one on 127.0.0.1:8443.
func engineListener() (net.Listener, error) {
	if os.Getenv("LISTEN_FDS") == "" || os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return listenTCP("127.0.0.1:8443")
	}
	f := os.NewFile(3, "engine")
	defer f.Close()
	return net.FileListener(f)
}

// makeMaps creates the map kinds the guard uses: an LPM-trie blocklist, an LRU hash of
// token buckets and per-CPU counters. LPM trie and LRU hash need CAP_BPF.
func (st *childState) makeMaps() error {
	var err error
	if st.lpm, err = ebpf.NewMap(&ebpf.MapSpec{Name: "sg_block", Type: ebpf.LPMTrie, KeySize: 8, ValueSize: 8, MaxEntries: 64, Flags: unix.BPF_F_NO_PREALLOC}); err != nil {
		return fmt.Errorf("lpm trie: %w", err)
	}
	if st.lru, err = ebpf.NewMap(&ebpf.MapSpec{Name: "sg_buckets", Type: ebpf.LRUHash, KeySize: 4, ValueSize: 8, MaxEntries: 64}); err != nil {
		return fmt.Errorf("lru hash: %w", err)
	}
	if st.counters, err = ebpf.NewMap(&ebpf.MapSpec{Name: "sg_counters", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1}); err != nil {
		return fmt.Errorf("per-cpu array: %w", err)
	}
	return nil
}

// xdpSpec is a small guard: IPv4 source looked up in an LPM blocklist whose value is an
// expiry compared with bpf_ktime_get_ns, a per-source LRU counter and a per-CPU counter.
func xdpSpec(lpm, lru, counters *ebpf.Map) *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Name:    "sg_guard",
		Type:    ebpf.XDP,
		License: "Dual MIT/GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
			asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 34), // Ethernet + IPv4 header
			asm.JGT.Reg(asm.R4, asm.R3, "pass"),
			asm.LoadMem(asm.R5, asm.R2, 26, asm.Word), // IPv4 source
			asm.StoreImm(asm.RFP, -8, 32, asm.Word),   // LPM prefix length
			asm.StoreMem(asm.RFP, -4, asm.R5, asm.Word),
			asm.StoreMem(asm.RFP, -16, asm.R5, asm.Word),
			asm.LoadMapPtr(asm.R1, lpm.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "rate"),
			asm.LoadMem(asm.R6, asm.R0, 0, asm.DWord), // expiry
			asm.FnKtimeGetNs.Call(),
			asm.JGT.Reg(asm.R0, asm.R6, "rate"),
			asm.Mov.Imm(asm.R0, 1), // XDP_DROP
			asm.Return(),
			asm.LoadMapPtr(asm.R1, lru.FD()).WithSymbol("rate"),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -16),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "count"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.StoreImm(asm.RFP, -20, 0, asm.Word).WithSymbol("count"),
			asm.LoadMapPtr(asm.R1, counters.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -20),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "pass"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 2).WithSymbol("pass"), // XDP_PASS
			asm.Return(),
		},
	}
}

// skLookupSpec steers every TCP lookup for local port 443 to the socket in sockmap[0],
// failing closed (SK_DROP) when the slot is empty, as bpf/steer.c does.
func skLookupSpec(sockmap *ebpf.Map) *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Name:       "sg_steer",
		Type:       ebpf.SkLookup,
		AttachType: ebpf.AttachSkLookup,
		License:    "Dual MIT/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.LoadMem(asm.R2, asm.R1, 60, asm.Word), // bpf_sk_lookup.local_port
			asm.JNE.Imm(asm.R2, 443, "pass"),
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, sockmap.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "drop"),
			asm.Mov.Reg(asm.R7, asm.R0),
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Reg(asm.R2, asm.R7),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnSkAssign.Call(),
			asm.Mov.Reg(asm.R8, asm.R0),
			asm.Mov.Reg(asm.R1, asm.R7),
			asm.FnSkRelease.Call(),
			asm.JNE.Imm(asm.R8, 0, "drop"),
			asm.Ja.Label("pass"),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("drop"), // SK_DROP
			asm.Return(),
			asm.Mov.Imm(asm.R0, 1).WithSymbol("pass"), // SK_PASS
			asm.Return(),
		},
	}
}

// acceptSteered dials addr and expects l (bound to another port) to accept the connection
// with addr as its local address: sk_lookup steered it, although another socket may be
// bound to addr's port.
func acceptSteered(l net.Listener, addr string) error {
	tl := l.(*net.TCPListener)
	if err := tl.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	defer tl.SetDeadline(time.Time{})
	accepted := make(chan error, 1)
	go func() {
		c, err := tl.Accept()
		if err == nil {
			if got := c.LocalAddr().String(); got != addr {
				err = fmt.Errorf("listener accepted a connection to %s, want %s", got, addr)
			}
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dialing the steered address: %w", err)
	}
	defer c.Close()
	if err := <-accepted; err != nil {
		return fmt.Errorf("listener did not get the steered connection: %w", err)
	}
	return nil
}

// bpfOptions are the options the daemon passes to package bpf.
func (st *childState) bpfOptions() bpf.Options {
	return bpf.Options{BPFFS: st.spec.BPFFS, LockWait: 10 * time.Second}
}

// realSteering opens package bpf's steering (sk_lookup program, pinned maps and link),
// binds 127.0.0.0/8 port 9443 to a listener on 9444 and dials through it.
func (st *childState) realSteering() error {
	if err := bpf.ProbeSteering(); err != nil {
		return err
	}
	s, err := bpf.OpenSteering(st.bpfOptions())
	if err != nil {
		return err
	}
	defer s.Close()
	bs, err := bpf.SteerBindings("probe", []bpf.SteerConfig{{Prefix: "127.0.0.0/8", Ports: []int{9443}}})
	if err != nil {
		return err
	}
	if err := s.SetBindings(bs); err != nil {
		return err
	}
	l, err := listenTCP("127.0.0.1:9444")
	if err != nil {
		return err
	}
	defer l.Close()
	if err := s.RegisterSocket("probe", l.(*net.TCPListener)); err != nil {
		return err
	}
	return acceptSteered(l, "127.0.0.1:9443")
}

// realGuard opens package bpf's guard (XDP program, pinned maps), attaches it to the veth
// peer, blocks a prefix and reads the counters.
func (st *childState) realGuard() error {
	if err := bpf.ProbeGuard(); err != nil {
		return err
	}
	g, err := bpf.OpenGuard(st.bpfOptions())
	if err != nil {
		return err
	}
	defer g.Close()
	if err := g.SetProtectedPorts([]uint16{9443}); err != nil {
		return err
	}
	if _, err := g.Attach("sg1", "auto"); err != nil {
		return err
	}
	if err := g.Block(netip.MustParsePrefix("192.0.2.0/24"), time.Minute); err != nil {
		return err
	}
	if _, err := g.Stats(); err != nil {
		return err
	}
	// The daemon runs Watch for its whole life; a subscription it cannot open fails at once.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	return g.Watch(ctx)
}

// pin stores the blocklist map and both links under <bpffs>/sealgate/<netns-inode>/probe/
// (beside package bpf's steer/ and guard/), so that the next daemon instance can pick them up.
func (st *childState) pin() error {
	var ns syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &ns); err != nil {
		return err
	}
	st.pinDir = filepath.Join(st.spec.BPFFS, "sealgate", strconv.FormatUint(ns.Ino, 10), "probe")
	if err := os.MkdirAll(st.pinDir, 0o700); err != nil {
		return err
	}
	pins := []struct {
		name string
		pin  func(string) error
	}{
		{"blocklist", st.lpm.Pin},
		{"steer_link", st.skLink.Pin},
		{"guard_link_sg0", st.xdpLink.Pin},
	}
	for _, p := range pins {
		path := filepath.Join(st.pinDir, p.name)
		// A previous instance's pin (a restart under systemd) is replaced.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := p.pin(path); err != nil {
			return err
		}
	}
	return nil
}
