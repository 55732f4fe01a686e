package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
)

// Probe reports whether steering and the guard can work here: nil, or an error whose text tells the
// user why not and what to do. It wraps ErrPermission for missing privileges and ErrNotSupported for a
// kernel that lacks sk_lookup or XDP.
func Probe() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising the memlock limit: %w", permission(err))
	}
	for _, pt := range []struct {
		t    ebpf.ProgramType
		what string
	}{{ebpf.SkLookup, "steering needs sk_lookup (Linux 5.9 or later)"}, {ebpf.XDP, "the guard needs XDP"}} {
		err := features.HaveProgramType(pt.t)
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			return fmt.Errorf("%w: %s", ErrNotSupported, pt.what)
		default:
			return fmt.Errorf("probing %s: %w", pt.t, permission(err))
		}
	}
	return nil
}
