// Package waf owns the per-route web application firewall: Coraza v3 with the
// OWASP Core Rule Set embedded, inspecting the request line, headers and a
// bounded prefix of the body for injection, XSS and protocol attacks. In
// block mode a match is answered with a 403 problem+json before the upstream
// sees the request; in detect mode it is logged, counted and audited and the
// request passes. Response bodies are not inspected here (DLP does that).
//
// Configured per route:
//
//	[route.waf]
//	mode              = "block"  # off | detect | block
//	paranoia          = 1        # 1..4
//	anomaly_threshold = 5        # CRS inbound anomaly score that blocks
//	exclude_rules     = [942100] # CRS rule ids removed for this route
//	max_body          = "128KiB" # body bytes buffered and inspected
//	body_overflow     = "reject" # or "partial"
package waf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/corazawaf/coraza/v3/types"

	"github.com/sealgate/sealgate/appliance/alert"
	"github.com/sealgate/sealgate/appliance/audit"
	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/appliance/problem"
	"github.com/sealgate/sealgate/appliance/reqctx"
	"github.com/sealgate/sealgate/appliance/validate"
)

// Modes.
const (
	ModeOff    = "off"
	ModeDetect = "detect"
	ModeBlock  = "block"
)

// Body overflow policies.
const (
	OverflowReject  = "reject"  // a body larger than max_body is refused with 413 (block mode)
	OverflowPartial = "partial" // the first max_body bytes are inspected, the rest passes unseen
)

// Defaults.
const (
	DefaultParanoia  = 1
	DefaultThreshold = 5 // CRS inbound anomaly score threshold
	DefaultMaxBody   = 128 << 10
)

// Config is a route's [route.waf] table. The zero value (mode "" or "off")
// disables the WAF.
type Config struct {
	// Mode is off, detect or block.
	Mode string `toml:"mode"`
	// Paranoia is the CRS paranoia level 1 (few false positives) to 4
	// (strict); default 1.
	Paranoia int `toml:"paranoia"`
	// AnomalyThreshold is the CRS inbound anomaly score at which a request
	// is blocked; default 5 (one critical match).
	AnomalyThreshold int `toml:"anomaly_threshold"`
	// ExcludeRules lists CRS rule ids to remove for this route, to silence a
	// false positive (e.g. 942100).
	ExcludeRules []int `toml:"exclude_rules"`
	// MaxBody bounds how much of a request body is buffered and inspected
	// ("128KiB", the default).
	MaxBody string `toml:"max_body"`
	// BodyOverflow decides what happens to a body larger than max_body:
	// "reject" (default: 413 in block mode, logged in detect mode) or
	// "partial" (inspect the first max_body bytes, pass the rest unseen).
	BodyOverflow string `toml:"body_overflow"`
}

// Deps are the WAF's collaborators; all are optional.
type Deps struct {
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	Audit   *audit.Log
	Alerts  alert.Sink
	// Engines shares compiled rule sets between routes; nil compiles a
	// private one.
	Engines *Cache
}

// WAF is one route's firewall.
type WAF struct {
	route    string
	block    bool
	partial  bool
	maxBody  int64
	engine   *Engine
	metrics  *metrics.Metrics
	logger   *slog.Logger
	audit    *audit.Log
	alerts   alert.Sink
	disabled bool
}

// New validates cfg and returns the route's WAF, compiling (or reusing from
// deps.Engines) the rule set. Errors name the field, e.g.
// "route[orders].waf.paranoia: must be 1 to 4".
func New(route string, cfg Config, deps Deps) (*WAF, error) {
	field := func(name string) string { return fmt.Sprintf("route[%s].waf.%s", route, name) }
	w := &WAF{route: route, metrics: deps.Metrics, audit: deps.Audit, alerts: deps.Alerts}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	w.logger = deps.Logger.With("component", "waf", "route", route)
	if w.alerts == nil {
		w.alerts = alert.Discard
	}
	switch cfg.Mode {
	case "", ModeOff:
		w.disabled = true
		return w, nil
	case ModeDetect:
	case ModeBlock:
		w.block = true
	default:
		return nil, fmt.Errorf("%s: %q is not off, detect or block", field("mode"), cfg.Mode)
	}
	k := engineKey{paranoia: cfg.Paranoia, threshold: cfg.AnomalyThreshold}
	if k.paranoia == 0 {
		k.paranoia = DefaultParanoia
	}
	if k.paranoia < 1 || k.paranoia > 4 {
		return nil, fmt.Errorf("%s: must be 1 to 4, got %d", field("paranoia"), cfg.Paranoia)
	}
	if k.threshold == 0 {
		k.threshold = DefaultThreshold
	}
	if k.threshold < 1 {
		return nil, fmt.Errorf("%s: must be > 0, got %d", field("anomaly_threshold"), cfg.AnomalyThreshold)
	}
	var err error
	if k.maxBody, err = validate.ParseSize(cfg.MaxBody); err != nil {
		return nil, fmt.Errorf("%s: %w", field("max_body"), err)
	}
	if k.maxBody == 0 {
		if cfg.MaxBody != "" {
			return nil, fmt.Errorf("%s: must be > 0", field("max_body"))
		}
		k.maxBody = DefaultMaxBody
	}
	if k.maxBody > 64<<20 {
		return nil, fmt.Errorf("%s: at most 64MiB can be buffered for inspection, got %s", field("max_body"), cfg.MaxBody)
	}
	switch cfg.BodyOverflow {
	case "", OverflowReject:
	case OverflowPartial:
		w.partial = true
	default:
		return nil, fmt.Errorf("%s: %q is not reject or partial", field("body_overflow"), cfg.BodyOverflow)
	}
	exclude := slices.Clone(cfg.ExcludeRules)
	for i, id := range exclude {
		if id <= 0 {
			return nil, fmt.Errorf("%s[%d]: %d is not a rule id", field("exclude_rules"), i, id)
		}
	}
	slices.Sort(exclude)
	exclude = slices.Compact(exclude)
	ids := make([]string, len(exclude))
	for i, id := range exclude {
		ids[i] = strconv.Itoa(id)
	}
	k.excluded = strings.Join(ids, ",")
	w.maxBody = k.maxBody

	cache := deps.Engines
	if cache == nil {
		cache = NewCache()
	}
	w.engine, err = cache.get(k, exclude)
	if err != nil {
		if u, ok := errors.AsType[*errUnknownRule](err); ok {
			// Report the index in the route's own list.
			return nil, fmt.Errorf("%s[%d]: no rule %d in the embedded core rule set", field("exclude_rules"),
				slices.Index(cfg.ExcludeRules, u.id), u.id)
		}
		return nil, fmt.Errorf("route[%s].waf: %w", route, err)
	}
	w.logger.Info("WAF ready", "mode", cfg.Mode, "settings", w.engine.key.String(),
		"rules", w.engine.Rules(), "compile_time", w.engine.BuildTime())
	return w, nil
}

// Engine returns the compiled rule set the WAF uses, or nil when off.
func (w *WAF) Engine() *Engine { return w.engine }

// Wrap returns next behind the firewall; with mode off it returns next.
func (w *WAF) Wrap(next http.Handler) http.Handler {
	if w == nil || w.disabled {
		return next
	}
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		v := w.inspect(r)
		if v.bodyLost { // a client that went away, not an attack: no audit, no alert
			w.logger.Info("request body could not be read", "method", r.Method, "path", r.URL.Path, "err", v.err)
			problem.Error(rw, r, v.status, v.detail)
			return
		}
		if v.matched() {
			w.record(r, v)
		}
		if w.block && v.status != 0 {
			problem.Error(rw, r, v.status, v.detail)
			return
		}
		next.ServeHTTP(rw, r)
	})
}

// verdict is the outcome of inspecting one request.
type verdict struct {
	status   int    // would-be (detect) or actual (block) response status; 0: pass
	detail   string // client-facing problem detail
	rules    []matchedRule
	overflow bool // body exceeded max_body
	bodyLost bool // the body could not be read: the request cannot be forwarded in any mode
	err      error
}

type matchedRule struct {
	id       int
	severity string
	msg      string
}

func (v *verdict) matched() bool { return v.status != 0 || len(v.rules) > 0 || v.err != nil }

func (w *WAF) inspect(r *http.Request) (v verdict) {
	info := reqctx.From(r.Context())
	var tx types.Transaction
	if info != nil && info.ID != "" {
		tx = w.engine.waf.NewTransactionWithID(info.ID)
	} else {
		tx = w.engine.waf.NewTransaction()
	}
	defer func() {
		v.rules = matched(tx)
		tx.Close()
	}()

	client, port := clientAddr(r, info)
	tx.ProcessConnection(client, port, "", 0)
	uri := r.RequestURI // as the client sent it, so encoding tricks stay visible
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	tx.ProcessURI(uri, r.Method, r.Proto)
	for k, vals := range r.Header {
		for _, val := range vals {
			tx.AddRequestHeader(k, val)
		}
	}
	if r.ContentLength > 0 && r.Header.Get("Content-Length") == "" {
		// Go keeps the length out of Header on requests it built itself.
		tx.AddRequestHeader("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	if r.Host != "" {
		tx.AddRequestHeader("Host", r.Host)
		tx.SetServerName(r.Host)
	}
	for _, te := range r.TransferEncoding {
		tx.AddRequestHeader("Transfer-Encoding", te)
	}
	if it := tx.ProcessRequestHeaders(); it != nil {
		return interrupted(it)
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body, overflow, err := w.readBody(r)
		if err != nil {
			v.status, v.detail, v.err, v.bodyLost = http.StatusBadRequest, "request body could not be read completely", err, true
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				v.status, v.detail = http.StatusRequestEntityTooLarge, "request body too large"
			}
			return v
		}
		if overflow && !w.partial {
			v.overflow = true
			v.status, v.detail = http.StatusRequestEntityTooLarge,
				fmt.Sprintf("request body larger than the %d bytes the firewall inspects", w.maxBody)
			return v
		}
		if it, _, err := tx.WriteRequestBody(body); err != nil {
			v.status, v.detail, v.err = http.StatusInternalServerError, "request could not be inspected", err
			return v
		} else if it != nil {
			return interrupted(it)
		}
	}
	it, err := tx.ProcessRequestBody()
	if err != nil {
		v.status, v.detail, v.err = http.StatusInternalServerError, "request could not be inspected", err
		return v
	}
	if it != nil {
		return interrupted(it)
	}
	return v
}

func interrupted(it *types.Interruption) verdict {
	status := http.StatusForbidden
	if it.Status == http.StatusBadRequest {
		status = http.StatusBadRequest // the body could not be parsed as its content type says
	}
	detail := "request blocked by the web application firewall"
	if status == http.StatusBadRequest {
		detail = "request body does not parse as its Content-Type"
	}
	return verdict{status: status, detail: detail}
}

// readBody buffers up to maxBody bytes of the body for inspection and leaves
// r.Body replaying the complete, unchanged body. overflow reports that the
// body is longer than maxBody.
func (w *WAF) readBody(r *http.Request) (inspect []byte, overflow bool, err error) {
	size := r.ContentLength
	if size < 0 || size > w.maxBody {
		size = min(w.maxBody, 32<<10)
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+1))
	n, err := buf.ReadFrom(io.LimitReader(r.Body, w.maxBody+1))
	if err != nil {
		return nil, false, err
	}
	data := buf.Bytes()
	if n > w.maxBody {
		// Replay what was read, then the unread rest of the original body.
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(data), r.Body), r.Body}
		return data, true, nil // maxBody+1 bytes: Coraza truncates and flags INBOUND_DATA_ERROR
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	return data, false, nil
}

// matched lists the rules that contributed to the verdict: the detection
// rules (those with a severity) and the rule that interrupted, never the
// matched values. CRS bookkeeping rules (paranoia skips, score setup) match on
// every request and are left out.
func matched(tx types.Transaction) []matchedRule {
	interruptedBy := -1
	if it := tx.Interruption(); it != nil {
		interruptedBy = it.RuleID
	}
	var out []matchedRule
	for _, m := range tx.MatchedRules() {
		meta := m.Rule()
		if meta.Severity() == types.RuleSeverityUnset && meta.ID() != interruptedBy {
			continue
		}
		out = append(out, matchedRule{id: meta.ID(), severity: meta.Severity().String(), msg: m.Message()})
	}
	return out
}

func clientAddr(r *http.Request, info *reqctx.Info) (string, int) {
	host, portStr, err := net.SplitHostPort(r.RemoteAddr)
	port, _ := strconv.Atoi(portStr)
	if info != nil && info.Client.IsValid() {
		return info.Client.String(), port
	}
	if err != nil {
		return r.RemoteAddr, 0
	}
	return host, port
}

// record logs, counts, audits and alerts one flagged request.
func (w *WAF) record(r *http.Request, v verdict) {
	info := reqctx.From(r.Context())
	ids := make([]string, 0, len(v.rules))
	msgs := make([]string, 0, len(v.rules))
	for _, m := range v.rules {
		id := strconv.Itoa(m.id)
		ids = append(ids, id)
		if m.msg != "" {
			msgs = append(msgs, id+": "+m.msg)
		}
		if info != nil {
			info.AddWAFRule(id)
		}
	}
	blocked := w.block && v.status != 0
	action := ModeDetect
	if blocked {
		action = ModeBlock
	}
	if w.metrics != nil {
		w.metrics.WAFMatches.WithLabelValues(w.route, action).Inc()
		if blocked {
			w.metrics.PolicyDenials.WithLabelValues(w.route, "waf").Inc()
		}
	}
	var identity string
	client := netip.Addr{}
	if info != nil {
		client = info.Client
		if id := info.Identity(); id != nil {
			identity = firstNonEmpty(id.Subject, id.KeyName)
		}
		if blocked {
			rule := "waf"
			if len(ids) > 0 {
				rule = "waf:" + ids[0] // the first detection rule; the last is the score check
			}
			info.SetDecision("deny", rule)
		}
	}
	if !client.IsValid() {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			client = ap.Addr().Unmap()
		}
	}
	attrs := []slog.Attr{
		slog.String("route", w.route), slog.String("action", action), slog.Int("status", v.status),
		slog.String("client", addrString(client)), slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("rules", strings.Join(ids, ",")),
	}
	if identity != "" {
		attrs = append(attrs, slog.String("identity", identity))
	}
	if v.overflow {
		attrs = append(attrs, slog.Bool("body_overflow", true))
	}
	if v.err != nil {
		attrs = append(attrs, slog.String("error", v.err.Error()))
	}
	kind := audit.KindWAFMatch
	if blocked {
		kind = audit.KindWAFBlock
	}
	w.audit.Event(kind, append(attrs, slog.Any("messages", msgs))...)
	args := make([]any, 0, len(attrs))
	for _, a := range attrs {
		args = append(args, a)
	}
	if blocked {
		w.logger.Warn("request blocked by WAF", args...)
		w.alerts.Raise(alert.Alert{Kind: "waf_block", Route: w.route, Client: client, Identity: identity,
			Detail: "rules " + strings.Join(ids, ",")})
	} else {
		w.logger.Info("WAF match (detect mode, passed)", args...)
	}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
