package daemon

import (
	"context"
	"flag"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/sealgate/sealgate/appliance/authn"
	"github.com/sealgate/sealgate/client"

	"reflect"
	"sync"

	"github.com/sealgate/sealgate/appliance/anomaly"
	"github.com/sealgate/sealgate/appliance/audit"
	"github.com/sealgate/sealgate/appliance/dlp"
	"github.com/sealgate/sealgate/appliance/policy"
	"github.com/sealgate/sealgate/appliance/sealing"
	"github.com/sealgate/sealgate/appliance/validate"
	"github.com/sealgate/sealgate/appliance/waf"

	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/sealgate/sealgate/appliance/blocker"
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

	mu        sync.Mutex
	auditCfg  audit.Config
	anomCfg   anomaly.Config
	current   *stageSet // stages serving now
	building  *stageSet // stages of the spec being built
	pipelines map[string]*policy.Pipeline
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
	e.audit, e.auditCfg = a, cfg.Audit
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

// extraAdminRoutes adds the admin endpoints of the subsystems.
func (d *Daemon) extraAdminRoutes(a *adminServer, mux *http.ServeMux) {
	d.ebpfAdminRoutes(a, mux)
	a.handle(mux, "GET /v1/keys", levelRead, func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, map[string]any{"keys": d.ext.seal.Keys()})
	})
	a.handle(mux, "POST /v1/keys/rotate", levelAdmin, func(w http.ResponseWriter, r *http.Request) error {
		k, err := d.ext.seal.Rotate()
		if err != nil {
			return apiErr(http.StatusInternalServerError, "rotating sealing keys", err)
		}
		d.auditEvent(audit.KindKeyRotate, slog.Int("key_id", int(k.ID)))
		return writeJSON(w, map[string]any{"ok": true, "key": k, "keys": d.ext.seal.Keys()})
	})
	a.handle(mux, "GET /v1/blocklist", levelRead, func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, map[string]any{"entries": d.blocklist()})
	})
	a.handle(mux, "POST /v1/blocklist", levelAdmin, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Prefix string `json:"prefix"`
			TTL    string `json:"ttl"`
			Reason string `json:"reason"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			return apiErr(http.StatusBadRequest, "want JSON {prefix, ttl, reason}", err)
		}
		p, err := parsePrefix(req.Prefix)
		if err != nil {
			return apiErr(http.StatusBadRequest, err.Error(), nil)
		}
		var ttl time.Duration
		if req.TTL != "" {
			if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl < 0 {
				return apiErr(http.StatusBadRequest, "ttl: want a duration such as 10m", nil)
			}
		}
		reason := req.Reason
		if reason == "" {
			reason = "manual"
		}
		if err := d.block(p, ttl, reason, "admin"); err != nil {
			return apiErr(http.StatusInternalServerError, "blocking "+p.String(), err)
		}
		return writeJSON(w, map[string]any{"ok": true, "prefix": p.String()})
	})
	a.handle(mux, "DELETE /v1/blocklist", levelAdmin, func(w http.ResponseWriter, r *http.Request) error {
		p, err := parsePrefix(r.URL.Query().Get("prefix"))
		if err != nil {
			return apiErr(http.StatusBadRequest, err.Error(), nil)
		}
		if !d.unblock(p) {
			return apiErr(http.StatusNotFound, p.String()+" is not on the blocklist", nil)
		}
		return writeJSON(w, map[string]any{"ok": true, "prefix": p.String()})
	})
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, &APIError{Status: http.StatusBadRequest, Detail: "prefix: want an address or CIDR prefix such as 192.0.2.7 or 2001:db8::/48, got " + quote(s)}
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

// block adds a prefix to the blocklist (and the XDP guard when attached).
func (d *Daemon) block(p netip.Prefix, ttl time.Duration, reason, source string) error {
	if err := d.deny.Block(p, ttl, reason, source); err != nil {
		return err
	}
	if err := d.bpf.block(p, ttl); err != nil {
		d.log.Warn("prefix not added to the XDP guard; the engine still refuses it", "prefix", p.String(), "err", err)
	}
	d.auditEvent("block_add", slog.String("prefix", p.String()), slog.Duration("ttl", ttl), slog.String("reason", reason), slog.String("source", source))
	return nil
}

func (d *Daemon) unblock(p netip.Prefix) bool {
	ok := d.deny.Delete(p)
	d.bpf.unblock(p)
	if ok {
		d.auditEvent("block_del", slog.String("prefix", p.String()))
	}
	return ok
}

func (d *Daemon) blocklist() []blocker.Entry { return d.deny.Entries() }

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

// extraCommands are the CLI commands of the subsystems.
func extraCommands() []command {
	return []command{
		{"attach", "IFACE [--mode auto|native|generic]", "attach the XDP guard to an interface", cmdAttach},
		{"detach", "IFACE", "detach the XDP guard from an interface", cmdDetach},
		{"keys", "rotate | list [--json] | hash [KEY] | new", "sealing keys (rotate, list) and API keys (hash, new)", cmdKeys},
		{"curl", "[-X METHOD] [-d DATA] [-H 'Name: value'] [-i] [-k] [--cacert FILE] [--show-wire] URL", "a sealed request from the command line", cmdCurl},
	}
}

func cmdKeys(c *cli, args []string) error {
	c.clientFlags(true)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errUsage
	}
	switch {
	case pos[0] == "rotate" && len(pos) == 1:
		var res struct {
			Key sealing.KeyInfo `json:"key"`
		}
		if err := c.client().Do("POST", "/v1/keys/rotate", nil, &res); err != nil {
			return err
		}
		if *c.jsonOut {
			return c.printJSON(res)
		}
		fmt.Fprintf(c.stdout, "new sealing key id %d (%s); previous keys stay valid for their grace period\n", res.Key.ID, strings.Join(res.Key.KEMs, ", "))
	case pos[0] == "list" && len(pos) == 1:
		var res struct {
			Keys []sealing.KeyInfo `json:"keys"`
		}
		if err := c.client().Do("GET", "/v1/keys", nil, &res); err != nil {
			return err
		}
		if *c.jsonOut {
			return c.printJSON(res)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tKEMS\tAGE\tRETIRES")
		for _, k := range res.Keys {
			retire := "-"
			if !k.RetireAt.IsZero() {
				retire = k.RetireAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", k.ID, k.State, strings.Join(k.KEMs, ","), time.Since(k.Created).Round(time.Second), retire)
		}
		tw.Flush()
	case pos[0] == "hash" && len(pos) <= 2:
		key := ""
		if len(pos) == 2 {
			key = pos[1]
		} else {
			b, err := io.ReadAll(io.LimitReader(os.Stdin, 4096))
			if err != nil {
				return err
			}
			key = strings.TrimSpace(string(b))
		}
		if key == "" {
			return errors.New("no key given (pass it as an argument or on stdin)")
		}
		fmt.Fprintln(c.stdout, authn.HashAPIKey(key))
	case pos[0] == "new" && len(pos) == 1:
		key, hash := authn.NewAPIKey()
		fmt.Fprintf(c.stdout, "key:    %s   (give this to the client; it is not stored anywhere)\nsha256: %s   (put this in [route.auth.apikey] keys)\n", key, hash)
	default:
		return errUsage
	}
	return nil
}

func cmdCurl(c *cli, args []string) error {
	for _, a := range args {
		if a == "-h" || a == "--help" {
			c.fs.Usage()
			return flag.ErrHelp
		}
	}
	o, err := client.ParseCurlArgs(args, c.stderr)
	if err != nil {
		return err
	}
	return client.Curl(context.Background(), o, c.stdout, c.stderr)
}

func cmdAttach(c *cli, args []string) error {
	c.clientFlags(true)
	mode := c.fs.String("mode", "auto", "XDP mode: auto (native, else generic), native or generic")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errUsage
	}
	var att struct {
		Interface string `json:"interface"`
		Mode      string `json:"mode"`
		Driver    string `json:"driver"`
		Attached  bool   `json:"attached"`
	}
	if err := c.client().Do("POST", "/v1/interfaces/"+url.PathEscape(pos[0])+"/attach?mode="+url.QueryEscape(*mode), nil, &att); err != nil {
		return err
	}
	if *c.jsonOut {
		return c.printJSON(att)
	}
	if !att.Attached {
		fmt.Fprintf(c.stdout, "guard will attach to %s when it appears\n", pos[0])
		return nil
	}
	fmt.Fprintf(c.stdout, "guard attached to %s (%s mode, driver %s)\n", att.Interface, att.Mode, att.Driver)
	return nil
}

func cmdDetach(c *cli, args []string) error {
	c.clientFlags(false)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errUsage
	}
	if err := c.client().Do("POST", "/v1/interfaces/"+url.PathEscape(pos[0])+"/detach", nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "guard detached from %s\n", pos[0])
	return nil
}

// checkExtensions builds what check-config must prove beyond the file itself.
func checkExtensions(cfg *config.Config) error { return nil }

// runCleanup removes pinned eBPF state: steering, guard links, blocklist.
func runCleanup(path string, w io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		var perr *fs.PathError
		if !errors.As(err, &perr) {
			return err
		}
		// No config file: clean the default location.
		cfg = &config.Config{Daemon: config.Daemon{BPFFS: config.DefaultBPFFS}}
	}
	if err := cleanupEBPF(cfg, slog.New(slog.NewTextHandler(w, nil))); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	fmt.Fprintf(w, "removed pinned eBPF state under %s/sealgate\n", cfg.Daemon.BPFFS)
	return nil
}
