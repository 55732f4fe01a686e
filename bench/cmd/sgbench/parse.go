package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Measurement is one figure read from a tool's output.
type Measurement struct {
	Metric string
	Value  float64
}

// cmdParse reads wrk or h2load output and prints one TSV line per figure,
// each prefixed with -prefix (round, scenario and proxy, tab-separated).
func cmdParse(args []string) error {
	fs := flag.NewFlagSet("parse", flag.ContinueOnError)
	tool := fs.String("tool", "wrk", "wrk or h2load")
	in := fs.String("in", "", "tool output file")
	prefix := fs.String("prefix", "", "prefix of each line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	var ms []Measurement
	switch *tool {
	case "wrk":
		ms, err = parseWrk(data)
	case "h2load":
		ms, err = parseH2load(data)
	default:
		return fmt.Errorf("-tool %q: want wrk or h2load", *tool)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	return writeMeasurements(os.Stdout, *prefix, ms)
}

func writeMeasurements(w io.Writer, prefix string, ms []Measurement) error {
	for _, m := range ms {
		if _, err := fmt.Fprintf(w, "%s\t%s\t%s\n", prefix, m.Metric, strconv.FormatFloat(m.Value, 'f', -1, 64)); err != nil {
			return err
		}
	}
	return nil
}

var errNoResult = errors.New("no result in the tool's output (did it fail to connect?)")

// parseWrk reads `wrk --latency` output: requests/s, MB/s, p50/p99 latency
// in milliseconds and the count of socket errors and non-2xx/3xx responses.
func parseWrk(data []byte) ([]Measurement, error) {
	var ms []Measurement
	var errs float64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return nil, fmt.Errorf("requests/sec %q: %w", f[1], err)
			}
			ms = append(ms, Measurement{"rps", v})
			found = true
		case len(f) == 2 && f[0] == "Transfer/sec:":
			v, err := parseSize(f[1])
			if err != nil {
				return nil, fmt.Errorf("transfer/sec: %w", err)
			}
			ms = append(ms, Measurement{"mbps", v / 1e6})
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			v, err := parseDuration(f[1])
			if err != nil {
				return nil, fmt.Errorf("latency %s: %w", f[0], err)
			}
			ms = append(ms, Measurement{"p" + strings.TrimSuffix(f[0], "%") + "_ms", v})
		case len(f) >= 3 && f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				n, err := strconv.ParseFloat(strings.TrimSuffix(f[i+1], ","), 64)
				if err != nil {
					return nil, fmt.Errorf("socket errors %q: %w", f[i+1], err)
				}
				errs += n
			}
		case len(f) == 5 && f[0] == "Non-2xx":
			n, err := strconv.ParseFloat(f[4], 64)
			if err != nil {
				return nil, fmt.Errorf("non-2xx count %q: %w", f[4], err)
			}
			errs += n
		}
	}
	if !found {
		return nil, errNoResult
	}
	return append(ms, Measurement{"errors", errs}), nil
}

// parseH2load reads h2load output: requests/s, MB/s and the count of failed
// requests.
func parseH2load(data []byte) ([]Measurement, error) {
	var ms []Measurement
	var errs float64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "finished in "):
			// finished in 5.00s, 30000.00 req/s, 33.00MB/s
			parts := strings.Split(line, ", ")
			if len(parts) != 3 {
				return nil, fmt.Errorf("unexpected summary %q", line)
			}
			v, err := strconv.ParseFloat(strings.TrimSuffix(parts[1], " req/s"), 64)
			if err != nil {
				return nil, fmt.Errorf("req/s in %q: %w", line, err)
			}
			b, err := parseSize(strings.TrimSuffix(parts[2], "/s"))
			if err != nil {
				return nil, fmt.Errorf("throughput in %q: %w", line, err)
			}
			ms = append(ms, Measurement{"rps", v}, Measurement{"mbps", b / 1e6})
			found = true
		case strings.HasPrefix(line, "requests: "):
			// requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
			// "failed" counts every unsuccessful request, HTTP-level
			// (non-2xx/3xx) and errored alike.
			for _, p := range strings.Split(strings.TrimPrefix(line, "requests: "), ", ") {
				f := strings.Fields(p)
				if len(f) == 2 && f[1] == "failed" {
					n, err := strconv.ParseFloat(f[0], 64)
					if err != nil {
						return nil, fmt.Errorf("failed count %q: %w", f[0], err)
					}
					errs += n
				}
			}
		}
	}
	if !found {
		return nil, errNoResult
	}
	return append(ms, Measurement{"errors", errs}), nil
}

// parseDuration reads wrk's latency figures (850.00us, 3.12ms, 1.20s, 2.00m)
// into milliseconds.
func parseDuration(s string) (float64, error) {
	units := []struct {
		suffix string
		ms     float64
	}{{"us", 1e-3}, {"ms", 1}, {"m", 60e3}, {"s", 1e3}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("duration %q: %w", s, err)
			}
			return v * u.ms, nil
		}
	}
	return 0, fmt.Errorf("duration %q: unknown unit", s)
}

// parseSize reads wrk's and h2load's byte figures (B, KB, MB, GB, powers of
// 1024) into bytes.
func parseSize(s string) (float64, error) {
	units := []struct {
		suffix string
		mul    float64
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"TB", 1 << 40}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("size %q: %w", s, err)
			}
			return v * u.mul, nil
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: unknown unit", s)
	}
	return v, nil
}
