package dlp

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCleanCorpus asserts precision: ordinary API payloads under
// testdata/clean (handwritten and generated) raise no finding with every
// detector on, unsplit and cut at random points.
func TestCleanCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "clean", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("only %d corpus files", len(files))
	}
	cc := mustCompile(t, Config{Action: "redact"})
	total := 0
	var h harness
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			total += len(body)
			isJSON := strings.HasSuffix(f, "json")
			out, finds := h.scan(t, cc, isJSON, body)
			for _, fd := range finds {
				lo, hi := max(0, int(fd.Off)-40), min(len(body), int(fd.Off)+40)
				t.Errorf("false positive %s at %d: %q", fd, fd.Off, body[lo:hi])
			}
			if !bytes.Equal(out, body) {
				t.Error("output differs from input without findings")
			}
			r := rand.New(rand.NewPCG(uint64(len(body)), 7))
			cuts := make([]int, 50)
			for i := range cuts {
				cuts[i] = r.IntN(len(body) + 1)
			}
			slices.Sort(cuts)
			if _, finds := h.scan(t, cc, isJSON, body, cuts...); len(finds) != 0 {
				t.Errorf("split scan found %v", finds)
			}
			ref := harness{scalar: true}
			if _, finds := ref.scan(t, cc, isJSON, body, cuts...); len(finds) != 0 {
				t.Errorf("scalar loop found %v", finds)
			}
		})
	}
	t.Logf("%d files, %d bytes", len(files), total)
}
