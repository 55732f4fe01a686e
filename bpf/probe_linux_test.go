package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/sealgate/sealgate/bpf/internal/netnstest"
	"golang.org/x/sys/unix"
)

func TestProbe(t *testing.T) {
	netnstest.Privileged(t)
	if err := Probe(); err != nil {
		t.Fatalf("Probe as root on %s: %v", kernelRelease(t), err)
	}
}

// TestVerifier loads every program of both objects into the running kernel, without pins or links.
func TestVerifier(t *testing.T) {
	netnstest.Privileged(t)
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){"steer": loadSteer, "guard": loadGuard} {
		t.Run(name, func(t *testing.T) {
			spec, err := load()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range spec.Maps {
				m.Pinning = ebpf.PinNone
			}
			coll, err := ebpf.NewCollection(spec)
			if err != nil {
				t.Fatalf("the verifier refused %s on %s: %+v", name, kernelRelease(t), err)
			}
			defer coll.Close()
			if len(coll.Programs) != len(spec.Programs) {
				t.Fatalf("loaded %d of %d programs", len(coll.Programs), len(spec.Programs))
			}
		})
	}
}

func kernelRelease(t *testing.T) string {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown kernel"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}
