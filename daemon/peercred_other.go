//go:build !linux

package daemon

import (
	"errors"
	"net"
)

// peerCred is not supported off Linux: every peer is read-only.
func peerCred(net.Conn) (uid, gid uint32, err error) {
	return 0, 0, errors.New("peer credentials: not supported on this OS")
}
