package main

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func byMetric(ms []Measurement) map[string]float64 {
	out := map[string]float64{}
	for _, m := range ms {
		out[m.Metric] = m.Value
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		file  string
		parse func([]byte) ([]Measurement, error)
		want  map[string]float64
		err   error
	}{
		{"wrk-latency.txt", parseWrk, map[string]float64{
			"rps": 22687.79, "mbps": 27.48 * (1 << 20) / 1e6, "p50_ms": 2.27, "p99_ms": 9.42, "errors": 0}, nil},
		{"wrk-errors.txt", parseWrk, map[string]float64{
			"rps": 1000, "mbps": 256 * (1 << 20) / 1e6, "p50_ms": 0.85, "p99_ms": 1200, "errors": 3 + 2 + 5 + 7}, nil},
		{"wrk-refused.txt", parseWrk, nil, errNoResult},
		{"h2load.txt", parseH2load, map[string]float64{
			"rps": 21570.70, "mbps": 25.25 * (1 << 20) / 1e6, "errors": 3}, nil},
		{"wrk-latency.txt", parseH2load, nil, errNoResult},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			ms, err := tt.parse(data)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			got := byMetric(ms)
			if len(got) != len(tt.want) {
				t.Errorf("metrics = %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if !near(got[k], v) {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestParseUnits(t *testing.T) {
	for _, tt := range []struct {
		in   string
		ms   float64
		fail bool
	}{
		{"850.00us", 0.85, false},
		{"3.12ms", 3.12, false},
		{"1.50s", 1500, false},
		{"2.00m", 120000, false},
		{"3.12", 0, true},
		{"xms", 0, true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseDuration(tt.in)
			if (err != nil) != tt.fail {
				t.Fatalf("error = %v, want failure %v", err, tt.fail)
			}
			if !tt.fail && !near(got, tt.ms) {
				t.Errorf("= %v ms, want %v", got, tt.ms)
			}
		})
	}
	for _, tt := range []struct {
		in   string
		b    float64
		fail bool
	}{
		{"512B", 512, false},
		{"1.50KB", 1536, false},
		{"2.00MB", 2 << 20, false},
		{"1.00GB", 1 << 30, false},
		{"12", 12, false},
		{"MB", 0, true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if (err != nil) != tt.fail {
				t.Fatalf("error = %v, want failure %v", err, tt.fail)
			}
			if !tt.fail && !near(got, tt.b) {
				t.Errorf("= %v bytes, want %v", got, tt.b)
			}
		})
	}
}

// FuzzParse feeds arbitrary tool output to both parsers: they must return
// figures or an error, never panic.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"wrk-latency.txt", "wrk-errors.txt", "wrk-refused.txt", "h2load.txt"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("finished in 1s, x req/s, 1MB/s\nrequests: a failed\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func([]byte) ([]Measurement, error){parseWrk, parseH2load} {
			ms, err := parse(data)
			if err == nil && len(ms) == 0 {
				t.Errorf("no error and no figures for %q", data)
			}
			for _, m := range ms {
				if strings.ContainsAny(m.Metric, "\t\n") {
					t.Errorf("metric name %q would break the TSV", m.Metric)
				}
			}
		}
	})
}
