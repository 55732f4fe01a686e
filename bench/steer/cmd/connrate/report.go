package main

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sealgate/sealgate/bench/internal/stats"
)

// summary is one path's figures over all rounds.
type summary struct {
	Path       string  `json:"path"`
	Addr       string  `json:"addr"`
	Rounds     int     `json:"rounds"`
	Median     float64 `json:"median_conns_per_s"`
	Min        float64 `json:"min_conns_per_s"`
	Max        float64 `json:"max_conns_per_s"`
	RatioMed   float64 `json:"ratio_to_direct_median"`
	RatioMin   float64 `json:"ratio_to_direct_min"`
	RatioMax   float64 `json:"ratio_to_direct_max"`
	RatioP25   float64 `json:"ratio_to_direct_p25"`
	RatioP75   float64 `json:"ratio_to_direct_p75"`
	P50        float64 `json:"p50_us"`
	P99        float64 `json:"p99_us"`
	Errors     int64   `json:"errors"`
	Conntrack  int64   `json:"conntrack_entries_max"` // max over rounds at phase end; -1: unknown
	TotalConns int64   `json:"conns"`
}

// summarize computes medians, spreads and per-round ratios to the first path.
func summarize(paths []path, phases []*phase) []summary {
	base := map[int]float64{}
	for _, ph := range phases {
		if ph.Path == paths[0].Name {
			base[ph.Round] = ph.Rate
		}
	}
	var out []summary
	for _, p := range paths {
		s := summary{Path: p.Name, Addr: p.Addr, Conntrack: 0}
		var rates, ratios []float64
		var lat []time.Duration
		for _, ph := range phases {
			if ph.Path != p.Name {
				continue
			}
			s.Rounds++
			rates = append(rates, ph.Rate)
			if b := base[ph.Round]; b > 0 {
				ratios = append(ratios, ph.Rate/b)
			}
			lat = append(lat, ph.lat...)
			s.Errors += ph.Errors
			s.TotalConns += ph.Conns
			if ph.Conntrack < 0 || s.Conntrack < 0 {
				s.Conntrack = -1
			} else {
				s.Conntrack = max(s.Conntrack, ph.Conntrack)
			}
		}
		if len(rates) == 0 {
			continue
		}
		s.Median, s.Min, s.Max = stats.Median(rates), slices.Min(rates), slices.Max(rates)
		if len(ratios) > 0 {
			s.RatioMed, s.RatioMin, s.RatioMax = stats.Median(ratios), slices.Min(ratios), slices.Max(ratios)
			s.RatioP25, s.RatioP75 = stats.Quantile(ratios, 0.25), stats.Quantile(ratios, 0.75)
		}
		slices.Sort(lat)
		s.P50 = us(percentile(lat, 0.50))
		s.P99 = us(percentile(lat, 0.99))
		out = append(out, s)
	}
	return out
}

// percentile returns the q-quantile (0..1) of sorted by nearest rank; 0 for none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

// writeTable prints the summaries as a Markdown table.
func writeTable(w io.Writer, rep []summary) {
	fmt.Fprintln(w, "| Path | Address | Median conn/s | Min–max conn/s | Spread | Ratio to direct: median (p25–p75; min–max) | p50 µs | p99 µs | Conntrack entries (max at phase end) | Errors |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---|---:|---:|---:|---:|")
	for _, s := range rep {
		spread := 0.0
		if s.Median > 0 {
			spread = (s.Max - s.Min) / s.Median * 100
		}
		ct := "n/a"
		if s.Conntrack >= 0 {
			ct = fmt.Sprint(s.Conntrack)
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %.0f–%.0f | %.1f%% | %.3f (%.3f–%.3f; %.3f–%.3f) | %.0f | %.0f | %s | %d |\n",
			s.Path, s.Addr, s.Median, s.Min, s.Max, spread, s.RatioMed, s.RatioP25, s.RatioP75, s.RatioMin, s.RatioMax, s.P50, s.P99, ct, s.Errors)
	}
}
