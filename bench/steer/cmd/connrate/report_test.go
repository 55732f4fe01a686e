package main

import (
	"strings"
	"testing"
	"time"
)

func TestSummarizeRatiosPerRound(t *testing.T) {
	paths := []path{{"direct", "a"}, {"steered", "b"}}
	phases := []*phase{
		{Path: "direct", Round: 1, Rate: 100, Conntrack: 0, lat: []time.Duration{time.Millisecond}},
		{Path: "steered", Round: 1, Rate: 90, Conntrack: 0},
		{Path: "direct", Round: 2, Rate: 200, Conntrack: 0},
		{Path: "steered", Round: 2, Rate: 200, Conntrack: -1},
		{Path: "direct", Round: 3, Rate: 50, Conntrack: 2},
		{Path: "direct", Round: 4, Rate: 100, Conntrack: 1},
		{Path: "steered", Round: 3, Rate: 40, Conntrack: 0},
	}
	rep := summarize(paths, phases)
	if len(rep) != 2 {
		t.Fatalf("got %d summaries, want 2", len(rep))
	}
	d, s := rep[0], rep[1]
	if d.Median != 100 || d.Min != 50 || d.Max != 200 || d.Conntrack != 2 || d.Rounds != 4 {
		t.Errorf("direct = %+v", d)
	}
	// Ratios are per round (0.9, 1.0, 0.8), not a ratio of medians (90/100).
	if s.RatioMed != 0.9 || s.RatioMin != 0.8 || s.RatioMax != 1.0 {
		t.Errorf("steered ratios = %v (%v–%v), want 0.9 (0.8–1)", s.RatioMed, s.RatioMin, s.RatioMax)
	}
	if s.Conntrack != -1 {
		t.Errorf("steered conntrack = %d, want -1 (one round without conntrack)", s.Conntrack)
	}
	var b strings.Builder
	writeTable(&b, rep)
	if !strings.Contains(b.String(), "| steered | b | 90 | 40–200 |") {
		t.Errorf("table:\n%s", b.String())
	}
}

func TestParseRuleHits(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    int64
		wantErr bool
	}{
		{"rule", `Chain PREROUTING (policy ACCEPT 5 packets, 300 bytes)
    pkts      bytes target     prot opt in     out     source               destination
   12345   740700 REDIRECT   6    --  *      *       0.0.0.0/0            192.0.2.1            tcp dpt:80 redir ports 8080
`, 12345, false},
		{"no_rule", "Chain PREROUTING (policy ACCEPT 0 packets, 0 bytes)\n    pkts      bytes target\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRuleHits(tc.out)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseRuleHits = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestCountDport(t *testing.T) {
	table := `ipv4     2 tcp      6 8 CLOSE src=192.0.2.2 dst=192.0.2.1 sport=40000 dport=80 src=192.0.2.1 dst=192.0.2.2 sport=8080 dport=40000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 9 CLOSE src=192.0.2.2 dst=192.0.2.1 sport=40001 dport=8080 src=192.0.2.1 dst=192.0.2.2 sport=8080 dport=40001 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 9 CLOSE src=192.0.2.2 dst=192.0.2.1 sport=40002 dport=80 src=192.0.2.1 dst=192.0.2.2 sport=8080 dport=40002 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 29 src=192.0.2.2 dst=192.0.2.1 sport=53 dport=8081 src=192.0.2.1 dst=192.0.2.2 sport=8081 dport=80 mark=0 zone=0 use=2
`
	tests := []struct {
		name string
		port uint16
		want int64
	}{
		{"redirected_original_port", 80, 2}, // the reply's dport=80 of the udp line does not count
		{"direct_listener_port", 8080, 1},   // the reply direction's sport=8080 does not count
		{"steered_port_untracked", 443, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := countDport(table, tc.port); got != tc.want {
				t.Errorf("countDport(%d) = %d, want %d", tc.port, got, tc.want)
			}
		})
	}
	if got := countDport("", 80); got != 0 {
		t.Errorf("empty table: %d", got)
	}
}
