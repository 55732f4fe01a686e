package dlp

import (
	"bytes"
	"testing"
)

func BenchmarkBaselineTableLoop(b *testing.B) {
	body := mixedJSON(1 << 20)
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

func BenchmarkBaselineIndexByte(b *testing.B) {
	body := mixedJSON(1 << 20)
	b.SetBytes(int64(len(body)))
	defer reportCPU(b, len(body))()
	for b.Loop() {
		_ = bytes.IndexByte(body, 0)
	}
}
