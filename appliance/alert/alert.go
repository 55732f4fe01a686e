// Package alert is the interface between the stages that notice a leak or an
// attack in progress (DLP blocks, anomaly detection, repeated denials) and
// whatever raises the alert: a log event, the sealgate_alerts_total metric, a
// webhook, an automatic block. It holds no values, only kinds and places.
package alert

import (
	"net/netip"
	"time"
)

// Alert is one security event worth an operator's attention. Detail must not
// contain a secret or a matched sensitive value.
type Alert struct {
	Time     time.Time  `json:"time"`
	Kind     string     `json:"kind"` // surge, auth_failures, enumeration, dlp_spike, dlp_block, waf_block, denials
	Route    string     `json:"route,omitempty"`
	Client   netip.Addr `json:"client,omitzero"`
	Identity string     `json:"identity,omitempty"` // subject or key name, never a token
	Detail   string     `json:"detail,omitempty"`
}

// Sink receives alerts. Raise must not block the request path: sinks queue.
type Sink interface {
	Raise(Alert)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Alert)

// Raise implements Sink.
func (f SinkFunc) Raise(a Alert) { f(a) }

// Discard drops alerts.
var Discard Sink = SinkFunc(func(Alert) {})
