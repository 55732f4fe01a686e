package dlp

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

// FuzzScanSplit feeds random bodies cut at random points: the scan must not
// panic, and findings and output must equal those of the unsplit scan. When
// the body is valid JSON the redacted output must be too.
func FuzzScanSplit(f *testing.F) {
	for _, tc := range detectorCases {
		for _, b := range straddleBodies(tc.in) {
			f.Add(b, uint64(len(b)/2), uint64(len(b)/3)<<32|uint64(len(b)/4))
		}
	}
	f.Add([]byte(`{"password":"a\"b\\c\u00e9","n":[1,{"password":{"x":[4111111111111111,"y"]}}]}`), uint64(7), uint64(13))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\\n\\\"abc\\u00"), uint64(30), uint64(31))
	ccs := []*compiled{
		mustCompile(f, Config{JSONFields: []string{"password", "ssn"}}),
		mustCompile(f, Config{Action: "log"}),
	}
	f.Fuzz(func(t *testing.T, body []byte, a, b uint64) {
		if len(body) > 1<<16 {
			return
		}
		var h harness
		for x, cc := range ccs {
			isJSON := x == 0
			wantOut, wantFinds := h.scan(t, cc, isJSON, body)
			if len(wantOut) != len(body) {
				t.Fatalf("length changed: %d → %d", len(body), len(wantOut))
			}
			if cc.action[KindCard] == ActionLog && !bytes.Equal(wantOut, body) {
				t.Fatalf("log action changed the body")
			}
			if isJSON && json.Valid(body) && !json.Valid(wantOut) {
				t.Fatalf("redaction broke JSON:\n%q\n%q", body, wantOut)
			}
			cuts := []int{int(a % uint64(len(body)+1)), int((a >> 32) % uint64(len(body)+1)), int(b % uint64(len(body)+1)), int((b >> 32) % uint64(len(body)+1))}
			slices.Sort(cuts)
			out, finds := h.scan(t, cc, isJSON, body, cuts...)
			if !slices.Equal(finds, wantFinds) {
				t.Fatalf("cuts %v: findings %v, unsplit %v", cuts, finds, wantFinds)
			}
			if !bytes.Equal(out, wantOut) {
				t.Fatalf("cuts %v: output differs\n%q\n%q", cuts, out, wantOut)
			}
			// The eight-bytes-at-a-time loop and the reference loop agree.
			ref := harness{scalar: true}
			refOut, refFinds := ref.scan(t, cc, isJSON, body, cuts...)
			if !slices.Equal(refFinds, wantFinds) || !bytes.Equal(refOut, wantOut) {
				t.Fatalf("scalar loop: findings %v, block loop %v", refFinds, wantFinds)
			}
		}
	})
}
