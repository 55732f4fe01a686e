// Package anomaly watches the traffic of every route for the patterns of an
// attack or a leak in progress (a request or error surge against the learned
// baseline, repeated authentication failures from one source, one identity
// walking through many distinct objects, a spike of DLP findings) and is the
// engine's alert sink: every alert, its own or another stage's (DLP and WAF
// blocks, rate-limit escalations), is deduplicated, counted, logged, audited,
// optionally POSTed to a webhook, and may block the source for a TTL.
// Memory is bounded: every table is an LRU of max_tracked entries.
//
// Configured at the top level:
//
//	[anomaly]
//	window        = "1m"
//	surge_factor  = 5.0
//	min_requests  = 50
//	auth_failures = 10   # 401s from one source within window
//	enumeration   = 100  # distinct paths read per identity/source within window
//	dlp_spike     = 20   # DLP findings per source and route within window
//	cooldown      = "5m"
//	max_tracked   = 10000
//	exempt        = ["10.0.0.0/8"]
//	webhook       = { url = "https://hooks.example/sealgate", timeout = "5s", queue = 1000, retries = 3, backoff = "1s" }
//	block         = { auth_failures = "15m", enumeration = "1h" }
package anomaly

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/appliance/alert"
	"github.com/sealgate/sealgate/appliance/audit"
	"github.com/sealgate/sealgate/appliance/blocker"
	"github.com/sealgate/sealgate/appliance/metrics"
)

// Alert kinds raised by the detector itself.
const (
	KindSurge        = "surge"         // requests far above the baseline (per route, per client)
	KindErrorSurge   = "error_surge"   // 4xx/5xx responses far above the baseline
	KindAuthFailures = "auth_failures" // repeated 401s from one source
	KindEnumeration  = "enumeration"   // one identity or source reading many distinct paths
	KindDLPSpike     = "dlp_spike"     // many DLP findings in one client's responses
)

// knownKinds are the alert kinds block may name: the detector's own and those
// other stages raise.
var knownKinds = []string{KindSurge, KindErrorSurge, KindAuthFailures, KindEnumeration, KindDLPSpike,
	"dlp_block", "waf_block", "denials"}

// Defaults applied to absent keys.
const (
	DefaultWindow      = time.Minute
	DefaultMinRequests = 50
	DefaultCooldown    = 5 * time.Minute
	DefaultMaxTracked  = 10000
	DefaultHookTimeout = 5 * time.Second
	DefaultHookQueue   = 1000
	DefaultHookRetries = 3
	DefaultHookBackoff = time.Second
	maxHookBackoff     = time.Minute
	// alpha is the EWMA weight of the newest window: the baseline mostly
	// reflects the last ~7 windows.
	alpha = 0.25
)

// Config is the top-level [anomaly] table. A detector whose threshold is 0
// (or absent) is off; alerts from other stages are handled regardless.
type Config struct {
	// Window is the counting window ("1m").
	Window string `toml:"window"`
	// SurgeFactor turns on surge detection: a window with more than
	// SurgeFactor times the baseline (and at least MinRequests) alerts.
	SurgeFactor float64 `toml:"surge_factor"`
	// MinRequests is the least number of requests (or errors) in a window
	// that can count as a surge; default 50.
	MinRequests int `toml:"min_requests"`
	// AuthFailures alerts when one source gets this many 401s in a window.
	AuthFailures int `toml:"auth_failures"`
	// Enumeration alerts when one identity (or source, if unauthenticated)
	// reads (GET/HEAD) this many distinct paths of one route in a window.
	Enumeration int `toml:"enumeration"`
	// DLPSpike alerts when one source's responses on a route carry this many
	// DLP findings in a window.
	DLPSpike int `toml:"dlp_spike"`
	// Cooldown is how long an alert of one kind about one route, source and
	// identity stays quiet after firing ("5m").
	Cooldown string `toml:"cooldown"`
	// MaxTracked bounds each tracking table (sources, identities); the least
	// recently seen entry is forgotten first. Default 10000.
	MaxTracked int `toml:"max_tracked"`
	// Webhook optionally POSTs every alert as JSON.
	Webhook Webhook `toml:"webhook"`
	// Block maps alert kinds to a block TTL ("15m"): an alert of that kind
	// blocks its source (/32, IPv6 /64) through the Blocker with reason
	// "alert:<kind>".
	Block map[string]string `toml:"block"`
	// Exempt lists prefixes that are never blocked automatically (monitoring,
	// the operator's own network).
	Exempt []string `toml:"exempt"`
}

// Webhook is the [anomaly.webhook] table.
type Webhook struct {
	// URL is an http or https URL; empty turns the webhook off.
	URL string `toml:"url"`
	// Timeout bounds one POST ("5s").
	Timeout string `toml:"timeout"`
	// Queue bounds the alerts waiting to be sent (1000); when full, new
	// alerts are dropped and counted.
	Queue int `toml:"queue"`
	// Retries is how many times a failed POST (network error, 429, 5xx) is
	// retried (3); 0 keeps the default, -1 never retries.
	Retries int `toml:"retries"`
	// Backoff is the first retry delay ("1s"), doubled per retry up to 1m.
	Backoff string `toml:"backoff"`
}

// Deps are the detector's collaborators. Metrics, Logger, Audit, Now and
// HTTPClient are optional; Blocker is required when Block is configured.
type Deps struct {
	Metrics    *metrics.Metrics
	Logger     *slog.Logger
	Audit      *audit.Log
	Blocker    blocker.Blocker
	Now        func() time.Time
	HTTPClient *http.Client
}

// Stats are the detector's own counters.
type Stats struct {
	Raised         uint64 `json:"raised"`          // alerts that passed the cooldown
	Suppressed     uint64 `json:"suppressed"`      // alerts dropped by the cooldown
	Blocks         uint64 `json:"blocks"`          // automatic blocks made
	BlockErrors    uint64 `json:"block_errors"`    // automatic blocks that failed
	WebhookSent    uint64 `json:"webhook_sent"`    // alerts delivered to the webhook
	WebhookFailed  uint64 `json:"webhook_failed"`  // alerts given up after all retries
	WebhookDropped uint64 `json:"webhook_dropped"` // alerts dropped because the queue was full
}

// Detector observes requests and raises alerts. It implements alert.Sink and
// is safe for concurrent use. Close it to stop the webhook sender.
type Detector struct {
	window      time.Duration
	surgeFactor float64
	minRequests int
	authFails   int
	enumeration int
	dlpSpike    int
	cooldown    time.Duration
	blockTTL    map[string]time.Duration
	exempt      []netip.Prefix
	observing   bool

	metrics *metrics.Metrics
	logger  *slog.Logger
	audit   *audit.Log
	blocker blocker.Blocker
	now     func() time.Time
	seed    maphash.Seed

	mu     sync.Mutex // guards the tracking tables
	rates  *lru[rateKey, rate]
	auth   *lru[netip.Addr, counter]
	enum   *lru[enumKey, enumState]
	dlp    *lru[rateKey, counter]
	coolMu sync.Mutex
	cool   *lru[coolKey, time.Time]

	hook *webhook

	raised, suppressed, blocks, blockErrors atomic.Uint64
}

var _ alert.Sink = (*Detector)(nil)

// New validates cfg and returns a running detector. Errors name the field,
// e.g. "anomaly.window: must be a duration like 1m".
func New(cfg Config, deps Deps) (*Detector, error) {
	d := &Detector{
		surgeFactor: cfg.SurgeFactor, minRequests: cfg.MinRequests, authFails: cfg.AuthFailures,
		enumeration: cfg.Enumeration, dlpSpike: cfg.DLPSpike, blockTTL: make(map[string]time.Duration),
		metrics: deps.Metrics, audit: deps.Audit, blocker: deps.Blocker, now: deps.Now, seed: maphash.MakeSeed(),
	}
	if d.now == nil {
		d.now = time.Now
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d.logger = logger.With("component", "anomaly")

	var err error
	if d.window, err = duration("anomaly.window", cfg.Window, DefaultWindow); err != nil {
		return nil, err
	}
	if d.cooldown, err = duration("anomaly.cooldown", cfg.Cooldown, DefaultCooldown); err != nil {
		return nil, err
	}
	if cfg.SurgeFactor < 0 || (cfg.SurgeFactor > 0 && cfg.SurgeFactor <= 1) {
		return nil, fmt.Errorf("anomaly.surge_factor: must be > 1 (or absent to turn surge detection off), got %v", cfg.SurgeFactor)
	}
	for _, f := range []struct {
		name string
		val  int
	}{{"min_requests", cfg.MinRequests}, {"auth_failures", cfg.AuthFailures}, {"enumeration", cfg.Enumeration},
		{"dlp_spike", cfg.DLPSpike}, {"max_tracked", cfg.MaxTracked}} {
		if f.val < 0 {
			return nil, fmt.Errorf("anomaly.%s: must be > 0 (or absent), got %d", f.name, f.val)
		}
	}
	if d.minRequests == 0 {
		d.minRequests = DefaultMinRequests
	}
	maxTracked := cfg.MaxTracked
	if maxTracked == 0 {
		maxTracked = DefaultMaxTracked
	}
	if cfg.Enumeration > 100000 {
		return nil, fmt.Errorf("anomaly.enumeration: at most 100000 distinct paths are tracked per identity, got %d", cfg.Enumeration)
	}

	kinds := make([]string, 0, len(cfg.Block))
	for k := range cfg.Block {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		if !known(kind) {
			return nil, fmt.Errorf("anomaly.block.%s: unknown alert kind (known: %v)", kind, knownKinds)
		}
		ttl, err := time.ParseDuration(cfg.Block[kind])
		if err != nil || ttl <= 0 {
			return nil, fmt.Errorf("anomaly.block.%s: %q must be a positive duration like 15m", kind, cfg.Block[kind])
		}
		d.blockTTL[kind] = ttl
	}
	if len(d.blockTTL) > 0 && d.blocker == nil {
		return nil, fmt.Errorf("anomaly.block: automatic blocking configured but no blocklist is available")
	}
	for i, s := range cfg.Exempt {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("anomaly.exempt[%d]: %q is not an address or prefix", i, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		d.exempt = append(d.exempt, p.Masked())
	}
	if cfg.Webhook.URL != "" {
		if d.hook, err = newWebhook(cfg.Webhook, deps.HTTPClient, d.logger); err != nil {
			return nil, err
		}
	} else if cfg.Webhook != (Webhook{}) {
		return nil, fmt.Errorf("anomaly.webhook.url: required when other webhook keys are set")
	}

	d.observing = d.surgeFactor > 0 || d.authFails > 0 || d.enumeration > 0 || d.dlpSpike > 0
	d.rates = newLRU[rateKey, rate](maxTracked)
	d.auth = newLRU[netip.Addr, counter](maxTracked)
	d.enum = newLRU[enumKey, enumState](maxTracked)
	d.dlp = newLRU[rateKey, counter](maxTracked)
	d.cool = newLRU[coolKey, time.Time](maxTracked)
	if d.hook != nil {
		d.hook.start()
	}
	return d, nil
}

func known(kind string) bool {
	for _, k := range knownKinds {
		if k == kind {
			return true
		}
	}
	return false
}

func duration(field, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%s: %q must be a positive duration like 1m", field, s)
	}
	return v, nil
}

func checkHookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("anomaly.webhook.url: %q must be an absolute http or https URL", s)
	}
	if u.User != nil {
		return fmt.Errorf("anomaly.webhook.url: credentials in the URL would be logged; use a token in the path or a proxy")
	}
	return nil
}

// Stats returns the detector's counters.
func (d *Detector) Stats() Stats {
	s := Stats{Raised: d.raised.Load(), Suppressed: d.suppressed.Load(), Blocks: d.blocks.Load(),
		BlockErrors: d.blockErrors.Load()}
	if d.hook != nil {
		s.WebhookSent, s.WebhookFailed, s.WebhookDropped = d.hook.sent.Load(), d.hook.failed.Load(), d.hook.dropped.Load()
	}
	return s
}

// Close stops the webhook sender, waiting for a POST in flight; queued alerts
// not yet sent are dropped and counted. Raise after Close still counts, logs,
// audits and blocks.
func (d *Detector) Close() error {
	if d.hook != nil {
		d.hook.stop()
	}
	return nil
}
