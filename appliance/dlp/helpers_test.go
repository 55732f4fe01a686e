package dlp

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// rec is a finding as the tests see it.
type rec struct {
	Kind Kind
	Sec  secretType
	Off  int64
}

func (r rec) String() string { return fmt.Sprintf("%s(%s)@%d", r.Kind, r.Sec, r.Off) }

type collect struct {
	out   bytes.Buffer
	finds []rec
}

func (c *collect) emit(p []byte) error { c.out.Write(p); return nil }
func (c *collect) found(k Kind, sec secretType, off int64) error {
	c.finds = append(c.finds, rec{k, sec, off})
	return nil
}

func mustCompile(t testing.TB, cfg Config) *compiled {
	t.Helper()
	cc, err := cfg.compile()
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return cc
}

// scanSplit scans body cut at the given offsets and returns the output and
// the findings in offset order.
func scanSplit(t testing.TB, cc *compiled, isJSON bool, body []byte, cuts ...int) ([]byte, []rec) {
	t.Helper()
	var h harness
	return h.scan(t, cc, isJSON, body, cuts...)
}

// harness reuses one scanner across scans.
type harness struct {
	s      scanner
	c      collect
	scalar bool // use the byte-at-a-time loop (the reference)
}

func (h *harness) scan(t testing.TB, cc *compiled, isJSON bool, body []byte, cuts ...int) ([]byte, []rec) {
	t.Helper()
	c := &h.c
	c.out.Reset()
	c.finds = c.finds[:0]
	s := &h.s
	s.reset(cc, isJSON, c, c)
	s.scalarOnly = h.scalar
	prev := 0
	for _, cut := range cuts {
		if err := s.write(body[prev:cut]); err != nil {
			t.Fatalf("write: %v", err)
		}
		prev = cut
	}
	if err := s.write(body[prev:]); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := s.close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	slices.SortFunc(c.finds, func(a, b rec) int { return int(a.Off - b.Off) })
	return bytes.Clone(c.out.Bytes()), slices.Clone(c.finds)
}
