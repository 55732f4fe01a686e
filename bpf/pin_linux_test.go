package bpf

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// TestPinningAcrossRestart closes and re-opens the guard and steering as a restarting daemon would:
// the guard stays attached and steering keeps working while nothing is open, the maps are reused (a
// blocklist entry and the bindings survive), a second opener is refused, and Cleanup removes it all.
func TestPinningAcrossRestart(t *testing.T) {
	v := newVethPair(t)
	opts := Options{BPFFS: v.bpffs, NetNS: v.host.Path}
	blocked := netip.MustParsePrefix("203.0.113.0/24")

	var engine, other *net.TCPListener
	if err := v.host.Do(func() error {
		engine = listenTCP(t, "tcp4", "127.0.0.1:0")
		other = listenTCP(t, "tcp4", "127.0.0.1:8080")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	serveName(engine, "engine")
	serveName(other, "other")
	reach := func() string {
		t.Helper()
		var got string
		_ = v.host.Do(func() error { got, _ = whoAnswers("127.0.0.1:8080"); return nil })
		return got
	}

	// First run.
	g, err := OpenGuard(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Attach("sgh0", ModeGeneric); err != nil {
		t.Fatal(err)
	}
	if err := g.Block(blocked, time.Hour); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSteering(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetBindings([]Binding{{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Port: 8080, Dest: "api"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterSocket("api", engine); err != nil {
		t.Fatal(err)
	}

	if _, err := OpenGuard(opts); !errors.Is(err, ErrLocked) {
		t.Errorf("second OpenGuard: %v, want ErrLocked", err)
	}
	if _, err := OpenSteering(opts); !errors.Is(err, ErrLocked) {
		t.Errorf("second OpenSteering: %v, want ErrLocked", err)
	}
	if err := Cleanup(opts); !errors.Is(err, ErrLocked) {
		t.Errorf("Cleanup while open: %v, want ErrLocked", err)
	}
	firstLink := g.Attachments()[0]

	// The daemon is gone: nothing open, the state is pinned.
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := reach(); got != "engine" {
		t.Errorf("with no daemon running the steered port reached %q, want engine", got)
	}
	if x := xdpOn(t, v, "sgh0"); x == 0 {
		t.Error("the guard left sgh0 when the daemon closed")
	}

	// Second run.
	g, err = OpenGuard(opts)
	if err != nil {
		t.Fatal(err)
	}
	bl, err := g.Blocked()
	if err != nil || len(bl) != 1 || bl[0].Prefix != blocked || time.Until(bl[0].Expires) < 59*time.Minute {
		t.Errorf("Blocked() after restart = %v, %v; want %s for about an hour", bl, err, blocked)
	}
	as := g.Attachments()
	if len(as) != 1 || !as[0].Attached || as[0].Ifindex != firstLink.Ifindex || as[0].Mode != ModeGeneric {
		t.Errorf("Attachments() after restart = %+v, want sgh0 in generic mode as before (%+v)", as, firstLink)
	}
	s, err = OpenSteering(opts)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := s.Bindings()
	if err != nil || len(bs) != 1 || bs[0].Dest != "api" || !bs[0].IPv4Socket || bs[0].IPv6Socket {
		t.Errorf("Bindings() after restart = %+v, %v; want api with its IPv4 socket", bs, err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Cleanup detaches everything and removes the pins.
	if err := Cleanup(opts); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	// The kernel releases an unpinned link's attachment asynchronously
	// (the sk_lookup program as well as the XDP one).
	got := reach()
	for i := 0; i < 100 && got != "other"; i++ {
		time.Sleep(20 * time.Millisecond)
		got = reach()
	}
	if got != "other" {
		t.Errorf("2 s after Cleanup the port reached %q, want the server bound there (other)", got)
	}
	x := xdpOn(t, v, "sgh0")
	for i := 0; i < 100 && x != 0; i++ {
		time.Sleep(20 * time.Millisecond)
		x = xdpOn(t, v, "sgh0")
	}
	if x != 0 {
		t.Errorf("program %d still on sgh0 2s after Cleanup", x)
	}
	if _, err := os.Stat(filepath.Join(v.bpffs, "sealgate")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory left after Cleanup: %v", err)
	}
	if err := Cleanup(opts); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}

func xdpOn(t *testing.T, v *vethPair, iface string) uint32 {
	t.Helper()
	l, err := v.host.Handle(t).LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId
	}
	return 0
}

// TestPinnedLinkUpdate checks that a pinned link is moved to a changed program in place (same link,
// new program), as after an upgrade.
func TestPinnedLinkUpdate(t *testing.T) {
	v := newVethPair(t)
	g, err := OpenGuard(Options{BPFFS: v.bpffs, NetNS: v.host.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Attach("sgh0", ModeAuto); err != nil {
		t.Fatal(err)
	}
	pin := g.dir.file(pinName(xdpPinPrefix, "sgh0"))
	before := linkInfo(t, pin)

	spec, err := loadGuard()
	if err != nil {
		t.Fatal(err)
	}
	ps := spec.Programs["guard"]
	// A no-op after the first instruction (which carries the function's BTF info); no jump crosses it.
	ps.Instructions = slices.Insert(ps.Instructions, 1, asm.Mov.Reg(asm.R1, asm.R1))
	var objs guardObjects
	if err := loadPinned(spec, &objs, g.dir, g.log); err != nil {
		t.Fatalf("loading a changed program: %v", err)
	}
	defer objs.Close()
	noAttach := func() (link.Link, error) { return nil, errors.New("attach must not be called: the pin is valid") }
	valid := func(*link.Info) bool { return true }
	l, err := attachPinned(pin, objs.Guard, valid, noAttach, g.log)
	if err != nil {
		t.Fatalf("attachPinned: %v", err)
	}
	defer l.Close()
	after := linkInfo(t, pin)
	newInfo, _ := objs.Guard.Info()
	newID, _ := newInfo.ID()
	if after.ID != before.ID || after.Program != newID || after.Program == before.Program {
		t.Errorf("link %d → %d, program %d → %d; want the same link moved to program %d", before.ID, after.ID, before.Program, after.Program, newID)
	}
}

func linkInfo(t *testing.T, pin string) *link.Info {
	t.Helper()
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestIncompatiblePinnedMap replaces a pinned map whose layout changed, and logs it.
func TestIncompatiblePinnedMap(t *testing.T) {
	ns := newNS(t)
	bpffs := testBPFFS(t)
	ino, err := netnsInode(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(bpffs, "sealgate", strconv.FormatUint(ino, 10), "guard")
	if err := ensureBPFFS(bpffs); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: "guard_ports", Type: ebpf.Hash, KeySize: 4, ValueSize: 1, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(filepath.Join(dir, "guard_ports")); err != nil {
		t.Fatal(err)
	}
	old.Close()
	var logs logBuffer
	g, err := OpenGuard(Options{BPFFS: bpffs, NetNS: ns.Path, Logger: logs.logger()})
	if err != nil {
		t.Fatalf("OpenGuard over an old map: %v", err)
	}
	defer g.Close()
	if err := g.SetProtectedPorts([]uint16{443}); err != nil {
		t.Fatal(err)
	}
	if !logs.contains("old layout") || !logs.contains("guard_ports") {
		t.Errorf("no log line about replacing guard_ports:\n%s", logs.String())
	}
}

// TestLockWait: a successor waiting with LockWait gets the state as soon as its predecessor closes.
func TestLockWait(t *testing.T) {
	ns := newNS(t)
	opts := Options{BPFFS: testBPFFS(t), NetNS: ns.Path}
	first, err := OpenSteering(opts)
	if err != nil {
		t.Fatal(err)
	}
	var closing atomic.Bool
	go func() {
		time.Sleep(200 * time.Millisecond)
		closing.Store(true)
		first.Close()
	}()
	opts.LockWait = 10 * time.Second
	second, err := OpenSteering(opts)
	if err != nil {
		t.Fatalf("OpenSteering with LockWait: %v", err)
	}
	defer second.Close()
	if !closing.Load() {
		t.Fatal("the successor opened before the predecessor released the lock")
	}
}
