package bpf

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// pinDir is one locked directory of pinned objects: <bpffs>/sealgate/<netns-inode>/<sub>.
type pinDir struct {
	path string
	lock *os.File
}

// openPinDir mounts bpffs when needed, creates the directory and takes its lock without waiting.
func openPinDir(bpffs string, nsIno uint64, sub string, wait time.Duration) (*pinDir, error) {
	if err := ensureBPFFS(bpffs); err != nil {
		return nil, err
	}
	path := filepath.Join(bpffs, "sealgate", strconv.FormatUint(nsIno, 10), sub)
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("creating pin directory %s: %w", path, permission(err))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening pin directory %s: %w", path, permission(err))
	}
	deadline := time.Now().Add(wait)
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s is locked; stop the other daemon or give this one another daemon.bpffs)", ErrLocked, path)
		}
		return nil, fmt.Errorf("locking pin directory %s: %w", path, err)
	}
	return &pinDir{path: path, lock: f}, nil
}

func (d *pinDir) file(name string) string { return filepath.Join(d.path, name) }

// Close releases the lock; the pins stay.
func (d *pinDir) Close() error {
	if d == nil || d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}

// ensureBPFFS mounts bpffs at path unless it is mounted there already.
func ensureBPFFS(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("checking bpffs at %s: %w", path, permission(err))
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("creating bpffs mount point %s: %w", path, permission(err))
	}
	if err := unix.Mount("bpffs", path, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting bpffs at %s: %w", path, permission(err))
	}
	return nil
}

// netnsInode returns the inode of the network namespace at path ("" = the calling thread's).
func netnsInode(path string) (uint64, error) {
	if path == "" {
		path = "/proc/thread-self/ns/net"
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("reading network namespace %s: %w", path, err)
	}
	return st.Ino, nil
}

// permission wraps EPERM and EACCES in ErrPermission so the message says what to do.
func permission(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %w", ErrPermission, err)
	}
	return err
}

// loadPinned loads spec into objs, reusing the maps pinned in dir. A pinned map whose layout no longer
// matches the program (after an upgrade that changed it) is replaced, losing its entries, and logged.
func loadPinned(spec *ebpf.CollectionSpec, objs any, dir *pinDir, log *slog.Logger) error {
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir.path}}
	err := spec.LoadAndAssign(objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		for name, ms := range spec.Maps {
			if ms.Pinning != ebpf.PinByName {
				continue
			}
			m, lerr := ebpf.LoadPinnedMap(dir.file(name), nil)
			if lerr != nil {
				continue
			}
			if cerr := ms.Compatible(m); cerr != nil {
				log.Warn("pinned map has an old layout; replacing it, its entries are lost", "map", name, "reason", cerr.Error())
				_ = m.Unpin()
			}
			m.Close()
		}
		err = spec.LoadAndAssign(objs, opts)
	}
	if err != nil {
		return loadError(err)
	}
	return nil
}

func loadError(err error) error {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return fmt.Errorf("the kernel's verifier refused the program (kernel too old or unusual; report it with `uname -r`): %w", err)
	}
	return permission(err)
}

// attachPinned reuses the link pinned at path when valid(link) accepts it, moving it to prog with an
// atomic link.Update when the program changed; otherwise it creates a link with attach and pins it.
func attachPinned(path string, prog *ebpf.Program, valid func(*link.Info) bool, attach func() (link.Link, error), log *slog.Logger) (link.Link, error) {
	l, err := link.LoadPinnedLink(path, nil)
	switch {
	case err == nil:
		info, ierr := l.Info()
		if ierr == nil && valid(info) {
			if err := updateIfChanged(l, info, prog, log); err != nil {
				l.Close()
				return nil, err
			}
			return l, nil
		}
		log.Info("pinned link is stale; attaching anew", "pin", path)
		_ = l.Unpin()
		l.Close()
	case !errors.Is(err, os.ErrNotExist):
		log.Warn("pinned link unreadable; attaching anew", "pin", path, "error", err.Error())
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return nil, fmt.Errorf("removing unreadable pin %s: %w", path, permission(rerr))
		}
	}
	l, err = attach()
	if err != nil {
		return nil, err
	}
	if err := l.Pin(path); err != nil {
		l.Close()
		return nil, fmt.Errorf("pinning link at %s: %w", path, permission(err))
	}
	return l, nil
}

func updateIfChanged(l link.Link, info *link.Info, prog *ebpf.Program, log *slog.Logger) error {
	pinfo, err := prog.Info()
	if err != nil {
		return fmt.Errorf("reading program info: %w", err)
	}
	if id, ok := pinfo.ID(); ok && id == info.Program {
		return nil
	}
	if old, err := ebpf.NewProgramFromID(info.Program); err == nil {
		oinfo, oerr := old.Info()
		old.Close()
		if oerr == nil && oinfo.Tag == pinfo.Tag {
			return nil
		}
	}
	if err := l.Update(prog); err != nil {
		return fmt.Errorf("replacing the program of pinned link: %w", permission(err))
	}
	log.Info("pinned link moved to the new program", "program", pinfo.Name, "tag", pinfo.Tag)
	return nil
}

// Cleanup removes everything sealgate pinned for the network namespace in opts: the steering and guard
// links (which detaches them), the maps (the blocklist and bindings are lost) and the directories. It
// refuses while a daemon holds the state (stop it first).
func Cleanup(opts Options) error {
	ino, err := netnsInode(opts.NetNS)
	if err != nil {
		return err
	}
	root := filepath.Join(opts.bpffs(), "sealgate")
	base := filepath.Join(root, strconv.FormatUint(ino, 10))
	if _, err := os.Stat(base); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	for _, sub := range []string{"steer", "guard"} {
		d, err := openPinDir(opts.bpffs(), ino, sub, opts.LockWait)
		if err != nil {
			return fmt.Errorf("cleaning up %s: %w", sub, err)
		}
		rerr := os.RemoveAll(d.path)
		d.Close()
		if rerr != nil {
			return fmt.Errorf("removing %s: %w", d.path, permission(rerr))
		}
	}
	if err := os.Remove(base); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", base, permission(err))
	}
	// Leave root for other namespaces; remove it when it is empty.
	if entries, err := os.ReadDir(root); err == nil && len(entries) == 0 {
		_ = os.Remove(root)
	}
	return nil
}
