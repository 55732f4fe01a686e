package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealgate/sealgate/appliance"
	"github.com/sealgate/sealgate/appliance/blocker"
	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/crypto/cpu"
	"github.com/sealgate/sealgate/daemon/config"
)

// Options tune a daemon beyond its config file.
type Options struct {
	// Load returns the config; it is called at start and on every reload.
	Load func() (*config.Config, error)
	// Stdout receives the JSON logs and the access log.
	Stdout io.Writer
	// Banner, when set, is called once the daemon serves (the demo prints
	// what to try).
	Banner func(d *Daemon)
	// Signals makes Run handle SIGHUP (reload) and SIGTERM/SIGINT (drain);
	// off in tests.
	Signals bool
}

// Daemon is one running sealgate.
type Daemon struct {
	out     *logWriter // the log's and the access log's output; Run closes it
	opts    Options
	log     *slog.Logger
	level   *slog.LevelVar
	metrics *metrics.Metrics
	reg     *prometheus.Registry
	engine  *appliance.Engine
	profile cpu.Profile
	deny    *blocker.List
	notify  *notifier
	started time.Time

	mu         sync.Mutex
	cfg        *config.Config
	listeners  map[string]*boundListener
	reload     reloadState
	admin      *adminServer
	metricsLn  net.Listener
	inherited  map[string]*os.File
	handedIn   map[string]net.Listener
	handoverLn *net.UnixListener
	handedOver chan struct{}
	ext        extensions
	bpf        *ebpfState
}

type reloadState struct {
	At    time.Time `json:"at,omitzero"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
	Count int       `json:"count"`
}

// New loads the config and prepares a daemon; Run starts it.
func New(o Options) (*Daemon, error) {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	cfg, err := o.Load()
	if err != nil {
		return nil, err
	}
	prof, err := cpu.NewProfile(cpu.Detect(), cfg.Crypto.AEAD)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Daemon.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	lv := new(slog.LevelVar)
	lv.Set(parseLevel(cfg.Daemon.LogLevel))
	// The log and the access log share the output, whole lines; from here
	// a failure closes it, so what was logged is written.
	out := newLogWriter(o.Stdout)
	log := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: lv}))
	d := &Daemon{
		out:        out,
		opts:       o,
		log:        log.With("component", "daemon"),
		level:      lv,
		metrics:    metrics.New(),
		profile:    prof,
		deny:       blocker.NewList(nil),
		notify:     newNotifier(),
		started:    time.Now(),
		cfg:        cfg,
		listeners:  make(map[string]*boundListener),
		inherited:  inheritedFiles(),
		handedOver: make(chan struct{}, 1),
	}
	d.reg = d.metrics.Registry
	d.registerDaemonMetrics()
	setMemoryLimit(d.log)
	var access *slog.Logger
	if cfg.Daemon.AccessLog == "stdout" {
		access = appliance.NewAccessLogger(out, lv)
	}
	if err := d.initExtensions(cfg, log); err != nil {
		out.Close()
		return nil, err
	}
	d.engine = appliance.New(appliance.Options{
		Logger:    log,
		AccessLog: access,
		Metrics:   d.metrics,
		Deny:      d.deny,
		Outer:     d.outerHandler(),
	})
	return d, nil
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	l.UnmarshalText([]byte(s))
	return l
}

func (d *Daemon) registerDaemonMetrics() {
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sealgate_build_info", Help: "Build information; always 1.",
	}, []string{"version", "commit", "goversion"})
	build.WithLabelValues(Version, Commit, runtime.Version()).Set(1)
	feat := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sealgate_cpu_feature", Help: "CPU features detected at start-up (1 present, 0 absent).",
	}, []string{"feature"})
	for name, ok := range d.profile.Features.Map() {
		v := 0.0
		if ok {
			v = 1
		}
		feat.WithLabelValues(name).Set(v)
	}
	aead := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sealgate_aead_preference", Help: "AEAD preference rank chosen at start-up (1 is first).",
	}, []string{"aead"})
	for i, a := range d.profile.AEADOrder {
		aead.WithLabelValues(string(a)).Set(float64(i + 1))
	}
	d.reg.MustRegister(build, feat, aead,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

func (d *Daemon) gatherer() prometheus.Gatherer { return d.reg }

// Config returns the config in force.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Run serves until ctx ends or SIGTERM/SIGINT arrives, then drains.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.out.Close() // every line out before the process ends
	cfg := d.Config()
	spec, err := d.buildSpec(cfg)
	if err != nil {
		d.stopExtensions()
		return err
	}
	if err := d.engine.Apply(spec); err != nil {
		d.ext.abortStages()
		d.stopExtensions()
		return err
	}
	d.ext.commitStages()
	// Take the predecessor's sockets first: it then releases the pinned
	// eBPF state that startExtensions waits for.
	handed, err := fetchHandover(cfg.Daemon.StateDir)
	if err != nil {
		d.log.Warn("predecessor handover failed; binding fresh sockets", "err", err)
	}
	d.handedIn = handed
	if err := d.startExtensions(cfg); err != nil {
		d.stopHandover()
		return err
	}
	if err := d.bindListeners(cfg); err != nil {
		d.stopExtensions()
		return err
	}
	sockGroup := cfg.Daemon.AdminGroup
	if cfg.Daemon.ReadGroup != "" {
		sockGroup = cfg.Daemon.ReadGroup
	}
	ln, _, err := listenAdmin(cfg.Daemon.AdminSocket, sockGroup)
	for i := 0; err != nil && handed != nil && i < 100; i++ {
		// The predecessor is still closing its admin socket.
		time.Sleep(100 * time.Millisecond)
		ln, _, err = listenAdmin(cfg.Daemon.AdminSocket, sockGroup)
	}
	gid := lookupGID(cfg.Daemon.AdminGroup)
	if err != nil {
		d.engine.Shutdown(context.Background())
		d.stopExtensions()
		return err
	}
	d.admin = &adminServer{d: d, log: d.log.With("component", "admin"), group: cfg.Daemon.AdminGroup,
		ln: ln, selfUID: uint32(os.Getuid()), groupGID: gid}
	d.admin.serve()
	d.serveHandover(cfg.Daemon.StateDir)
	if cfg.Daemon.MetricsListen != "" {
		if err := d.serveMetrics(cfg.Daemon.MetricsListen); err != nil {
			d.shutdown(context.Background())
			return err
		}
	}
	d.mu.Lock()
	d.reload = reloadState{At: time.Now(), OK: true}
	d.mu.Unlock()
	d.notify.send("READY=1\nSTATUS=serving")
	d.log.Info("sealgate ready", "version", Version, "config", cfg.Path, "admin_socket", cfg.Daemon.AdminSocket,
		"aead_order", d.profile.Names())
	if d.opts.Banner != nil {
		d.opts.Banner(d)
	}

	var sigs chan os.Signal
	if d.opts.Signals {
		sigs = make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
		defer signal.Stop(sigs)
	}
	var watchdog <-chan time.Time
	if iv := watchdogInterval(); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		watchdog = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return d.shutdown(context.Background())
		case <-d.handedOver:
			// The successor waits for the admin socket: free it first.
			d.closeAdmin(context.Background())
			return d.shutdown(context.Background())
		case <-watchdog:
			d.notify.send("WATCHDOG=1")
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.Reload()
				continue
			}
			d.log.Info("stopping", "signal", s.String())
			return d.shutdown(context.Background())
		}
	}
}

// shutdown drains: stop accepting, let in-flight requests finish within the
// configured deadline, then close.
func (d *Daemon) shutdown(ctx context.Context) error {
	d.notify.send("STOPPING=1")
	cfg := d.Config()
	timeout := cfg.Limits.ShutdownTimeout.D()
	if timeout <= 0 {
		timeout = appliance.DefaultShutdownTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d.stopHandover()
	// Release the eBPF objects first (they stay pinned): a successor waits
	// for them while this process drains.
	d.bpf.close()
	err := d.engine.Shutdown(ctx)
	d.closeAdmin(ctx)
	if d.metricsLn != nil {
		d.metricsLn.Close()
	}
	d.stopExtensions()
	if err != nil {
		d.log.Warn("drain deadline passed; remaining connections closed", "err", err)
	} else {
		d.log.Info("stopped cleanly")
	}
	return nil
}

// Reload re-reads the config and certificates. A bad config is refused and
// recorded in status; the running one keeps serving.
func (d *Daemon) Reload() error {
	d.notify.reloading()
	defer d.notify.send("READY=1\nSTATUS=serving")
	err := d.reloadOnce()
	d.mu.Lock()
	d.reload.At, d.reload.Count = time.Now(), d.reload.Count+1
	d.reload.OK = err == nil
	d.reload.Error = ""
	if err != nil {
		d.reload.Error = err.Error()
	}
	d.mu.Unlock()
	if err != nil {
		d.log.Error("reload refused; previous config keeps serving", "err", err)
	} else {
		d.log.Info("reloaded", "config_sha256", d.Config().SHA256)
	}
	d.auditEvent("reload", slog.Bool("ok", err == nil))
	return err
}

func (d *Daemon) reloadOnce() error {
	cfg, err := d.opts.Load()
	if err != nil {
		return err
	}
	old := d.Config()
	if cfg.Daemon.AdminSocket != old.Daemon.AdminSocket || cfg.Daemon.StateDir != old.Daemon.StateDir ||
		cfg.Crypto.AEAD != old.Crypto.AEAD || cfg.Daemon.MetricsListen != old.Daemon.MetricsListen ||
		!reflect.DeepEqual(cfg.Seal, old.Seal) || cfg.Daemon.BPFFS != old.Daemon.BPFFS || cfg.Audit != old.Audit ||
		cfg.Daemon.AdminGroup != old.Daemon.AdminGroup || cfg.Daemon.ReadGroup != old.Daemon.ReadGroup {
		return errors.New("daemon.admin_socket, admin_group, read_group, state_dir, metrics_listen, bpffs, crypto.aead, [seal] and [audit] change only on restart")
	}
	if err := d.prepareReload(cfg); err != nil {
		return err
	}
	spec, err := d.buildSpec(cfg)
	if err != nil {
		d.abortReload()
		return err
	}
	if err := d.engine.Apply(spec); err != nil {
		d.ext.abortStages()
		d.abortReload()
		return err
	}
	d.ext.commitStages()
	d.level.Set(parseLevel(cfg.Daemon.LogLevel))
	d.mu.Lock()
	d.cfg = cfg
	d.mu.Unlock()
	extErr := d.reloadExtensions(cfg)
	if err := d.bindListeners(cfg); err != nil {
		return err
	}
	return extErr
}

// listenTCP opens a TCP listener with MPTCP off: an MPTCP listener cannot be
// put in the steering SOCKMAP.
func listenTCP(addr string) (net.Listener, error) {
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
}

func (d *Daemon) serveMetrics(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics_listen: %w", err)
	}
	d.metricsLn = ln
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return nil
}

// Addr returns the bound address of a listener, for the demo and tests.
func (d *Daemon) Addr(listener string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if bl := d.listeners[listener]; bl != nil {
		return bl.ln.Addr().String()
	}
	return ""
}

func (d *Daemon) closeAdmin(ctx context.Context) {
	d.mu.Lock()
	a := d.admin
	d.admin = nil
	d.mu.Unlock()
	if a != nil {
		// Closing the listener unlinks the socket path it created.
		a.close(ctx)
	}
}
