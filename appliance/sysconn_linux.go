package appliance

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// sysConn is a TCP connection whose reads and writes enter the kernel
// without the runtime's system-call bookkeeping (entersyscall and
// exitsyscall, which net.TCPConn's Read and Write go through).
//
// Why: while a goroutine is in a system call made that way, the runtime
// counts its P as free to take, and once the call has lasted a monitor
// tick (20 µs) the monitor hands the P to another thread. A write on
// loopback runs the receiver's TCP input and wakes it, and often lasts that
// long; then the thread that made it comes back without a P and sleeps, and
// the other one runs. Under scenario 2's load the engine switched threads
// three times as often as nginx (0.34 context switches per request against
// 0.11, with GOMAXPROCS=1) and spent about 9 % of its CPU on it. Reads and
// writes of a non-blocking socket never wait in the kernel (a socket with
// nothing to read, or no room to write, answers EAGAIN at once), so they
// are made with syscall.RawSyscall: the thread keeps its P for the few
// microseconds the kernel works, and waits for readiness go through the
// runtime's poller as before (syscall.RawConn), deadlines included.
//
// The cost: a garbage collection that must stop the world waits for such
// a call to return, as for any stretch of code without a safe point; these
// calls do not block, so the wait is the kernel's copying time.
type sysConn struct {
	net.Conn // a *net.TCPConn
	rc       syscall.RawConn

	// One read and one write at a time (TLS and the HTTP servers never
	// overlap two of either); their arguments and results live here, so
	// the functions handed to RawConn are made once per connection, not a
	// closure per call.
	rmu, wmu       sync.Mutex
	rbuf, wbuf     []byte
	rn, wn         int
	rerrno, werrno syscall.Errno
	readFn         func(fd uintptr) bool
	writeFn        func(fd uintptr) bool

	// ahead is a request the next Read writes before it waits for the
	// reply (sendWithRead); aheadErr is that write's failure.
	ahead    []byte
	aheadErr syscall.Errno
}

// newSysConn wraps c when it offers its file descriptor, and returns c
// otherwise.
func newSysConn(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	s := &sysConn{Conn: c, rc: rc}
	s.readFn, s.writeFn = s.read, s.write
	return s
}

// sendWithRead hands p to the next Read, which writes it and then waits
// for the reply, all within one wait registration: an exchange (write a
// request, read its response) costs a write and a read, where a write then
// a Read costs one more read, the one that finds nothing yet and sends the
// goroutine to the poller. Waiting without that read is safe only from
// inside the read registration (RawConn.Read clears the readiness it saw
// before calling back), so the write is made there.
//
// p must stay unchanged until that Read returns; one goroutine does both,
// as the upstream pool's exchange does. Part of p that does not fit the
// socket's buffer is written by Read as Write would, waiting for room.
func (c *sysConn) sendWithRead(p []byte) {
	c.ahead = p
}

func (c *sysConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerrno, c.aheadErr = p, 0, 0, 0
	err := c.rc.Read(c.readFn)
	var werr error
	if err == nil && c.aheadErr == 0 && len(c.ahead) > 0 {
		// The socket's buffer is full: the rest waits for room as any
		// write, then the reply as any read.
		rest := c.ahead
		c.ahead = nil
		if _, werr = c.Write(rest); werr == nil {
			err = c.rc.Read(c.readFn)
		}
	}
	n, errno, aheadErr := c.rn, c.rerrno, c.aheadErr
	c.rbuf, c.ahead = nil, nil
	switch {
	case werr != nil:
		return 0, werr
	case aheadErr != 0:
		return 0, c.opError("write", os.NewSyscallError("write", aheadErr))
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is RawConn's callback for Read: false sends it to wait for the
// poller and call again. A request handed to sendWithRead is written
// first; once it is all out, the reply cannot be there yet, so it waits.
func (c *sysConn) read(fd uintptr) bool {
	if len(c.ahead) > 0 {
		return !c.writeAhead(fd)
	}
	p := c.rbuf
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			c.rn = int(r)
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.rerrno = e
			return true
		}
	}
}

func (c *sysConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werrno
	c.wbuf = nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// write is RawConn's callback for Write; it resumes where a wait for
// room stopped it.
func (c *sysConn) write(fd uintptr) bool {
	p := c.wbuf
	for c.wn < len(p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[c.wn])), uintptr(len(p)-c.wn))
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// writeAhead writes what is left of c.ahead and reports whether it all
// went out; when it did not, Read finishes it (no room) or reports
// aheadErr.
func (c *sysConn) writeAhead(fd uintptr) bool {
	for len(c.ahead) > 0 {
		p := c.ahead
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			c.ahead = p[r:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.aheadErr = e
			c.ahead = nil
			return false
		}
	}
	return true
}

// opError reports err as net.TCPConn's Read and Write do: a *net.OpError
// (a deadline's is a timeout, a closed connection's wraps net.ErrClosed).
func (c *sysConn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err // RawConn's own, with op "raw-read"/"raw-write"
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// CloseWrite shuts down the sending side (the lingering close after a
// GOAWAY uses it).
func (c *sysConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
