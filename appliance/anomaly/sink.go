package anomaly

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/sealgate/sealgate/appliance/alert"
	"github.com/sealgate/sealgate/appliance/audit"
)

// Raise implements alert.Sink. An alert of one kind about one route, source
// and identity is raised at most once per cooldown; a raised alert is
// counted in sealgate_alerts_total{kind}, logged, written to the audit log,
// queued for the webhook, and blocks its source when its kind is configured
// to. It never waits on the network.
func (d *Detector) Raise(a alert.Alert) {
	if a.Kind == "" {
		return
	}
	if a.Time.IsZero() {
		a.Time = d.now()
	}
	a.Client = a.Client.Unmap()
	if !d.admit(a) {
		d.suppressed.Add(1)
		return
	}
	d.raised.Add(1)
	if d.metrics != nil {
		d.metrics.Alerts.WithLabelValues(a.Kind).Inc()
	}
	attrs := []slog.Attr{slog.String("alert_kind", a.Kind)}
	if a.Route != "" {
		attrs = append(attrs, slog.String("route", a.Route))
	}
	if a.Client.IsValid() {
		attrs = append(attrs, slog.String("client", a.Client.String()))
	}
	if a.Identity != "" {
		attrs = append(attrs, slog.String("identity", a.Identity))
	}
	if a.Detail != "" {
		attrs = append(attrs, slog.String("detail", a.Detail))
	}
	d.logger.LogAttrs(context.Background(), slog.LevelWarn, "alert", attrs...)
	d.audit.Event(audit.KindAlert, attrs...)
	d.autoBlock(a)
	if d.hook != nil {
		d.hook.enqueue(a)
	}
}

// admit applies the cooldown.
func (d *Detector) admit(a alert.Alert) bool {
	k := coolKey{kind: a.Kind, route: a.Route, identity: a.Identity, client: a.Client}
	d.coolMu.Lock()
	defer d.coolMu.Unlock()
	last, seen := d.cool.peek(k)
	if seen && a.Time.Sub(*last) < d.cooldown {
		return false
	}
	*d.cool.get(k, func() time.Time { return a.Time }) = a.Time
	return true
}

// autoBlock blocks the alert's source when its kind is configured to.
func (d *Detector) autoBlock(a alert.Alert) {
	ttl, ok := d.blockTTL[a.Kind]
	if !ok || !a.Client.IsValid() {
		return
	}
	for _, p := range d.exempt {
		if p.Contains(a.Client) {
			d.logger.Info("source exempt from automatic blocking", "alert_kind", a.Kind, "client", a.Client)
			return
		}
	}
	prefix := sourcePrefix(a.Client)
	reason := "alert:" + a.Kind
	if err := d.blocker.Block(prefix, ttl, reason, "anomaly"); err != nil {
		d.blockErrors.Add(1)
		d.logger.Error("automatic block failed", "prefix", prefix, "alert_kind", a.Kind, "err", err)
		return
	}
	d.blocks.Add(1)
	d.logger.Warn("source blocked automatically", "prefix", prefix, "ttl", ttl, "reason", reason)
	d.audit.Event(audit.KindBlockAdd, slog.String("prefix", prefix.String()), slog.String("ttl", ttl.String()),
		slog.String("reason", reason), slog.String("source", "anomaly"))
}

// sourcePrefix is what one source means for blocking: its IPv4 address, or
// its IPv6 /64 (one host usually controls a whole /64).
func sourcePrefix(a netip.Addr) netip.Prefix {
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}
