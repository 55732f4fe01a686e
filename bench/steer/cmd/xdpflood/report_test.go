package main

import (
	"net/netip"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	rs := []result{
		{Round: 1, Phase: phaseReference, CountedPPS: 100, SentPPS: 100},
		{Round: 1, Phase: phasePass, Counter: "pass/non_tcp", CountedPPS: 80, SentPPS: 81, Other: 1},
		{Round: 1, Phase: phaseDrop, CountedPPS: 200, SentPPS: 200},
		{Round: 2, Phase: phaseReference, CountedPPS: 50, SentPPS: 50},
		{Round: 2, Phase: phasePass, CountedPPS: 45, SentPPS: 45, Refused: 3},
		{Round: 2, Phase: phaseDrop, CountedPPS: 150, SentPPS: 150},
		{Round: 3, Phase: phaseReference, CountedPPS: 200, SentPPS: 200},
		{Round: 3, Phase: phasePass, CountedPPS: 140, SentPPS: 140},
		{Round: 3, Phase: phaseDrop, CountedPPS: 400, SentPPS: 400},
	}
	rows := summarize(rs)
	tests := []struct {
		name                      string
		row                       row
		phase                     string
		median, ratio, rmin, rmax float64
		other, refused            uint64
	}{
		{"reference", rows[0], phaseReference, 100, 1, 1, 1, 0, 0},
		// Ratios per round: 0.8, 0.9, 0.7.
		{"pass", rows[1], phasePass, 80, 0.8, 0.7, 0.9, 1, 3},
		// Ratios per round: 2, 3, 2.
		{"drop", rows[2], phaseDrop, 200, 2, 2, 3, 0, 0},
	}
	if len(rows) != len(tests) {
		t.Fatalf("got %d rows, want %d", len(rows), len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.row
			if r.Phase != tc.phase || r.Rounds != 3 || r.Median != tc.median || r.Ratio != tc.ratio ||
				r.RatioMin != tc.rmin || r.RatioMax != tc.rmax || r.Other != tc.other || r.Refused != tc.refused {
				t.Errorf("row = %+v", r)
			}
		})
	}
	var b strings.Builder
	c := config{src: netip.MustParseAddr("192.0.2.2"), dst: netip.MustParseAddr("192.0.2.1"), rxIf: "r0", senders: 2, rounds: 3}
	printTable(&b, c, bpfAttachment{Mode: "native", Driver: "veth"}, rows)
	if !strings.Contains(b.String(), "| guard, pass | pass/non_tcp | 80 | 45–140 | 0.800 (0.700–0.900) | 81 | 1 | 3 |") {
		t.Errorf("table:\n%s", b.String())
	}
}
