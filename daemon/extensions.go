package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
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

func (d *Daemon) startExtensions(cfg *config.Config) error  { return nil }
func (d *Daemon) reloadExtensions(cfg *config.Config) error { return nil }
func (d *Daemon) stopExtensions()                           {}

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
	d.auditEvent("block_add", slog.String("prefix", p.String()), slog.Duration("ttl", ttl), slog.String("reason", reason), slog.String("source", source))
	return nil
}

func (d *Daemon) unblock(p netip.Prefix) bool {
	ok := d.deny.Delete(p)
	if ok {
		d.auditEvent("block_del", slog.String("prefix", p.String()))
	}
	return ok
}

func (d *Daemon) blocklist() []blocker.Entry { return d.deny.Entries() }

func (d *Daemon) fillExtensionStatus(st *Status) {
	st.Steering = SteeringStatus{Reason: "eBPF steering is not wired into this build yet"}
	st.Guard = GuardStatus{Reason: "eBPF guard is not wired into this build yet"}
}

// extraCommands are the CLI commands of the subsystems.
func extraCommands() []command { return nil }

// checkExtensions builds what check-config must prove beyond the file itself.
func checkExtensions(cfg *config.Config) error { return nil }

// runCleanup removes pinned eBPF state.
func runCleanup(path string, w io.Writer) error {
	return errors.New("no eBPF state is managed by this build")
}
