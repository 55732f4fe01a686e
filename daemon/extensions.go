package daemon

import (
	"reflect"
	"sync"

	"github.com/sealgate/sealgate/appliance/anomaly"
	"github.com/sealgate/sealgate/appliance/audit"
	"github.com/sealgate/sealgate/appliance/dlp"
	"github.com/sealgate/sealgate/appliance/policy"
	"github.com/sealgate/sealgate/appliance/sealing"
	"github.com/sealgate/sealgate/appliance/validate"
	"github.com/sealgate/sealgate/appliance/waf"

	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/sealgate/sealgate/daemon/config"
)

// extensions holds the subsystems that plug into the engine: the sealing
// endpoint, the audit log and anomaly detector (daemon lifetime), and the
// per-route stages of the config generation in force.
type extensions struct {
	log     *slog.Logger
	seal    *sealing.Endpoint
	audit   *audit.Log
	anomaly *anomaly.Detector
	next    *anomaly.Detector // built for a reload, current once it applies
	wafs    *waf.Cache

	mu       sync.Mutex
	anomCfg  anomaly.Config
	current  *stageSet // stages serving now
	building *stageSet // stages of the spec being built
}

// stageSet is one config generation's per-route stage objects.
type stageSet struct {
	pipelines map[string]*policy.Pipeline
}

func (s *stageSet) close() {
	if s == nil {
		return
	}
	for _, p := range s.pipelines {
		p.Close()
	}
}

func (d *Daemon) initExtensions(cfg *config.Config, log *slog.Logger) error {
	e := &d.ext
	e.log = log
	e.wafs = waf.NewCache()
	a, err := audit.New(cfg.Audit, log.With("component", "audit"))
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	e.audit = a
	det, err := anomaly.New(cfg.Anomaly, d.anomalyDeps())
	if err != nil {
		a.Close()
		return err
	}
	e.anomaly, e.anomCfg = det, cfg.Anomaly
	so := sealing.Options{StateDir: cfg.Daemon.StateDir, Profile: d.profile, Metrics: d.metrics, Logger: log.With("component", "seal")}
	if err := cfg.Seal.Apply("seal", &so); err != nil {
		return err
	}
	ep, err := sealing.New(so)
	if err != nil {
		det.Close()
		a.Close()
		return fmt.Errorf("sealing: %w", err)
	}
	e.seal = ep
	return nil
}

func (d *Daemon) anomalyDeps() anomaly.Deps {
	return anomaly.Deps{Metrics: d.metrics, Logger: d.ext.log.With("component", "anomaly"), Audit: d.ext.audit,
		Blocker: daemonBlocker{d}}
}

// daemonBlocker lets policy and anomaly stages block sources in the
// user-space list and the XDP guard; they audit their own decisions.
type daemonBlocker struct{ d *Daemon }

func (b daemonBlocker) Block(p netip.Prefix, ttl time.Duration, reason, source string) error {
	if err := b.d.deny.Block(p, ttl, reason, source); err != nil {
		return err
	}
	return b.d.bpf.block(p, ttl)
}

func (d *Daemon) startExtensions(cfg *config.Config) error {
	return d.startEBPF(cfg)
}

// prepareReload builds what a new config changes outside the route stages
// (the anomaly detector) so the new routes use it; commitReload makes it
// current, abortReload drops it.
func (d *Daemon) prepareReload(cfg *config.Config) error {
	e := &d.ext
	if reflect.DeepEqual(cfg.Anomaly, e.anomCfg) {
		return nil
	}
	det, err := anomaly.New(cfg.Anomaly, d.anomalyDeps())
	if err != nil {
		return err
	}
	e.next = det
	return nil
}

func (d *Daemon) abortReload() {
	if e := &d.ext; e.next != nil {
		e.next.Close()
		e.next = nil
	}
}

// reloadExtensions commits a reload: audit file reopened, new anomaly
// detector current, eBPF bindings and interfaces updated.
func (d *Daemon) reloadExtensions(cfg *config.Config) error {
	e := &d.ext
	e.audit.Reopen()
	if e.next != nil {
		e.mu.Lock()
		old := e.anomaly
		e.anomaly, e.anomCfg, e.next = e.next, cfg.Anomaly, nil
		e.mu.Unlock()
		old.Close()
	}
	return d.reloadEBPF(cfg)
}

func (d *Daemon) stopExtensions() {
	d.bpf.close()
	e := &d.ext
	e.mu.Lock()
	cur := e.current
	e.current = nil
	e.mu.Unlock()
	cur.close()
	if e.seal != nil {
		e.seal.Close()
	}
	if e.anomaly != nil {
		e.anomaly.Close()
	}
	if e.audit != nil {
		e.audit.Close()
	}
}

func (d *Daemon) outerHandler() func(http.Handler) http.Handler {
	if d.ext.seal == nil {
		return nil
	}
	return d.ext.seal.Handler
}

// stagesFor builds route i's stages, outermost first: anomaly observation,
// access control, validation, WAF, DLP.
func (e *extensions) stagesFor(d *Daemon, cfg *config.Config, i int) ([]func(http.Handler) http.Handler, error) {
	r := cfg.Routes[i]
	where := fmt.Sprintf("route[%d] (%s)", i, r.Name)
	var stages []func(http.Handler) http.Handler
	e.mu.Lock()
	det := e.anomaly
	if e.next != nil {
		det = e.next
	}
	e.mu.Unlock()
	if det != nil {
		stages = append(stages, det.Observe(r.Name))
	}
	if !r.Config.IsZero() {
		p, err := policy.New(r.Name, r.Config, policy.Deps{Metrics: d.metrics, Logger: e.log.With("component", "policy", "route", r.Name),
			Blocker: daemonBlocker{d}, Alerts: det})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		e.building.pipelines[r.Name] = p
		stages = append(stages, p.Wrap)
	}
	v, err := validate.New(r.Name, r.Validate, validate.Deps{Metrics: d.metrics, Logger: e.log.With("component", "validate", "route", r.Name), Audit: e.audit})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	stages = append(stages, v.Wrap)
	w, err := waf.New(r.Name, r.WAF, waf.Deps{Metrics: d.metrics, Logger: e.log.With("component", "waf", "route", r.Name), Audit: e.audit, Alerts: det, Engines: e.wafs})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	stages = append(stages, w.Wrap)
	p, err := dlp.New(r.Name, r.DLP, dlp.Deps{Metrics: d.metrics, Alerts: det, Logger: e.log.With("component", "dlp", "route", r.Name)})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	stages = append(stages, p.Wrap)
	return stages, nil
}

// beginStages starts collecting a generation's stage objects; commitStages
// makes them current and closes the previous ones; abortStages drops them.
func (e *extensions) beginStages() {
	e.building = &stageSet{pipelines: make(map[string]*policy.Pipeline)}
}

func (e *extensions) commitStages() {
	e.mu.Lock()
	old := e.current
	e.current, e.building = e.building, nil
	e.mu.Unlock()
	old.close()
}

func (e *extensions) abortStages() {
	e.building.close()
	e.building = nil
}

// auditEvent records an admin action or security event in the audit log.
func (d *Daemon) auditEvent(kind string, attrs ...slog.Attr) {
	d.ext.audit.Event(kind, attrs...)
}

func (d *Daemon) fillExtensionStatus(st *Status) {
	d.bpf.fillStatus(st)
	e := &d.ext
	if e.seal != nil {
		st.Seal = &SealStatus{Keys: e.seal.Keys()}
	}
	e.mu.Lock()
	if e.current != nil {
		for _, name := range sortedKeys(e.current.pipelines) {
			st.Policy = append(st.Policy, e.current.pipelines[name].Status())
		}
	}
	det := e.anomaly
	e.mu.Unlock()
	if det != nil {
		s := det.Stats()
		st.Anomaly = &s
	}
}
