// Package metrics defines the engine's Prometheus families (prefix
// sealgate_). Labels are bounded: listener and route names from the config,
// status codes, fixed reason strings; never raw paths or client addresses.
// The daemon owns the registry; the engine and its stages only count.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds every family the engine and its stages update.
type Metrics struct {
	Registry *prometheus.Registry

	Requests        *prometheus.CounterVec   // listener, route, code
	RequestDuration *prometheus.HistogramVec // listener, route
	TLSHandshakes   *prometheus.CounterVec   // listener, version, result
	UpstreamErrors  *prometheus.CounterVec   // route, reason
	ActiveConns     *prometheus.GaugeVec     // listener
	Connections     *prometheus.CounterVec   // listener, server

	SealSessions prometheus.Counter
	SealRecords  *prometheus.CounterVec // direction
	SealRejects  *prometheus.CounterVec // reason

	PolicyDenials *prometheus.CounterVec // route, reason
	DLPFindings   *prometheus.CounterVec // route, kind, action
	WAFMatches    *prometheus.CounterVec // route, action
	Alerts        *prometheus.CounterVec // kind
}

// New registers all families on a fresh registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealgate_requests_total", Help: "Requests answered, by listener, route and status code.",
		}, []string{"listener", "route", "code"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sealgate_request_duration_seconds", Help: "Time from request headers read to response finished.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"listener", "route"}),
		TLSHandshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealgate_tls_handshakes_total", Help: "TLS handshakes by listener, negotiated version and result.",
		}, []string{"listener", "version", "result"}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealgate_upstream_errors_total", Help: "Failed upstream exchanges by route and reason (unreachable, timeout, reset, bad_response).",
		}, []string{"route", "reason"}),
		ActiveConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sealgate_active_connections", Help: "Open client connections by listener.",
		}, []string{"listener"}),
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealgate_connections_total",
			Help: "Client connections by listener and the server that took them: http1_fast (HTTP/1.1 on the fast path), http1_full (HTTP/1.1 served by net/http: moved there by a request the fast path does not serve, or the fast path is off), http2 (the engine's HTTP/2 server), http2_full (net/http's, when http2_fast_path is off).",
		}, []string{"listener", "server"}),
		SealSessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealgate_seal_sessions_total", Help: "Sealed sessions opened.",
		}),
		SealRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealgate_seal_records_total", Help: "Sealed records processed by direction (in: opened, out: sealed).",
		}, []string{"direction"}),
		SealRejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealgate_seal_rejects_total", Help: "Sealed messages refused, by reason.",
		}, []string{"reason"}),
		PolicyDenials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealgate_policy_denials_total", Help: "Requests denied by the policy pipeline, by route and reason.",
		}, []string{"route", "reason"}),
		DLPFindings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealgate_dlp_findings_total", Help: "Sensitive data found in responses, by route, kind and action taken.",
		}, []string{"route", "kind", "action"}),
		WAFMatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealgate_waf_matches_total", Help: "Requests the WAF flagged, by route and action (detect, block).",
		}, []string{"route", "action"}),
		Alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealgate_alerts_total", Help: "Anomaly alerts raised, by kind.",
		}, []string{"kind"}),
	}
	r.MustRegister(m.Requests, m.RequestDuration, m.TLSHandshakes, m.UpstreamErrors, m.ActiveConns, m.Connections,
		m.SealSessions, m.SealRecords, m.SealRejects, m.PolicyDenials, m.DLPFindings, m.WAFMatches, m.Alerts)
	return m
}

// Nop returns metrics on a private registry nobody scrapes, for tests and
// callers that do not report.
func Nop() *Metrics { return New() }
