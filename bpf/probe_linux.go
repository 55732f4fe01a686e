package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
)

// Probe reports whether both steering and the guard can work here: nil, or an error whose text tells
// the user why not and what to do. It wraps ErrPermission for missing privileges and ErrNotSupported
// for a kernel that lacks sk_lookup or XDP.
func Probe() error {
	if err := ProbeSteering(); err != nil {
		return err
	}
	return ProbeGuard()
}

// ProbeSteering is Probe for steering alone (sk_lookup, Linux 5.9 or later).
func ProbeSteering() error {
	return probe(ebpf.SkLookup, "steering needs sk_lookup programs (Linux 5.9 or later)")
}

// ProbeGuard is Probe for the guard alone (XDP).
func ProbeGuard() error {
	return probe(ebpf.XDP, "the guard needs XDP programs")
}

func probe(pt ebpf.ProgramType, what string) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising the memlock limit: %w", permission(err))
	}
	err := features.HaveProgramType(pt)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: %s", ErrNotSupported, what)
	}
	return fmt.Errorf("probing %s support: %w", pt, permission(err))
}
