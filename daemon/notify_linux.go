package daemon

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// send writes one state string ("READY=1", "STOPPING=1", ...), with fds
// attached as SCM_RIGHTS when given (FDSTORE=1).
func (n *notifier) send(state string, fds ...int) error {
	if !n.enabled() {
		return nil
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer unix.Close(sock)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(sock, []byte(state), oob, &unix.SockaddrUnix{Name: n.socketName()}, 0); err != nil {
		return fmt.Errorf("sd_notify %q: %w", strings.SplitN(state, "\n", 2)[0], err)
	}
	return nil
}
