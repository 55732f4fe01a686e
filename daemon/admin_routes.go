package daemon

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/sealgate/sealgate/appliance/audit"
	"github.com/sealgate/sealgate/appliance/blocker"
)

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
