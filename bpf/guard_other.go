//go:build !linux

package bpf

import (
	"context"
	"net/netip"
	"time"
)

// Guard is the loaded XDP guard of one network namespace; on this OS it cannot be opened.
type Guard struct{}

// OpenGuard returns ErrNotSupported on systems other than Linux.
func OpenGuard(Options) (*Guard, error) { return nil, ErrNotSupported }

// Close does nothing on systems other than Linux.
func (g *Guard) Close() error { return nil }

// Attach returns ErrNotSupported on systems other than Linux.
func (g *Guard) Attach(string, string) (Attachment, error) { return Attachment{}, ErrNotSupported }

// Detach returns ErrNotSupported on systems other than Linux.
func (g *Guard) Detach(string) error { return ErrNotSupported }

// Attachments returns nothing on systems other than Linux.
func (g *Guard) Attachments() []Attachment { return nil }

// SetProtectedPorts returns ErrNotSupported on systems other than Linux.
func (g *Guard) SetProtectedPorts([]uint16) error { return ErrNotSupported }

// SetRate returns ErrNotSupported on systems other than Linux.
func (g *Guard) SetRate(string, uint32, uint32) error { return ErrNotSupported }

// Block returns ErrNotSupported on systems other than Linux.
func (g *Guard) Block(netip.Prefix, time.Duration) error { return ErrNotSupported }

// Unblock returns ErrNotSupported on systems other than Linux.
func (g *Guard) Unblock(netip.Prefix) error { return ErrNotSupported }

// Blocked returns ErrNotSupported on systems other than Linux.
func (g *Guard) Blocked() ([]BlockEntry, error) { return nil, ErrNotSupported }

// Stats returns ErrNotSupported on systems other than Linux.
func (g *Guard) Stats() ([]GuardCounter, error) { return nil, ErrNotSupported }

// Watch returns ErrNotSupported on systems other than Linux.
func (g *Guard) Watch(context.Context) error { return ErrNotSupported }
