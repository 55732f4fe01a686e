package dlp

import (
	"math/rand/v2"
	"testing"
)

// TestNextWideSuperset checks the pre-filter's contract directly: no block
// nextWide passes over, and no position whose bit it leaves clear, is a token
// start that tryAt could accept or hold. With bodies that end in non-digits
// the prefilter itself is exact in the wide region, so it is checked instead
// of the validators (which reject most random candidates). Bodies are random
// runs over an alphabet rich in what the detectors look at.
func TestNextWideSuperset(t *testing.T) {
	pieces := []string{
		"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "4111", "5500", "078-05-1121", "-", "--", " ", "@", "+",
		".", ",", ":", "\"", "_", "A", "K", "S", "I", "DE", "GB", "ey", "J", "gh", "gl", "gi", "xo", "x", "sk", "rk",
		"e", "g", "r", "s", "y", "h", "l", "i", "o", "k", "a", "Z", "\xc3\xa9", "\x00", "\n", "AKIA", "eyJ",
		"-----BEGIN", "4111 1111 1111 1111", "DE89370400440532013000",
	}
	cc := mustCompile(t, Config{Action: "redact"})
	for _, tc := range []struct {
		name string
		tail string
		want func(s *scanner, b []byte, p int) bool // p must have its bit
	}{
		{"prefilter, body ends in non-digits", `"}]` + "\n", func(s *scanner, b []byte, p int) bool {
			return prefilter(&s.cc.enabled, b, p)
		}},
		{"validators, any end", "", func(s *scanner, b []byte, p int) bool {
			_, st := s.tryAt(b, p, false)
			return st != stNo
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s scanner
			r := rand.New(rand.NewPCG(7, 11))
			checked := 0
			for round := range 5000 {
				var body []byte
				for len(body) < 40+r.IntN(200) {
					body = append(body, pieces[r.IntN(len(pieces))]...)
				}
				body = append(body, tc.tail...)
				s.reset(cc, r.IntN(2) == 0, discardSink{}, discardSink{})
				end := wideEnd(body)
				for q := 0; q+8 <= end; {
					got, m := nextWide(body, q, end)
					upto := got + 8 // the block found and those passed over
					if m == 0 {
						upto = got // none found: the rest is candMask's
					}
					for p := q; p < upto; p++ {
						bit := p >= got && m&(1<<(p-got)) != 0
						if !bit && tokenCandidate(body, p) && tc.want(&s, body, p) {
							t.Fatalf("round %d: %q at %d has no bit (block %d, mask %08b)",
								round, body[p:min(p+12, len(body))], p, got, m)
						}
						if bit {
							checked++
						}
					}
					q = got + 8
				}
			}
			if checked < 1000 {
				t.Fatalf("only %d candidate positions; the alphabet no longer exercises the filter", checked)
			}
		})
	}
}
