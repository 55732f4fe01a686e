package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"image/color"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/sealgate/sealgate/bench/internal/stats"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Scenario is one row group of the results table.
type Scenario struct {
	ID, Title string
	Metric    string // the headline figure
	Unit      string
	Lower     bool // lower is better
	Latency   bool // show p50/p99 columns
	Added     bool // latency shown as added over the upstream alone
}

// scenarios in table order; run.sh uses the same ids.
var scenarios = []Scenario{
	{ID: "s1_h1", Title: "1. 1 KiB JSON, HTTP/1.1 keep-alive, 64 conns (wrk)", Metric: "rps", Unit: "req/s", Latency: true},
	{ID: "s1_h1_log", Title: "1b. same, access log on", Metric: "rps", Unit: "req/s", Latency: true},
	{ID: "s2_h2", Title: "2. 1 KiB JSON, h2, 8 conns x 8 streams (h2load)", Metric: "rps", Unit: "req/s"},
	{ID: "s3_newconn", Title: "3. new TLS 1.3 connection per request (wrk, Connection: close)", Metric: "rps", Unit: "handshakes/s", Latency: true},
	{ID: "s4_bulk", Title: "4. 1 MiB responses, HTTP/1.1, 16 conns (wrk)", Metric: "mbps", Unit: "MB/s", Latency: true},
	{ID: "s5_fixed", Title: "5. fixed rate at 50% of nginx max, latency added over upstream alone", Metric: "p99_ms", Unit: "ms p99 added", Lower: true, Latency: true, Added: true},
	{ID: "s6_policy", Title: "6a. sealgate policy (API key, rate limit) + DLP redact (wrk)", Metric: "rps", Unit: "req/s", Latency: true},
	{ID: "s6_sealed", Title: "6b. sealgate sealed requests (Go client SDK, h2)", Metric: "rps", Unit: "req/s", Latency: true},
	{ID: "s6_steered", Title: "6c. sealgate through an eBPF-steered port (wrk)", Metric: "rps", Unit: "req/s", Latency: true},
	{ID: "s7_idle", Title: "7. memory with idle keep-alive TLS conns", Metric: "rss_mib", Unit: "MiB PSS", Lower: true},
	{ID: "s7_idle_h2", Title: "7b. the same over h2 (one stream each)", Metric: "rss_mib", Unit: "MiB PSS", Lower: true},
}

var proxyOrder = []string{"upstream", "nginx", "haproxy", "caddy", "sealgate"}

// results is raw figures: scenario → proxy → metric → round → value.
type results map[string]map[string]map[string]map[int]float64

func (r results) add(round int, scen, proxy, metric string, v float64) {
	if r[scen] == nil {
		r[scen] = map[string]map[string]map[int]float64{}
	}
	if r[scen][proxy] == nil {
		r[scen][proxy] = map[string]map[int]float64{}
	}
	if r[scen][proxy][metric] == nil {
		r[scen][proxy][metric] = map[int]float64{}
	}
	r[scen][proxy][metric][round] = v
}

// values returns the per-round values of one metric, by round.
func (r results) values(scen, proxy, metric string) map[int]float64 {
	return r[scen][proxy][metric]
}

// readRaw parses raw.tsv lines: round, scenario, proxy, metric, value.
func readRaw(data []byte) (results, error) {
	r := results{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			return nil, fmt.Errorf("line %d: want 5 tab-separated fields, got %d", n, len(f))
		}
		round, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: round %q: %w", n, f[0], err)
		}
		v, err := strconv.ParseFloat(f[4], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: value %q: %w", n, f[4], err)
		}
		r.add(round, f[1], f[2], f[3], v)
	}
	return r, sc.Err()
}

// readNA parses na.tsv lines: scenario, proxy, reason.
func readNA(data []byte) map[string]map[string]string {
	na := map[string]map[string]string{}
	for line := range strings.Lines(string(data)) {
		f := strings.SplitN(strings.TrimRight(line, "\n"), "\t", 3)
		if len(f) != 3 {
			continue
		}
		if na[f[0]] == nil {
			na[f[0]] = map[string]string{}
		}
		na[f[0]][f[1]] = f[2]
	}
	return na
}

func list(m map[int]float64) []float64 {
	out := make([]float64, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// figure is one metric of one row: median, min, max over rounds.
type figure struct {
	ok            bool
	med, min, max float64
}

func summarize(m map[int]float64) figure {
	xs := list(m)
	if len(xs) == 0 {
		return figure{}
	}
	return figure{true, stats.Median(xs), slices.Min(xs), slices.Max(xs)}
}

// added returns, per round, the proxy's metric minus the upstream's.
func (r results) added(scen, proxy, metric string) map[int]float64 {
	up := r.values(scen, "upstream", metric)
	out := map[int]float64{}
	for round, v := range r.values(scen, proxy, metric) {
		if u, ok := up[round]; ok {
			out[round] = v - u
		}
	}
	return out
}

// ratios returns, per round, the proxy's metric over nginx's.
func (r results) ratios(scen, proxy, metric string) map[int]float64 {
	return ratiosOf(r.values(scen, proxy, metric), r.values(scen, "nginx", metric))
}

func ratiosOf(peer, nginx map[int]float64) map[int]float64 {
	out := map[int]float64{}
	for round, v := range peer {
		if n, ok := nginx[round]; ok && n != 0 {
			out[round] = v / n
		}
	}
	return out
}

// perCore returns, per round, the metric divided by the share of one core
// the proxy's processes used during the measurement: throughput per core.
func (r results) perCore(scen, proxy, metric string) map[int]float64 {
	util := r.values(scen, proxy, "cpu_util")
	out := map[int]float64{}
	for round, v := range r.values(scen, proxy, metric) {
		if u, ok := util[round]; ok && u > 0 {
			out[round] = v / u
		}
	}
	return out
}

func fmtNum(v float64) string {
	switch {
	case v >= 100 || v <= -100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10 || v <= -10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func fmtFig(f figure) string {
	if !f.ok {
		return "–"
	}
	return fmtNum(f.med)
}

func fmtSpread(f figure) string {
	if !f.ok {
		return "–"
	}
	if f.min == f.max {
		return "±0"
	}
	return fmtNum(f.min) + "–" + fmtNum(f.max)
}

// writeTable writes the markdown results table.
func writeTable(w io.Writer, r results, na map[string]map[string]string) {
	fmt.Fprintln(w, "| Scenario | Proxy | Median | Unit | Spread (min–max) | Ratio to nginx (median, min–max) | Proxy CPU (cores) | Per core | Per-core ratio to nginx | p50 ms | p99 ms | p99.9 ms | Errors |")
	fmt.Fprintln(w, "|---|---|---:|---|---|---|---:|---:|---|---:|---:|---:|---:|")
	for _, s := range scenarios {
		for _, p := range proxyOrder {
			if reason, ok := na[s.ID][p]; ok {
				fmt.Fprintf(w, "| %s | %s | not available: %s | | | | | | | | | | |\n", s.Title, p, reason)
				continue
			}
			if r[s.ID][p] == nil {
				continue
			}
			head := summarize(r.values(s.ID, p, s.Metric))
			p50 := summarize(r.values(s.ID, p, "p50_ms"))
			p99 := summarize(r.values(s.ID, p, "p99_ms"))
			p999 := summarize(r.values(s.ID, p, "p999_ms"))
			unit := s.Unit
			if s.Added && p != "upstream" {
				head = summarize(r.added(s.ID, p, s.Metric))
				p50 = summarize(r.added(s.ID, p, "p50_ms"))
				p99 = head
				p999 = summarize(r.added(s.ID, p, "p999_ms"))
			} else if s.Added {
				unit = "ms p99 (absolute)"
			}
			ratio := "–"
			if p != "nginx" && p != "upstream" && !s.Added {
				if f := summarize(r.ratios(s.ID, p, s.Metric)); f.ok {
					ratio = fmt.Sprintf("%.2f (%.2f–%.2f)", f.med, f.min, f.max)
				}
			} else if p == "nginx" {
				ratio = "1"
			}
			if strings.HasPrefix(s.ID, "s7_idle") {
				if f := summarize(r.values(s.ID, p, "kib_per_conn")); f.ok {
					unit = fmt.Sprintf("MiB PSS with %.0f conns (%.1f KiB/conn over the idle process)", summarize(r.values(s.ID, p, "conns")).med, f.med)
				}
			}
			util, perCore, perCoreRatio := "–", "–", "–"
			if f := summarize(r.values(s.ID, p, "cpu_util")); f.ok && !s.Added {
				util = fmtNum(f.med)
				pc := r.perCore(s.ID, p, s.Metric)
				perCore = fmtFig(summarize(pc))
				if p == "nginx" {
					perCoreRatio = "1"
				} else if f := summarize(ratiosOf(pc, r.perCore(s.ID, "nginx", s.Metric))); f.ok {
					perCoreRatio = fmt.Sprintf("%.2f (%.2f–%.2f)", f.med, f.min, f.max)
				}
			}
			errs := summarize(r.values(s.ID, p, "errors"))
			lat := func(f figure) string {
				if !s.Latency {
					return "–"
				}
				return fmtFig(f)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				s.Title, p, fmtFig(head), unit, fmtSpread(head), ratio, util, perCore, perCoreRatio, lat(p50), lat(p99), lat(p999), fmtFig(errs))
		}
	}
}

var palette = map[string]color.Color{
	"upstream": color.RGBA{150, 150, 150, 255},
	"nginx":    color.RGBA{0, 150, 57, 255},
	"haproxy":  color.RGBA{30, 100, 200, 255},
	"caddy":    color.RGBA{230, 160, 0, 255},
	"sealgate": color.RGBA{200, 30, 60, 255},
}

// writeChart draws requests/s relative to nginx for scenarios 1–4 and the
// scenario-1 latency per proxy, side by side.
func writeChart(path string, r results) error {
	peers := []string{"nginx", "haproxy", "caddy", "sealgate"}
	// Per-core ratios when the run measured the proxies' CPU (they hold up
	// on a busy machine), wall-clock ratios otherwise.
	ratio := func(id, p, metric string) float64 {
		if pc := r.perCore(id, p, metric); len(pc) > 0 {
			return stats.Median(list(ratiosOf(pc, r.perCore(id, "nginx", metric))))
		}
		return stats.Median(list(r.ratios(id, p, metric)))
	}
	left := plot.New()
	left.Title.Text = "Throughput relative to nginx (median of per-round ratios)"
	left.Y.Label.Text = "ratio to nginx"
	if len(r.values("s1_h1", "nginx", "cpu_util")) > 0 {
		left.Title.Text = "Throughput per core relative to nginx (median of per-round ratios)"
		left.Y.Label.Text = "per-core ratio to nginx"
	}
	keys := []struct{ id, metric, label string }{{"s1_h1", "rps", "1 h1 req/s"}, {"s2_h2", "rps", "2 h2 req/s"}, {"s3_newconn", "rps", "3 handshakes/s"}, {"s4_bulk", "mbps", "4 1MiB MB/s"}}
	w := vg.Points(12)
	for i, p := range peers {
		vals := make(plotter.Values, len(keys))
		for j, k := range keys {
			if p == "nginx" {
				if len(r.values(k.id, "nginx", k.metric)) > 0 {
					vals[j] = 1
				}
				continue
			}
			vals[j] = ratio(k.id, p, k.metric)
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.Color = palette[p]
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(i-len(peers)/2)
		left.Add(bars)
		left.Legend.Add(p, bars)
	}
	labels := make([]string, len(keys))
	for i, k := range keys {
		labels[i] = k.label
	}
	left.NominalX(labels...)
	left.Legend.Top = true
	left.Y.Min = 0
	left.Y.Max *= 1.25 // room for the legend

	right := plot.New()
	right.Title.Text = "Scenario 1 latency (wrk, 64 conns)"
	right.Y.Label.Text = "ms"
	for i, q := range []string{"p50_ms", "p99_ms"} {
		vals := make(plotter.Values, len(peers))
		for j, p := range peers {
			vals[j] = stats.Median(list(r.values("s1_h1", p, q)))
		}
		bars, err := plotter.NewBarChart(vals, w*1.5)
		if err != nil {
			return err
		}
		bars.Color = []color.Color{color.RGBA{100, 100, 220, 255}, color.RGBA{220, 100, 100, 255}}[i]
		bars.LineStyle.Width = 0
		bars.Offset = w * 1.5 * vg.Length(i*2-1) / 2
		right.Add(bars)
		right.Legend.Add(strings.TrimSuffix(q, "_ms"), bars)
	}
	right.NominalX(peers...)
	right.Legend.Top = true
	right.Y.Min = 0
	right.Y.Max *= 1.15

	img := vgimg.New(12*vg.Inch, 5*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2}
	cs := plot.Align([][]*plot.Plot{{left, right}}, tiles, dc)
	left.Draw(cs[0][0])
	right.Draw(cs[0][1])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// cmdReport renders raw.tsv (and na.tsv, meta.md) into the results page and
// chart and prints the table.
func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	raw := fs.String("raw", "", "raw figures (TSV)")
	naFile := fs.String("na", "", "unavailable rows (TSV), optional")
	meta := fs.String("meta", "", "versions and settings (markdown), optional")
	md := fs.String("md", "", "results page to write")
	png := fs.String("png", "", "chart to write")
	title := fs.String("title", "sealgate benchmark", "page title")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := os.ReadFile(*raw)
	if err != nil {
		return err
	}
	r, err := readRaw(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *raw, err)
	}
	na := map[string]map[string]string{}
	if *naFile != "" {
		if b, err := os.ReadFile(*naFile); err == nil {
			na = readNA(b)
		}
	}
	var table bytes.Buffer
	writeTable(&table, r, na)
	os.Stdout.Write(table.Bytes())
	if *png != "" {
		if err := writeChart(*png, r); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
	}
	if *md == "" {
		return nil
	}
	var page bytes.Buffer
	fmt.Fprintf(&page, "# %s\n\n", *title)
	if *png != "" {
		fmt.Fprintf(&page, "![chart](%s)\n\n", baseName(*png))
	}
	page.Write(table.Bytes())
	page.WriteString("\nMedian over rounds; spread is min–max over rounds; ratios to nginx are computed per round, then the median (min–max) is shown. Proxy CPU is the share of one core the proxy's processes used during the measurement (from /proc/PID/stat); per core is the figure divided by it — the cost measure that other load on a shared machine distorts least. Scenario 5 latency is the proxy's percentile minus the upstream's percentile measured alone in the same round. Memory is PSS summed over the proxy's processes.\n\n")
	if *meta != "" {
		if b, err := os.ReadFile(*meta); err == nil {
			page.Write(b)
		}
	}
	return os.WriteFile(*md, page.Bytes(), 0o644)
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
