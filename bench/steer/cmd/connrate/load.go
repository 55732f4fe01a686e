package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// path is one way to reach the listener.
type path struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// phase is one measured run of one path.
type phase struct {
	Path      string          `json:"path"`
	Round     int             `json:"round"`
	Conns     int64           `json:"conns"`
	Errors    int64           `json:"errors"`
	Elapsed   time.Duration   `json:"elapsed_ns"`
	Rate      float64         `json:"conns_per_s"`
	Conntrack int64           `json:"conntrack_entries"` // of this path at the end of the phase; -1: unknown
	lat       []time.Duration // connect + request + response + close
}

type loadConfig struct {
	paths    []path
	workers  int
	rounds   int
	duration time.Duration
	warmup   time.Duration
	netns    string // server namespace name, for iptables and conntrack
	listen   netip.AddrPort
	redirect netip.AddrPort
	direct   string // serve's control address
	steered  string
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	direct := fs.String("direct", "192.0.2.1:8080", "the listener's own address")
	steered := fs.String("steered", "192.0.2.1:443", "the steered address (serve -steer)")
	redirect := fs.String("redirect", "192.0.2.1:80", "the address the iptables REDIRECT rule sends to the listener's port")
	netns := fs.String("server-netns", "", "name of the server's network namespace (ip netns), where the REDIRECT rule goes")
	workers := fs.Int("workers", 16, "concurrent clients")
	rounds := fs.Int("rounds", 5, "rounds; each runs every path once, in rotating order")
	duration := fs.Duration("duration", 2*time.Second, "measured time per path per round")
	warmup := fs.Duration("warmup", time.Second, "unmeasured run of each path before the first round")
	jsonOut := fs.String("json", "", "write the per-round figures to this file")
	_ = fs.Parse(args)

	cfg := loadConfig{workers: *workers, rounds: *rounds, duration: *duration, warmup: *warmup, netns: *netns}
	var err error
	if cfg.listen, err = netip.ParseAddrPort(*direct); err != nil {
		return fmt.Errorf("-direct: %w", err)
	}
	if cfg.redirect, err = netip.ParseAddrPort(*redirect); err != nil {
		return fmt.Errorf("-redirect: %w", err)
	}
	if _, err := netip.ParseAddrPort(*steered); err != nil {
		return fmt.Errorf("-steered: %w", err)
	}
	switch {
	case cfg.netns == "":
		return errors.New("-server-netns is required (the REDIRECT rule is installed there)")
	case cfg.workers < 1 || cfg.rounds < 1 || cfg.duration <= 0:
		return errors.New("-workers, -rounds and -duration must be positive")
	}
	cfg.paths = []path{{"direct", *direct}, {"steered", *steered}, {"redirect", *redirect}, {"direct_no_sk_lookup", *direct}}
	cfg.direct, cfg.steered = *direct, *steered

	if _, err := control(*direct, statsRequest); err != nil {
		return err
	}
	_ = removeRedirect(cfg) // a rule left by an interrupted run would skew the other paths
	if cfg.warmup > 0 {
		for _, p := range cfg.paths {
			if _, err := cfg.run(p, 0, cfg.warmup); err != nil {
				return err
			}
		}
	}
	var phases []*phase
	var redirected, steeredDelta int64
	for r := range cfg.rounds {
		for i := range cfg.paths {
			p := cfg.paths[(r+i)%len(cfg.paths)] // rotate the order: no path always runs first
			ph, err := cfg.run(p, r+1, cfg.duration)
			if err != nil {
				return err
			}
			redirected += ph.ruleHits
			steeredDelta += ph.steered
			phases = append(phases, &ph.phase)
		}
	}

	var checks []string
	var steeredConns, redirectConns int64
	for _, ph := range phases {
		switch ph.Path {
		case "steered":
			steeredConns += ph.Conns
		case "redirect":
			redirectConns += ph.Conns
		}
	}
	checks = append(checks, fmt.Sprintf("sk_lookup steered counter: +%d during the steered phases, for %d connections counted in them", steeredDelta, steeredConns))
	if steeredDelta < steeredConns {
		return fmt.Errorf("the steering counter grew by %d but %d steered connections completed: the steered path did not go through sk_lookup", steeredDelta, steeredConns)
	}
	checks = append(checks, fmt.Sprintf("iptables REDIRECT rule packets: %d for %d measured redirected connections", redirected, redirectConns))
	if redirected < redirectConns {
		return fmt.Errorf("the REDIRECT rule matched %d packets but %d redirected connections completed", redirected, redirectConns)
	}

	rep := summarize(cfg.paths, phases)
	if *jsonOut != "" {
		b, err := json.MarshalIndent(map[string]any{"phases": phases, "summary": rep}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return fmt.Errorf("writing -json: %w", err)
		}
	}
	writeTable(os.Stdout, rep)
	fmt.Println()
	for _, c := range checks {
		fmt.Println("- " + c)
	}
	return nil
}

type measured struct {
	phase
	ruleHits int64 // packets of the REDIRECT rule (redirect)
	steered  int64 // growth of the sk_lookup steered counter (steered)
}

// run measures path p for d with cfg.workers clients. For the redirect path it installs the rule
// first and removes it (and the nat table, so conntrack stops) afterwards.
func (cfg loadConfig) run(p path, round int, d time.Duration) (measured, error) {
	var m measured
	var steeredBefore uint64
	switch p.Name {
	case "redirect":
		if err := addRedirect(cfg); err != nil {
			return m, err
		}
	case "steered":
		r, err := control(cfg.direct, statsRequest)
		if err != nil {
			return m, err
		}
		steeredBefore = r.Stats.Steered
	case "direct_no_sk_lookup":
		if _, err := control(cfg.direct, detachRequest); err != nil {
			return m, err
		}
		// Without the program nothing listens on the steered address. The kernel releases an
		// unpinned link from a work queue, so give it a moment.
		if err := waitRefused(cfg.steered, 2*time.Second); err != nil {
			return m, err
		}
	}
	var (
		stop   atomic.Bool
		wg     sync.WaitGroup
		conns  atomic.Int64
		errs   atomic.Int64
		lats   = make([][]time.Duration, cfg.workers)
		errMsg atomic.Value
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range cfg.workers {
		wg.Go(func() {
			var dl net.Dialer
			dl.Timeout = 2 * time.Second
			dl.SetMultipathTCP(false)
			buf := make([]byte, 64)
			for !stop.Load() {
				t0 := time.Now()
				if err := exchange(&dl, p.Addr, buf); err != nil {
					errs.Add(1)
					errMsg.Store(err.Error())
					time.Sleep(time.Millisecond)
					continue
				}
				t1 := time.Now()
				if t1.After(deadline) {
					return
				}
				conns.Add(1)
				lats[w] = append(lats[w], t1.Sub(t0))
			}
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	elapsed := d
	port, _ := netip.ParseAddrPort(p.Addr)
	ct := conntrackEntries(cfg.netns, port.Port())

	m.Path, m.Round, m.Conns, m.Errors, m.Elapsed = p.Name, round, conns.Load(), errs.Load(), elapsed
	m.Rate = float64(m.Conns) / elapsed.Seconds()
	m.Conntrack = ct
	for _, l := range lats {
		m.lat = append(m.lat, l...)
	}
	switch p.Name {
	case "redirect":
		hits, err := ruleHits(cfg)
		if err != nil {
			return m, err
		}
		m.ruleHits = hits
		if err := removeRedirect(cfg); err != nil {
			return m, err
		}
	case "steered":
		r, err := control(cfg.direct, statsRequest)
		if err != nil {
			return m, err
		}
		m.steered = int64(r.Stats.Steered - steeredBefore)
	case "direct_no_sk_lookup":
		if _, err := control(cfg.direct, attachRequest); err != nil {
			return m, err
		}
	}
	if m.Conns == 0 {
		msg, _ := errMsg.Load().(string)
		return m, fmt.Errorf("%s (%s): no connection completed in %v (%d errors, last: %s)", p.Name, p.Addr, d, m.Errors, msg)
	}
	return m, nil
}

// waitRefused waits up to d for addr to refuse connections.
func waitRefused(addr string, d time.Duration) error {
	for end := time.Now().Add(d); ; {
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err != nil {
			return nil
		}
		c.Close()
		if time.Now().After(end) {
			return fmt.Errorf("%s still accepts connections %v after DETACH: the sk_lookup program is still attached", addr, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exchange opens a connection, sends the request, reads the response and closes with a reset
// (SO_LINGER 0). Neither side keeps TIME_WAIT: with TIME_WAIT, the paths that share the listener's
// port (direct and redirect) would meet their own earlier connections' TIME_WAIT sockets far more
// often than the steered port does, which skews the comparison by far more than steering costs.
func exchange(dl *net.Dialer, addr string, buf []byte) error {
	c, err := dl.Dial("tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetLinger(0)
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		return fmt.Errorf("writing request: %w", err)
	}
	n, err := io.ReadFull(c, buf[:len(response)])
	if err != nil || string(buf[:n]) != response {
		return fmt.Errorf("reading response: got %q: %v", buf[:n], err)
	}
	return nil
}

// control sends a control line to serve over the direct path and returns its reply.
func control(addr, line string) (controlReply, error) {
	var r controlReply
	what := strings.TrimSpace(line)
	c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err != nil {
		return r, fmt.Errorf("sending %s to serve: %w (is connrate serve running?)", what, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line); err != nil {
		return r, fmt.Errorf("sending %s to serve: %w", what, err)
	}
	b, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return r, fmt.Errorf("reading the reply to %s: %w", what, err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decoding the reply to %s %q: %w", what, b, err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("serve: %s: %s", what, r.Error)
	}
	return r, nil
}

func redirectRule(cfg loadConfig) []string {
	return []string{"PREROUTING", "-p", "tcp", "-d", cfg.redirect.Addr().String(), "--dport", strconv.Itoa(int(cfg.redirect.Port())),
		"-j", "REDIRECT", "--to-ports", strconv.Itoa(int(cfg.listen.Port()))}
}

func inNetns(cfg loadConfig, name string, args ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", cfg.netns, name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s in netns %s: %w: %s", name, strings.Join(args, " "), cfg.netns, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func addRedirect(cfg loadConfig) error {
	_, err := inNetns(cfg, "iptables", append([]string{"-w", "-t", "nat", "-A"}, redirectRule(cfg)...)...)
	return err
}

// removeRedirect deletes the rule and the whole nat table: a nat table that exists keeps conntrack
// running in the namespace, which would tax the other paths.
func removeRedirect(cfg loadConfig) error {
	_, _ = inNetns(cfg, "iptables", append([]string{"-w", "-t", "nat", "-D"}, redirectRule(cfg)...)...)
	if _, err := exec.LookPath("nft"); err != nil {
		return nil
	}
	out, err := inNetns(cfg, "nft", "list", "tables")
	if err != nil {
		return err
	}
	if strings.Contains(string(out), "table ip nat") {
		_, err = inNetns(cfg, "nft", "delete", "table", "ip", "nat")
	}
	return err
}

// ruleHits returns the packet counter of the REDIRECT rule.
func ruleHits(cfg loadConfig) (int64, error) {
	out, err := inNetns(cfg, "iptables", "-w", "-t", "nat", "-L", "PREROUTING", "-n", "-v", "-x")
	if err != nil {
		return 0, err
	}
	return parseRuleHits(string(out))
}

// parseRuleHits reads the packet count of the REDIRECT line of `iptables -L -v -x` output.
func parseRuleHits(out string) (int64, error) {
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "REDIRECT" {
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no REDIRECT rule in iptables output: %q", out)
}

// conntrackEntries returns how many conntrack entries of the namespace have port as their original
// destination port, or -1 (with a warning) when they cannot be read. Each path has its own port, so
// this tells whether conntrack tracked that path's connections (entries of reset connections stay
// 10 s, longer than a phase).
func conntrackEntries(netns string, port uint16) int64 {
	const file = "/proc/net/nf_conntrack"
	out, err := exec.Command("ip", "netns", "exec", netns, "cat", file).Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "connrate: reading %s in %s: %v\n", file, netns, err)
		return -1
	}
	return countDport(string(out), port)
}

// countDport counts the lines of /proc/net/nf_conntrack whose first (original direction) dport is port.
func countDport(table string, port uint16) int64 {
	want := "dport=" + strconv.Itoa(int(port))
	var n int64
	for line := range strings.Lines(table) {
		for f := range strings.FieldsSeq(line) {
			if strings.HasPrefix(f, "dport=") {
				if f == want {
					n++
				}
				break
			}
		}
	}
	return n
}
