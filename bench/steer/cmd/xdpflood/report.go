package main

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/sealgate/sealgate/bench/internal/stats"
)

// bpfAttachment is the part of bpf.Attachment the report shows.
type bpfAttachment struct{ Mode, Driver string }

// config is the command line.
type config struct {
	txNS, rxNS, txIf, rxIf string
	src, dst               netip.Addr
	bpffs, mode            string
	duration, warmup       time.Duration
	senders, rounds        int
}

// Phase names; summarize computes ratios to phaseReference.
const (
	phaseReference = "no guard (reference)"
	phasePass      = "guard, pass"
	phaseDrop      = "guard, drop (blocklisted source)"
)

// result is one phase of one round.
type result struct {
	Round      int     `json:"round"`
	Phase      string  `json:"phase"`
	Counter    string  `json:"counter"`
	SentPPS    float64 `json:"sent_pps"`
	CountedPPS float64 `json:"counted_pps"`
	Refused    uint64  `json:"refused_batches"`
	Seconds    float64 `json:"seconds"`
	Other      uint64  `json:"other_verdict_packets"` // packets of the opposite verdict in the window
}

// row is one phase over all rounds.
type row struct {
	Phase, Counter               string
	Rounds                       int
	Median, Min, Max, SentMedian float64
	Ratio, RatioMin, RatioMax    float64 // counted pps / the reference's, per round
	Other, Refused               uint64
}

// summarize groups results by phase in first-seen order.
func summarize(rs []result) []row {
	ref := map[int]float64{}
	for _, r := range rs {
		if r.Phase == phaseReference {
			ref[r.Round] = r.CountedPPS
		}
	}
	var order []string
	by := map[string][]result{}
	for _, r := range rs {
		if _, ok := by[r.Phase]; !ok {
			order = append(order, r.Phase)
		}
		by[r.Phase] = append(by[r.Phase], r)
	}
	var out []row
	for _, ph := range order {
		var counted, sent, ratios []float64
		w := row{Phase: ph, Counter: by[ph][0].Counter, Rounds: len(by[ph])}
		for _, r := range by[ph] {
			counted = append(counted, r.CountedPPS)
			sent = append(sent, r.SentPPS)
			if b := ref[r.Round]; b > 0 {
				ratios = append(ratios, r.CountedPPS/b)
			}
			w.Other += r.Other
			w.Refused += r.Refused
		}
		w.Median, w.Min, w.Max, w.SentMedian = stats.Median(counted), slices.Min(counted), slices.Max(counted), stats.Median(sent)
		if len(ratios) > 0 {
			w.Ratio, w.RatioMin, w.RatioMax = stats.Median(ratios), slices.Min(ratios), slices.Max(ratios)
		}
		out = append(out, w)
	}
	return out
}

// printTable writes the rows as a Markdown table after a line describing the flood.
func printTable(w io.Writer, c config, att bpfAttachment, rows []row) {
	fmt.Fprintf(w, "\nFlood: %d-byte UDP frames %s → %s:9 (no socket), %d senders (AF_PACKET, sendmmsg, qdisc bypass); %d rounds of three %v phases (each after %v of flooding); guard mode %s on %s (driver %s).\n\n",
		frameLen, c.src, c.dst, c.senders, c.rounds, c.duration, c.warmup, att.Mode, c.rxIf, att.Driver)
	fmt.Fprintln(w, "| Phase | Counter | Median counted pps | Min–max | Ratio to no guard (median, min–max) | Median sent pps | Opposite-verdict packets | Refused send batches |")
	fmt.Fprintln(w, "|---|---|---:|---:|---|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %.0f | %.0f–%.0f | %.3f (%.3f–%.3f) | %.0f | %d | %d |\n",
			r.Phase, r.Counter, r.Median, r.Min, r.Max, r.Ratio, r.RatioMin, r.RatioMax, r.SentMedian, r.Other, r.Refused)
	}
}
