//go:build !linux

package daemon

// send is a no-op off Linux: there is no systemd to notify.
func (n *notifier) send(state string, fds ...int) error { return nil }
