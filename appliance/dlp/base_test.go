package dlp

import (
	"bytes"
	"testing"
)

// BenchmarkBaselineTableLoop is the floor for any byte-at-a-time scanner on
// this machine: one table lookup and one branch per byte, nothing else.
// Compare BenchmarkScanner with it when the machine is shared.
func BenchmarkBaselineTableLoop(b *testing.B) {
	body := mixedJSON(1<<20, 10)
	b.SetBytes(int64(len(body)))
	defer reportCPU(b, len(body))()
	n := 0
	for b.Loop() {
		for _, c := range body {
			if cls[c]&cTrig != 0 {
				n++
			}
		}
	}
	_ = n
}

// BenchmarkBaselineIndexByte is the stdlib's vectorised byte search, the
// ceiling of a SIMD scanner.
func BenchmarkBaselineIndexByte(b *testing.B) {
	body := mixedJSON(1<<20, 10)
	b.SetBytes(int64(len(body)))
	defer reportCPU(b, len(body))()
	for b.Loop() {
		_ = bytes.IndexByte(body, 0)
	}
}
