package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealgate/sealgate/bpf"
	"github.com/sealgate/sealgate/daemon/config"
)

// ebpfState is the daemon's side of bpf/: sk_lookup steering of the
// configured ports into the engine's sockets and the XDP guard on
// interfaces. Either may be unavailable (no privileges, old kernel); the
// reason is kept for status, and with require_ebpf the daemon refuses to start.
type ebpfState struct {
	mu          sync.Mutex
	log         *slog.Logger
	steering    *bpf.Steering
	guard       *bpf.Guard
	steerReason string
	guardReason string
	bindings    []bpf.Binding
	cancelWatch context.CancelFunc
	watchDone   chan struct{}
}

func bpfOptions(cfg *config.Config, log *slog.Logger) bpf.Options {
	return bpf.Options{BPFFS: cfg.Daemon.BPFFS, Logger: log, LockWait: 15 * time.Second}
}

// bindingsFor translates every listener's steer list.
func bindingsFor(cfg *config.Config) ([]bpf.Binding, error) {
	var all []bpf.Binding
	for i, l := range cfg.Listeners {
		entries := make([]bpf.SteerConfig, len(l.Steer))
		for j, s := range l.Steer {
			ports := make([]int, len(s.Ports))
			for k, p := range s.Ports {
				ports[k] = int(p)
			}
			entries[j] = bpf.SteerConfig{Prefix: s.Prefix, Ports: ports, Proto: s.Proto}
		}
		b, err := bpf.SteerBindings(l.Name, entries)
		if err != nil {
			return nil, fmt.Errorf("listener[%d].%w", i, err)
		}
		all = append(all, b...)
	}
	return all, nil
}

// startEBPF opens steering and the guard as far as this host allows.
func (d *Daemon) startEBPF(cfg *config.Config) error {
	e := &ebpfState{log: d.ext.log.With("component", "ebpf")}
	d.bpf = e
	bindings, err := bindingsFor(cfg)
	if err != nil {
		return err
	}
	opts := bpfOptions(cfg, e.log)
	if len(bindings) == 0 {
		e.steerReason = "no listener has a steer list"
	} else if err := bpf.ProbeSteering(); err != nil {
		e.steerReason = err.Error()
	} else if s, err := bpf.OpenSteering(opts); err != nil {
		e.steerReason = err.Error()
	} else {
		e.steering = s
	}
	if err := bpf.ProbeGuard(); err != nil {
		e.guardReason = err.Error()
	} else if g, err := bpf.OpenGuard(opts); err != nil {
		e.guardReason = err.Error()
	} else {
		e.guard = g
	}
	if cfg.Daemon.RequireEBPF {
		var why []string
		if e.steering == nil && len(bindings) > 0 {
			why = append(why, "steering: "+e.steerReason)
		}
		if e.guard == nil {
			why = append(why, "guard: "+e.guardReason)
		}
		if len(why) > 0 {
			e.close()
			return fmt.Errorf("require_ebpf is set but eBPF is unavailable: %s", strings.Join(why, "; "))
		}
	}
	if e.steering == nil && len(bindings) > 0 {
		e.log.Warn("steering disabled; the engine serves only on its own listen addresses", "reason", e.steerReason)
	}
	if e.guard == nil {
		e.log.Warn("XDP guard disabled", "reason", e.guardReason)
	}
	if err := e.apply(cfg, bindings); err != nil {
		e.close()
		return err
	}
	if e.guard != nil {
		// Entries pinned by a predecessor survive restarts; show them.
		if entries, err := e.guard.Blocked(); err == nil {
			for _, b := range entries {
				var ttl time.Duration
				if !b.Expires.IsZero() {
					ttl = time.Until(b.Expires)
				}
				d.deny.Block(b.Prefix, ttl, "restored from the pinned guard blocklist", "guard")
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		e.cancelWatch, e.watchDone = cancel, make(chan struct{})
		go func() {
			defer close(e.watchDone)
			if err := e.guard.Watch(ctx); err != nil {
				e.log.Warn("interface watch stopped; removed interfaces will not be re-attached", "err", err)
			}
		}()
	}
	d.reg.MustRegister(&ebpfCollector{e: e})
	return nil
}

// apply sets bindings, guard ports and rates, and attaches configured
// interfaces. Attach failures are reported in status, not fatal.
func (e *ebpfState) apply(cfg *config.Config, bindings []bpf.Binding) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bindings = bindings
	if e.steering != nil {
		if err := e.steering.SetBindings(bindings); err != nil {
			return fmt.Errorf("steering bindings: %w", err)
		}
	}
	if e.guard == nil {
		return nil
	}
	if err := e.guard.SetProtectedPorts(bpf.ProtectedPorts(bindings)); err != nil {
		return fmt.Errorf("guard ports: %w", err)
	}
	for _, it := range cfg.Interfaces {
		ic := bpf.InterfaceConfig{Name: it.Name, Mode: it.Mode, SynRate: it.SynRate, SynBurst: it.SynBurst}
		if err := e.guard.SetRate(it.Name, it.SynRate, ic.Burst()); err != nil {
			e.log.Warn("guard rate not set", "interface", it.Name, "err", err)
		}
		if a, err := e.guard.Attach(it.Name, it.Mode); err != nil {
			e.log.Warn("guard not attached", "interface", it.Name, "err", err)
		} else {
			e.log.Info("guard attached", "interface", it.Name, "mode", a.Mode, "driver", a.Driver)
		}
	}
	return nil
}

func (e *ebpfState) close() {
	if e == nil {
		return
	}
	if e.cancelWatch != nil {
		e.cancelWatch()
		<-e.watchDone
		e.cancelWatch = nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// Close keeps everything pinned: steering keeps working with the sockets
	// the successor inherits, and the guard stays attached.
	if e.steering != nil {
		e.steering.Close()
		e.steering = nil
	}
	if e.guard != nil {
		e.guard.Close()
		e.guard = nil
	}
}

func (d *Daemon) ebpfRegister(listener string, ln net.Listener) {
	e := d.bpf
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.steering == nil {
		return
	}
	steered := false
	for _, b := range e.bindings {
		steered = steered || b.Dest == listener
	}
	if !steered {
		return
	}
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return
	}
	if err := e.steering.RegisterSocket(listener, sc); err != nil {
		e.log.Error("listening socket not registered for steering; its bindings refuse connections", "listener", listener, "err", err)
	}
}

func (d *Daemon) ebpfUnregister(listener string) {
	if e := d.bpf; e != nil {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.steering != nil {
			e.steering.UnregisterSocket(listener)
		}
	}
}

func (d *Daemon) reloadEBPF(cfg *config.Config) error {
	e := d.bpf
	if e == nil {
		return nil
	}
	bindings, err := bindingsFor(cfg)
	if err != nil {
		return err
	}
	return e.apply(cfg, bindings)
}

func (e *ebpfState) fillStatus(st *Status) {
	if e == nil {
		st.Steering.Reason, st.Guard.Reason = "not started", "not started"
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st.Steering = SteeringStatus{Enabled: e.steering != nil, Reason: e.steerReason, Bindings: []BindingStatus{}}
	if e.steering != nil {
		if states, err := e.steering.Bindings(); err == nil {
			for _, b := range states {
				st.Steering.Bindings = append(st.Steering.Bindings, BindingStatus{
					Listener: b.Dest, Proto: b.Proto, Prefix: b.Prefix.String(), Port: b.Port,
					Socket: b.IPv6Socket || (b.IPv4Socket && (b.Prefix.Addr().Is4() || b.Prefix.Addr().Is4In6())),
				})
			}
		}
		if s, err := e.steering.Stats(); err == nil {
			st.Steering.Counters = map[string]int64{"lookups": int64(s.Lookups), "steered": int64(s.Steered), "misses": int64(s.Misses), "errors": int64(s.Errors)}
		}
	}
	st.Guard = GuardStatus{Enabled: e.guard != nil, Reason: e.guardReason}
	if e.guard != nil {
		for _, a := range e.guard.Attachments() {
			st.Interfaces = append(st.Interfaces, InterfaceStatus{Name: a.Interface, Attached: a.Attached, Mode: a.Mode, Driver: a.Driver, Error: a.Error})
		}
	}
}

func (e *ebpfState) block(p netip.Prefix, ttl time.Duration) error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.guard == nil {
		return nil
	}
	return e.guard.Block(p, ttl)
}

func (e *ebpfState) unblock(p netip.Prefix) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.guard != nil {
		e.guard.Unblock(p)
	}
}

// ebpfCollector exports the kernel counters at scrape time.
type ebpfCollector struct{ e *ebpfState }

var (
	descSteerLookups = prometheus.NewDesc("sealgate_steer_lookups_total", "Socket lookups for new connections seen by the steering program.", nil, nil)
	descSteerSteered = prometheus.NewDesc("sealgate_steer_steered_total", "New connections assigned to an engine socket.", nil, nil)
	descSteerMisses  = prometheus.NewDesc("sealgate_steer_misses_total", "New connections to a steered binding without a socket (refused: fail closed).", nil, nil)
	descSteerErrors  = prometheus.NewDesc("sealgate_steer_errors_total", "New connections the kernel would not assign (refused).", nil, nil)
	descGuard        = prometheus.NewDesc("sealgate_guard_packets_total", "Packets seen by the XDP guard by interface, verdict and reason.", []string{"interface", "verdict", "reason"}, nil)
)

func (c *ebpfCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSteerLookups
	ch <- descSteerSteered
	ch <- descSteerMisses
	ch <- descSteerErrors
	ch <- descGuard
}

func (c *ebpfCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	var s bpf.SteerStats
	if e.steering != nil {
		s, _ = e.steering.Stats()
	}
	ch <- prometheus.MustNewConstMetric(descSteerLookups, prometheus.CounterValue, float64(s.Lookups))
	ch <- prometheus.MustNewConstMetric(descSteerSteered, prometheus.CounterValue, float64(s.Steered))
	ch <- prometheus.MustNewConstMetric(descSteerMisses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(descSteerErrors, prometheus.CounterValue, float64(s.Errors))
	if e.guard == nil {
		return
	}
	counters, err := e.guard.Stats()
	if err != nil {
		return
	}
	seen := make(map[[3]string]bool)
	for _, gc := range counters {
		k := [3]string{gc.Interface, gc.Verdict, gc.Reason}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(descGuard, prometheus.CounterValue, float64(gc.Packets), gc.Interface, gc.Verdict, gc.Reason)
	}
	// Zeros for attached interfaces, so rates start from a sample.
	for _, a := range e.guard.Attachments() {
		for _, vr := range bpf.Reasons() {
			if k := [3]string{a.Interface, vr[0], vr[1]}; !seen[k] {
				ch <- prometheus.MustNewConstMetric(descGuard, prometheus.CounterValue, 0, a.Interface, vr[0], vr[1])
			}
		}
	}
}

// ebpfAdminRoutes adds interface attach/detach.
func (d *Daemon) ebpfAdminRoutes(a *adminServer, mux *http.ServeMux) {
	a.handle(mux, "POST /v1/interfaces/{name}/attach", levelAdmin, func(w http.ResponseWriter, r *http.Request) error {
		g, err := d.guardOrErr()
		if err != nil {
			return err
		}
		name, mode := r.PathValue("name"), r.URL.Query().Get("mode")
		if mode == "" {
			mode = bpf.ModeAuto
		}
		if err := (bpf.InterfaceConfig{Name: name, Mode: mode}).Validate(); err != nil {
			return apiErr(http.StatusBadRequest, err.Error(), nil)
		}
		att, err := g.Attach(name, mode)
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, bpf.ErrNotFound) {
				status = http.StatusNotFound
			}
			return apiErr(status, fmt.Sprintf("attaching the guard to %s: %v", name, err), nil)
		}
		d.auditEvent("attach", slog.String("interface", name), slog.String("mode", att.Mode))
		return writeJSON(w, att)
	})
	a.handle(mux, "POST /v1/interfaces/{name}/detach", levelAdmin, func(w http.ResponseWriter, r *http.Request) error {
		g, err := d.guardOrErr()
		if err != nil {
			return err
		}
		name := r.PathValue("name")
		if err := g.Detach(name); err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, bpf.ErrNotFound) {
				status = http.StatusNotFound
			}
			return apiErr(status, fmt.Sprintf("detaching the guard from %s: %v", name, err), nil)
		}
		d.auditEvent("detach", slog.String("interface", name))
		return writeJSON(w, map[string]any{"ok": true, "interface": name, "attached": false})
	})
	a.handle(mux, "GET /v1/interfaces", levelRead, func(w http.ResponseWriter, r *http.Request) error {
		var st Status
		d.bpf.fillStatus(&st)
		return writeJSON(w, map[string]any{"guard": st.Guard, "interfaces": st.Interfaces})
	})
}

func (d *Daemon) guardOrErr() (*bpf.Guard, error) {
	e := d.bpf
	if e == nil {
		return nil, apiErr(http.StatusServiceUnavailable, "the XDP guard is not running", nil)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.guard == nil {
		return nil, apiErr(http.StatusServiceUnavailable, "the XDP guard is off: "+e.guardReason, nil)
	}
	return e.guard, nil
}

// cleanupEBPF removes all pinned state.
func cleanupEBPF(cfg *config.Config, log *slog.Logger) error {
	return bpf.Cleanup(bpfOptions(cfg, log))
}
