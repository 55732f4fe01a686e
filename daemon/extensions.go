package daemon

import (
	"context"
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

// extensions holds the subsystems that plug into the engine: sealing, the
// policy stages, eBPF steering and guard, audit and anomaly detection.
type extensions struct {
	log *slog.Logger
}

func (d *Daemon) initExtensions(cfg *config.Config, log *slog.Logger) error {
	d.ext.log = log
	return nil
}

func (d *Daemon) startExtensions(cfg *config.Config) error {
	return d.startEBPF(cfg)
}

func (d *Daemon) reloadExtensions(cfg *config.Config) error {
	return d.reloadEBPF(cfg)
}

func (d *Daemon) stopExtensions() {
	d.bpf.close()
}

func (d *Daemon) outerHandler() func(http.Handler) http.Handler { return nil }

func (e *extensions) stagesFor(d *Daemon, cfg *config.Config, i int) ([]func(http.Handler) http.Handler, error) {
	return nil, nil
}

// auditEvent records an admin action or security event.
func (d *Daemon) auditEvent(kind string, attrs ...slog.Attr) {
	d.log.LogAttrs(context.Background(), slog.LevelInfo, "audit", append([]slog.Attr{slog.String("event", kind)}, attrs...)...)
}

// extraAdminRoutes adds the admin endpoints of the subsystems.
func (d *Daemon) extraAdminRoutes(a *adminServer, mux *http.ServeMux) {
	d.ebpfAdminRoutes(a, mux)
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
}

// extraCommands are the CLI commands of the subsystems.
func extraCommands() []command {
	return []command{
		{"attach", "IFACE [--mode auto|native|generic]", "attach the XDP guard to an interface", cmdAttach},
		{"detach", "IFACE", "detach the XDP guard from an interface", cmdDetach},
	}
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
