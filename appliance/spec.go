package appliance

import (
	"net/http"
	"time"
)

// Spec is one complete engine configuration. Apply validates and swaps it in
// atomically.
type Spec struct {
	Listeners []ListenerSpec
	Routes    []RouteSpec
	// TLS12Suites is the TLS 1.2 cipher-suite order (from crypto/cpu).
	TLS12Suites []uint16
	Limits      Limits
	// AccessLog enables one log line per request.
	AccessLog bool
	// DisableFastPath serves HTTP/1.1 with net/http too (see fast.go), for
	// connections accepted after it is applied.
	DisableFastPath bool
	// DisableH2FastPath serves h2 with net/http's HTTP/2 server instead of
	// the engine's own (see h2.go), for connections accepted after it is
	// applied.
	DisableH2FastPath bool
}

// ListenerSpec describes one TLS listener by name; the socket itself is
// passed to Engine.Serve.
type ListenerSpec struct {
	Name string
	TLS  TLSSpec
}

// TLSSpec is a listener's TLS settings.
type TLSSpec struct {
	Certs      []CertFiles // chosen by SNI, the first is the fallback
	MinVersion uint16      // tls.VersionTLS12 (default) or tls.VersionTLS13
	ClientCA   string      // PEM file; empty: no client certificates
	// ClientAuthOptional accepts clients without a certificate when ClientCA
	// is set (authentication stages then decide); default is to require one.
	ClientAuthOptional bool
}

// CertFiles is a certificate chain and its key, PEM files.
type CertFiles struct {
	Cert string
	Key  string
}

// RouteSpec describes one route.
type RouteSpec struct {
	Name     string
	Listener string
	// Match is a net/http ServeMux pattern: [METHOD ][HOST]/PATH-PREFIX/.
	Match    string
	Upstream string // http://host:port[/base] or https://...
	// UpstreamCA is a PEM bundle to verify an https upstream (default: system roots).
	UpstreamCA string
	// UpstreamServerName overrides the name verified on an https upstream.
	UpstreamServerName string
	Seal               SealMode
	MaxBody            int64         // 0: DefaultMaxBody
	UpstreamTimeout    time.Duration // longest upstream silence (see README); 0: default
	// Stages wrap the proxy handler, outermost first (policy, validation,
	// WAF, DLP).
	Stages []func(http.Handler) http.Handler
}

// SealMode says whether a route takes sealed requests.
type SealMode string

// Seal modes.
const (
	SealOff      SealMode = "off"
	SealOptional SealMode = "optional"
	SealRequired SealMode = "required"
)

// Limits are the engine-wide protocol limits and timeouts.
type Limits struct {
	MaxHeaderBytes    int           // request line + headers; over it → 431
	ReadHeaderTimeout time.Duration // slow-header clients are cut off
	IdleTimeout       time.Duration // keep-alive idle
	ShutdownTimeout   time.Duration // drain deadline on stop
	DialTimeout       time.Duration // upstream connect
	UpstreamTimeout   time.Duration // default longest upstream silence
	TicketRotation    time.Duration // TLS session ticket key rotation period
}

// Defaults used when a field is zero.
const (
	DefaultMaxBody           = 1 << 20
	DefaultMaxHeaderBytes    = 32 << 10
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultDialTimeout       = 5 * time.Second
	DefaultUpstreamTimeout   = 60 * time.Second
	DefaultTicketRotation    = time.Hour
)

func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	def(&l.ShutdownTimeout, DefaultShutdownTimeout)
	def(&l.DialTimeout, DefaultDialTimeout)
	def(&l.UpstreamTimeout, DefaultUpstreamTimeout)
	def(&l.TicketRotation, DefaultTicketRotation)
	return l
}
