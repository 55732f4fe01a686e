//go:build !linux

package bpf

import "syscall"

// Steering is the loaded sk_lookup program of one network namespace; on this OS it cannot be opened.
type Steering struct{}

// OpenSteering returns ErrNotSupported on systems other than Linux.
func OpenSteering(Options) (*Steering, error) { return nil, ErrNotSupported }

// Close does nothing on systems other than Linux.
func (s *Steering) Close() error { return nil }

// SetBindings returns ErrNotSupported on systems other than Linux.
func (s *Steering) SetBindings([]Binding) error { return ErrNotSupported }

// RegisterSocket returns ErrNotSupported on systems other than Linux.
func (s *Steering) RegisterSocket(string, syscall.Conn) error { return ErrNotSupported }

// UnregisterSocket returns ErrNotSupported on systems other than Linux.
func (s *Steering) UnregisterSocket(string) error { return ErrNotSupported }

// Bindings returns ErrNotSupported on systems other than Linux.
func (s *Steering) Bindings() ([]BindingState, error) { return nil, ErrNotSupported }

// Stats returns ErrNotSupported on systems other than Linux.
func (s *Steering) Stats() (SteerStats, error) { return SteerStats{}, ErrNotSupported }

// Probe returns ErrNotSupported on systems other than Linux.
func Probe() error { return ErrNotSupported }

// ProbeSteering returns ErrNotSupported on systems other than Linux.
func ProbeSteering() error { return ErrNotSupported }

// ProbeGuard returns ErrNotSupported on systems other than Linux.
func ProbeGuard() error { return ErrNotSupported }

// Cleanup returns ErrNotSupported on systems other than Linux.
func Cleanup(Options) error { return ErrNotSupported }
