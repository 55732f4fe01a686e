package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Without systemd, a new sealgate takes the listening sockets of the running
// one over a unix socket in the state directory: it connects, the old process
// sends every listening socket with SCM_RIGHTS and then drains and exits,
// while the new one already accepts on the same sockets. Nothing is refused:
// the sockets never close.

func handoverPath(stateDir string) string { return filepath.Join(stateDir, "handover.sock") }

type handoverMsg struct {
	Names []string `json:"names"`
	Addrs []string `json:"addrs"`
}

// serveHandover listens for a successor. When one asks, it gets the sockets
// and this daemon shuts down.
func (d *Daemon) serveHandover(stateDir string) {
	path := handoverPath(stateDir)
	os.Remove(path)
	old := umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	umask(old)
	if err != nil {
		d.log.Warn("handover socket unavailable; restarts outside systemd will rebind", "err", err)
		return
	}
	d.mu.Lock()
	d.handoverLn = ln
	d.mu.Unlock()
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			if uid, _, err := peerCred(c); err != nil || (uid != 0 && uid != uint32(os.Getuid())) {
				c.Close()
				continue
			}
			if err := d.giveListeners(c); err != nil {
				d.log.Warn("handover failed", "err", err)
				c.Close()
				continue
			}
			c.Close()
			d.log.Info("listening sockets handed to successor; draining")
			d.handedOver <- struct{}{}
			return
		}
	}()
}

func (d *Daemon) giveListeners(c *net.UnixConn) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var msg handoverMsg
	var lns []net.Listener
	d.mu.Lock()
	for _, bl := range d.listeners {
		for _, s := range bl.socks {
			lns = append(lns, s.ln)
			msg.Names = append(msg.Names, s.name)
			msg.Addrs = append(msg.Addrs, s.addr)
		}
	}
	d.mu.Unlock()
	b, _ := json.Marshal(msg)
	return withListenerFDs(lns, func(fds []int) error {
		_, _, err := c.WriteMsgUnix(b, unix.UnixRights(fds...), nil)
		return err
	})
}

// fetchHandover asks a running predecessor for its sockets. It returns none
// when there is no predecessor.
func fetchHandover(stateDir string) (map[string]net.Listener, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: handoverPath(stateDir), Net: "unix"})
	if err != nil {
		return nil, nil
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*256))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("reading handover: %w", err)
	}
	var msg handoverMsg
	if err := json.Unmarshal(buf[:n], &msg); err != nil {
		return nil, fmt.Errorf("handover message: %w", err)
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cmsgs) == 0 {
		return nil, errors.New("handover carried no sockets")
	}
	fds, err := unix.ParseUnixRights(&cmsgs[0])
	if err != nil {
		return nil, fmt.Errorf("handover sockets: %w", err)
	}
	out := make(map[string]net.Listener)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "handover")
		if i >= len(msg.Names) {
			f.Close()
			continue
		}
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			continue
		}
		out[msg.Names[i]+"\x00"+msg.Addrs[i]] = ln
	}
	return out, nil
}

// takeHandover returns the predecessor's socket for this listener, if any.
func (d *Daemon) takeHandover(name, addr string) (net.Listener, bool) {
	ln, ok := d.handedIn[name+"\x00"+addr]
	if ok {
		delete(d.handedIn, name+"\x00"+addr)
		d.log.Info("took over listening socket from predecessor", "listener", name, "addr", addr)
	}
	return ln, ok
}

func (d *Daemon) stopHandover() {
	d.mu.Lock()
	ln := d.handoverLn
	d.handoverLn = nil
	d.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for k, ln := range d.handedIn {
		ln.Close()
		delete(d.handedIn, k)
	}
}
