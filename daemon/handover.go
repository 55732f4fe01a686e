package daemon

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Listening sockets outlive a restart: under systemd each one is stored in
// the service's file-descriptor store (FDSTORE=1, FDNAME=sg-<name>) and given
// back to the next process in $LISTEN_FDS, so a restart refuses no
// connection: the kernel keeps queueing them on the same socket, which stays
// in the steering SOCKMAP the whole time.

const listenFDsStart = 3

// inheritedFiles returns the sockets passed by systemd (LISTEN_PID,
// LISTEN_FDS, LISTEN_FDNAMES) or by a predecessor, keyed by name.
func inheritedFiles() map[string]*os.File {
	out := make(map[string]*os.File)
	if pid, err := strconv.Atoi(os.Getenv("LISTEN_PID")); err != nil || pid != os.Getpid() {
		return out
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return out
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	for i := 0; i < n; i++ {
		fd := listenFDsStart + i
		syscall.CloseOnExec(fd)
		name := "fd" + strconv.Itoa(fd)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		out[name] = os.NewFile(uintptr(fd), name)
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	return out
}

// openListener takes over an inherited socket of this name when one with
// the same address was passed in, else binds a new one.
func (d *Daemon) openListener(name, addr string) (net.Listener, error) {
	if f, ok := d.inherited[name]; ok {
		delete(d.inherited, name)
		ln, err := net.FileListener(f)
		f.Close()
		if err == nil && sameAddr(ln.Addr(), addr) {
			d.log.Info("took over listening socket from predecessor", "listener", name, "addr", addr)
			return ln, nil
		}
		if err == nil {
			ln.Close()
		}
	}
	if ln, ok := d.takeHandover(name, addr); ok {
		return ln, nil
	}
	return listenTCP(addr)
}

func sameAddr(a net.Addr, want string) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	wa, err := net.ResolveTCPAddr("tcp", want)
	if err != nil {
		return false
	}
	return ta.Port == wa.Port && (ta.IP.Equal(wa.IP) || (ta.IP.IsUnspecified() && wa.IP.IsUnspecified()))
}

// rememberListener stores the socket in systemd's fd store.
func (d *Daemon) rememberListener(name, addr string, ln net.Listener) {
	if !d.notify.enabled() {
		return
	}
	err := withListenerFDs([]net.Listener{ln}, func(fds []int) error {
		return d.notify.send("FDSTORE=1\nFDNAME="+name, fds...)
	})
	if err != nil {
		d.log.Warn("listening socket not stored for restart", "listener", name, "err", err)
	}
}

// forgetListener removes a socket from the fd store.
func (d *Daemon) forgetListener(name string) {
	if d.notify.enabled() {
		d.notify.send("FDSTOREREMOVE=1\nFDNAME=" + name)
	}
}

// withListenerFDs calls fn with the listeners' own descriptors. It uses
// SyscallConn rather than File().Fd(): Fd would switch the shared file
// description to blocking mode and wedge the accept loop.
func withListenerFDs(lns []net.Listener, fn func(fds []int) error) error {
	var fds []int
	var raws []syscall.RawConn
	for _, ln := range lns {
		sc, ok := ln.(syscall.Conn)
		if !ok {
			return fmt.Errorf("listener %T has no file descriptor", ln)
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return err
		}
		raws = append(raws, raw)
	}
	// Nest Control calls so every descriptor stays valid while fn runs.
	var run func(i int) error
	run = func(i int) error {
		if i == len(raws) {
			return fn(fds)
		}
		var ferr error
		if err := raws[i].Control(func(fd uintptr) {
			fds = append(fds, int(fd))
			ferr = run(i + 1)
		}); err != nil {
			return err
		}
		return ferr
	}
	return run(0)
}
