package daemon

import (
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// notifier writes sd_notify(3) datagrams to $NOTIFY_SOCKET. It is a no-op
// when the variable is unset (not run by systemd).
type notifier struct {
	addr string
}

func newNotifier() *notifier {
	return &notifier{addr: os.Getenv("NOTIFY_SOCKET")}
}

func (n *notifier) enabled() bool { return n != nil && n.addr != "" }

func (n *notifier) socketName() string {
	if n.addr[0] == '@' { // abstract namespace
		return "\x00" + n.addr[1:]
	}
	return n.addr
}

// reloading tells systemd a reload began (Type=notify-reload protocol).
func (n *notifier) reloading() error {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	usec := ts.Sec*1e6 + ts.Nsec/1e3
	return n.send("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(usec, 10))
}

// watchdogInterval returns half of WATCHDOG_USEC when the watchdog is meant
// for this process, else 0.
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}
