package daemon

import (
	"encoding/json"
	"os"
	"text/tabwriter"

	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/sealgate/sealgate/appliance/anomaly"
	"github.com/sealgate/sealgate/appliance/sealing"

	dto "github.com/prometheus/client_model/go"

	"github.com/sealgate/sealgate/appliance"
)

// Status is the answer of GET /v1/status.
type Status struct {
	Version      string                     `json:"version"`
	Commit       string                     `json:"commit"`
	GoVersion    string                     `json:"go_version"`
	PID          int                        `json:"pid"`
	UptimeS      float64                    `json:"uptime_s"`
	ConfigPath   string                     `json:"config_path"`
	ConfigSHA256 string                     `json:"config_sha256"`
	Reload       reloadState                `json:"last_reload"`
	CPU          CPUStatus                  `json:"cpu"`
	Listeners    []appliance.ListenerStatus `json:"listeners"`
	TLSTickets   int                        `json:"tls_ticket_keys"`
	Steering     SteeringStatus             `json:"steering"`
	Guard        GuardStatus                `json:"guard"`
	Interfaces   []InterfaceStatus          `json:"interfaces"`
	Blocklist    int                        `json:"blocklist_entries"`
	Seal         *SealStatus                `json:"seal,omitempty"`
	Policy       []any                      `json:"policy,omitempty"`
	Anomaly      *anomaly.Stats             `json:"anomaly,omitempty"`
}

// SealStatus lists the sealing keys (ids and ages, never material).
type SealStatus struct {
	Keys []sealing.KeyInfo `json:"keys"`
}

// CPUStatus reports the start-up crypto decision.
type CPUStatus struct {
	Arch        string          `json:"arch"`
	Features    map[string]bool `json:"features"`
	AEADOrder   []string        `json:"aead_order"`
	Forced      string          `json:"forced,omitempty"`
	TLS12Suites []string        `json:"tls12_suites"`
}

// SteeringStatus says whether eBPF steering runs and, if not, why.
type SteeringStatus struct {
	Enabled  bool             `json:"enabled"`
	Reason   string           `json:"reason,omitempty"`
	Bindings []BindingStatus  `json:"bindings"`
	Counters map[string]int64 `json:"counters,omitempty"`
}

// BindingStatus is one steered (proto, prefix, port) and its socket.
type BindingStatus struct {
	Listener string `json:"listener"`
	Proto    string `json:"proto"`
	Prefix   string `json:"prefix"`
	Port     uint16 `json:"port"`
	Socket   bool   `json:"socket"`
}

// GuardStatus says whether the XDP guard can run and, if not, why.
type GuardStatus struct {
	Enabled bool   `json:"enabled"`
	Reason  string `json:"reason,omitempty"`
}

// InterfaceStatus is one interface's guard attachment.
type InterfaceStatus struct {
	Name     string `json:"name"`
	Attached bool   `json:"attached"`
	Mode     string `json:"mode,omitempty"`
	Driver   string `json:"driver,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Status reports the daemon's state.
func (d *Daemon) Status() Status {
	cfg := d.Config()
	d.mu.Lock()
	rl := d.reload
	d.mu.Unlock()
	st := Status{
		Version:      Version,
		Commit:       Commit,
		GoVersion:    runtime.Version(),
		PID:          os.Getpid(),
		UptimeS:      math.Round(time.Since(d.started).Seconds()*10) / 10,
		ConfigPath:   cfg.Path,
		ConfigSHA256: cfg.SHA256,
		Reload:       rl,
		CPU: CPUStatus{
			Arch:        d.profile.Features.Arch,
			Features:    d.profile.Features.Map(),
			AEADOrder:   d.profile.Names(),
			Forced:      string(d.profile.Forced),
			TLS12Suites: d.profile.TLS12SuiteNames(),
		},
		Listeners:  d.engine.Status(),
		TLSTickets: d.engine.TicketKeys(),
		Blocklist:  len(d.blocklist()),
	}
	d.fillExtensionStatus(&st)
	return st
}

// Sample is one metric sample in /v1/stats.
type Sample struct {
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
}

// Stats is the answer of GET /v1/stats: every sealgate_ family, counters and
// gauges as values, histograms as their count and sum.
type Stats struct {
	UptimeS float64             `json:"uptime_s"`
	CPU     CPUStatus           `json:"cpu"`
	Metrics map[string][]Sample `json:"metrics"`
}

// Stats gathers the counters.
func (d *Daemon) Stats() (Stats, error) {
	mfs, err := d.reg.Gather()
	if err != nil {
		return Stats{}, err
	}
	st := Stats{
		UptimeS: math.Round(time.Since(d.started).Seconds()*10) / 10,
		CPU: CPUStatus{Arch: d.profile.Features.Arch, Features: d.profile.Features.Map(),
			AEADOrder: d.profile.Names(), Forced: string(d.profile.Forced), TLS12Suites: d.profile.TLS12SuiteNames()},
		Metrics: make(map[string][]Sample),
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "sealgate_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := labelMap(m.GetLabel())
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				st.Metrics[name] = append(st.Metrics[name], Sample{labels, m.GetCounter().GetValue()})
			case dto.MetricType_GAUGE:
				st.Metrics[name] = append(st.Metrics[name], Sample{labels, m.GetGauge().GetValue()})
			case dto.MetricType_HISTOGRAM:
				st.Metrics[name+"_count"] = append(st.Metrics[name+"_count"], Sample{labels, float64(m.GetHistogram().GetSampleCount())})
				st.Metrics[name+"_sum"] = append(st.Metrics[name+"_sum"], Sample{labels, m.GetHistogram().GetSampleSum()})
			}
		}
	}
	return st, nil
}

func labelMap(lps []*dto.LabelPair) map[string]string {
	if len(lps) == 0 {
		return nil
	}
	m := make(map[string]string, len(lps))
	for _, lp := range lps {
		m[lp.GetName()] = lp.GetValue()
	}
	return m
}

// FormatStats renders stats as a human table.
func FormatStats(st Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "uptime %s   aead order %s\n\n", time.Duration(st.UptimeS*float64(time.Second)).Round(time.Second), strings.Join(st.CPU.AEADOrder, ", "))
	names := make([]string, 0, len(st.Metrics))
	for n := range st.Metrics {
		names = append(names, n)
	}
	sort.Strings(names)
	type row struct{ metric, labels, value string }
	var rows []row
	w0, w1 := len("METRIC"), len("LABELS")
	for _, n := range names {
		samples := st.Metrics[n]
		sort.Slice(samples, func(i, j int) bool { return fmtLabels(samples[i].Labels) < fmtLabels(samples[j].Labels) })
		for _, s := range samples {
			r := row{strings.TrimPrefix(n, "sealgate_"), fmtLabels(s.Labels), fmtValue(s.Value)}
			w0, w1 = max(w0, len(r.metric)), max(w1, len(r.labels))
			rows = append(rows, r)
		}
	}
	fmt.Fprintf(&b, "%-*s  %-*s  %s\n", w0, "METRIC", w1, "LABELS", "VALUE")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s  %-*s  %s\n", w0, r.metric, w1, r.labels, r.value)
	}
	return b.String()
}

func fmtLabels(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func fmtValue(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.4g", v)
}

// FormatStatus renders status as a human summary.
func FormatStatus(st Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sealgate %s (%s, %s), pid %d, up %s\n", st.Version, st.Commit, st.GoVersion, st.PID,
		time.Duration(st.UptimeS*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(&b, "config     %s (sha256 %.12s)\n", st.ConfigPath, st.ConfigSHA256)
	rl := "never"
	if !st.Reload.At.IsZero() {
		rl = st.Reload.At.Format(time.RFC3339)
		if st.Reload.OK {
			rl += " ok"
		} else {
			rl += " REFUSED: " + st.Reload.Error
		}
	}
	fmt.Fprintf(&b, "reload     %s\n", rl)
	var feats []string
	for _, n := range sortedKeys(st.CPU.Features) {
		if st.CPU.Features[n] {
			feats = append(feats, n)
		}
	}
	fmt.Fprintf(&b, "cpu        %s: %s\n", st.CPU.Arch, strings.Join(feats, " "))
	forced := ""
	if st.CPU.Forced != "" {
		forced = " (forced by config)"
	}
	fmt.Fprintf(&b, "aead order %s%s\n", strings.Join(st.CPU.AEADOrder, ", "), forced)
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LISTENER\tADDRESS\tTLS\tCERTIFICATES\tROUTES")
	for _, l := range st.Listeners {
		addr := l.Addr
		if !l.Serving {
			addr = "(not serving)"
		}
		mtls := ""
		if l.ClientAuth {
			mtls = " +mTLS"
		}
		fmt.Fprintf(tw, "%s\t%s\t>=%s%s\t%s\t%s\n", l.Name, addr, l.MinTLS, mtls, strings.Join(l.Certs, " "), strings.Join(l.Routes, ","))
	}
	tw.Flush()
	if st.Steering.Enabled {
		c := st.Steering.Counters
		fmt.Fprintf(&b, "\nsteering   on, %d binding(s); lookups %d, steered %d, misses %d, errors %d\n",
			len(st.Steering.Bindings), c["lookups"], c["steered"], c["misses"], c["errors"])
		for _, bd := range st.Steering.Bindings {
			sock := "socket registered"
			if !bd.Socket {
				sock = "NO SOCKET (connections dropped)"
			}
			fmt.Fprintf(&b, "  %s %s port %d -> %s: %s\n", bd.Proto, bd.Prefix, bd.Port, bd.Listener, sock)
		}
	} else {
		fmt.Fprintf(&b, "\nsteering   off: %s\n", st.Steering.Reason)
	}
	if st.Guard.Enabled {
		fmt.Fprintf(&b, "guard      on\n")
	} else {
		fmt.Fprintf(&b, "guard      off: %s\n", st.Guard.Reason)
	}
	for _, it := range st.Interfaces {
		state := "attached (" + it.Mode + ")"
		if !it.Attached {
			state = "NOT attached: " + it.Error
		}
		fmt.Fprintf(&b, "  %s: %s\n", it.Name, state)
	}
	fmt.Fprintf(&b, "blocklist  %d entr%s\n", st.Blocklist, map[bool]string{true: "y", false: "ies"}[st.Blocklist == 1])
	if st.Seal != nil {
		var ids []string
		for _, k := range st.Seal.Keys {
			ids = append(ids, fmt.Sprintf("%d (%s)", k.ID, k.State))
		}
		fmt.Fprintf(&b, "sealing    keys %s\n", strings.Join(ids, ", "))
	}
	for _, p := range st.Policy {
		j, _ := json.Marshal(p)
		fmt.Fprintf(&b, "policy     %s\n", j)
	}
	if st.Anomaly != nil {
		j, _ := json.Marshal(st.Anomaly)
		fmt.Fprintf(&b, "anomaly    %s\n", j)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
