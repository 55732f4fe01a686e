package policy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealgate/sealgate/appliance/alert"
	"github.com/sealgate/sealgate/appliance/authn"
	"github.com/sealgate/sealgate/appliance/authz"
	"github.com/sealgate/sealgate/appliance/blocker"
	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/appliance/problem"
	"github.com/sealgate/sealgate/appliance/ratelimit"
	"github.com/sealgate/sealgate/appliance/reqctx"
)

// Config is a route's access policy: the [route.auth], [[route.authz.rule]]
// and [route.rate_limit] tables under [[route]].
type Config struct {
	Auth      authn.Config     `toml:"auth"`       // who may call: [route.auth]
	Authz     authz.Config     `toml:"authz"`      // what they may do: [[route.authz.rule]]
	RateLimit ratelimit.Config `toml:"rate_limit"` // how often: [route.rate_limit]
}

// IsZero reports whether c sets no policy at all.
func (c Config) IsZero() bool {
	return c.Auth.IsZero() && c.Authz.IsZero() && c.RateLimit.IsZero()
}

// Deps are what the pipeline reports to and acts through.
type Deps struct {
	// Metrics counts denials; nil counts nothing.
	Metrics *metrics.Metrics
	// Logger receives denials (debug) and escalations (warn); nil discards.
	Logger *slog.Logger
	// Blocker receives escalated sources; required when rate_limit.escalate
	// is set.
	Blocker blocker.Blocker
	// Alerts receives escalations; nil discards.
	Alerts alert.Sink
	// HTTPClient fetches JWKS URLs; nil uses a client with a 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Denial reasons, the values of the reason label of
// sealgate_policy_denials_total.
const (
	ReasonUnauthenticated = "unauthenticated"
	ReasonInvalidToken    = "invalid_token"
	ReasonForbidden       = authz.ReasonForbidden
	ReasonNotOwner        = authz.ReasonNotOwner
	ReasonCEL             = authz.ReasonCEL
	ReasonNoRule          = authz.ReasonNoRule
	ReasonRateLimited     = "rate_limited"
)

var reasons = []string{ReasonUnauthenticated, ReasonInvalidToken, ReasonForbidden, ReasonNotOwner,
	ReasonCEL, ReasonNoRule, ReasonRateLimited}

// Pipeline is one route's compiled policy. It is safe for concurrent use.
type Pipeline struct {
	route   string
	authn   *authn.Authenticator // nil: no authentication
	authz   *authz.Authorizer    // nil: no rules
	limit   *ratelimit.Limiter   // nil: no rate limit
	log     *slog.Logger
	block   blocker.Blocker
	alerts  alert.Sink
	now     func() time.Time
	denials map[string]prometheus.Counter
	detail  string // 401 detail: which credentials the route accepts
}

// Validate checks cfg without side effects (no file reads, no fetches, no
// goroutines), for `sealgate check-config`. Errors name the field:
// "route[customers].authz.rule[1].cel: 1:10: undeclared reference to 'foo'".
func Validate(route string, cfg Config) error {
	if err := validate(cfg); err != nil {
		return fmt.Errorf("route[%s].%w", route, err)
	}
	return nil
}

func validate(cfg Config) error {
	if err := cfg.Auth.Validate(); err != nil {
		return err
	}
	if _, err := authz.New(cfg.Authz); err != nil {
		return err
	}
	if i, needs := cfg.Authz.NeedsIdentity(); needs && !cfg.Auth.Enabled() {
		return fmt.Errorf("authz.rule[%d]: requires scopes, roles or an owner, but the route authenticates no one; set auth.methods", i)
	}
	if !cfg.RateLimit.IsZero() {
		if err := cfg.RateLimit.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// New compiles a route's policy: it validates cfg, loads JWKS files, starts
// JWKS URL refreshers (stop them with Close) and builds the rate limiter. A
// zero Config gives a pipeline whose Wrap returns the handler unchanged.
func New(route string, cfg Config, deps Deps) (_ *Pipeline, err error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Alerts == nil {
		deps.Alerts = alert.Discard
	}
	p := &Pipeline{
		route: route, log: deps.Logger.With("component", "policy", "route", route),
		block: deps.Blocker, alerts: deps.Alerts, now: deps.Now,
	}
	if cfg.IsZero() {
		return p, nil
	}
	if err := validate(cfg); err != nil {
		return nil, fmt.Errorf("route[%s].%w", route, err)
	}
	if cfg.Auth.Enabled() {
		p.authn, err = authn.New(cfg.Auth, authn.Options{HTTPClient: deps.HTTPClient, Now: deps.Now,
			Logger: deps.Logger.With("component", "authn", "route", route)})
		if err != nil {
			return nil, fmt.Errorf("route[%s].%w", route, err)
		}
		defer func() {
			if err != nil {
				p.authn.Close()
			}
		}()
		p.detail = accepted(cfg.Auth.Methods)
	}
	if !cfg.Authz.IsZero() {
		if p.authz, err = authz.New(cfg.Authz); err != nil {
			return nil, fmt.Errorf("route[%s].%w", route, err)
		}
	}
	if !cfg.RateLimit.IsZero() {
		if p.limit, err = ratelimit.New(cfg.RateLimit, deps.Now); err != nil {
			return nil, fmt.Errorf("route[%s].%w", route, err)
		}
		if esc, _ := p.limit.Escalates(); esc && deps.Blocker == nil {
			return nil, fmt.Errorf("route[%s].rate_limit.escalate: no blocklist to escalate to (the engine was started without one)", route)
		}
	}
	if deps.Metrics != nil {
		p.denials = make(map[string]prometheus.Counter, len(reasons))
		for _, r := range reasons {
			p.denials[r] = deps.Metrics.PolicyDenials.WithLabelValues(route, r)
		}
	}
	return p, nil
}

func accepted(methods []string) string {
	names := map[string]string{
		authn.MethodJWT: "a bearer token", authn.MethodAPIKey: "an API key", authn.MethodMTLS: "a client certificate",
	}
	out := ""
	for i, m := range methods {
		switch {
		case i == 0:
		case i == len(methods)-1:
			out += " or "
		default:
			out += ", "
		}
		out += names[m]
	}
	return "This API requires authentication: send " + out + "."
}

// Close stops the JWKS refreshers.
func (p *Pipeline) Close() {
	if p != nil && p.authn != nil {
		p.authn.Close()
	}
}

// Wrap returns next behind the pipeline: authentication, then
// authorization, then the rate limit. Every request counts against the rate
// limit, denied ones included (a client probing ids or tokens is throttled
// like any other); a client over its limit gets 429 whatever else is wrong.
func (p *Pipeline) Wrap(next http.Handler) http.Handler {
	if p == nil || (p.authn == nil && p.authz == nil && p.limit == nil) {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.serve(w, r, next)
	})
}

func (p *Pipeline) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	info := reqctx.From(r.Context())
	client := clientAddr(info, r)
	var id *reqctx.Identity
	rule := "public"
	if p.authn != nil {
		var err error
		id, err = p.authn.Authenticate(r)
		if err != nil {
			reason := ReasonUnauthenticated
			if errors.Is(err, authn.ErrInvalidCredentials) {
				reason = ReasonInvalidToken
			}
			if p.throttled(w, r, info, nil, client) {
				return
			}
			p.log.Debug("request denied", "reason", reason, "why", err.Error(), "client", client)
			w.Header().Set("WWW-Authenticate", p.authn.Challenge(reason == ReasonInvalidToken))
			detail := p.detail
			if reason == ReasonInvalidToken {
				detail = "The credentials sent were not accepted."
			}
			p.deny(w, r, info, http.StatusUnauthorized, reason, detail)
			return
		}
		if info != nil {
			info.SetIdentity(id)
		}
		p.authn.Forward(r, id)
		rule = "authenticated"
	}
	if p.authz != nil {
		d := p.authz.Authorize(r, id, client)
		if !d.Allowed {
			if p.throttled(w, r, info, id, client) {
				return
			}
			p.log.Debug("request denied", "reason", d.Reason, "rule", d.Rule, "subject", subject(id), "client", client)
			p.deny(w, r, info, http.StatusForbidden, d.Reason, "You are not allowed to perform this request.")
			return
		}
		rule = d.Rule
	}
	if p.throttled(w, r, info, id, client) {
		return
	}
	if info != nil {
		info.SetDecision("allow", rule)
	}
	next.ServeHTTP(w, r)
}

// throttled takes a token for the request; when none is left it answers
// 429, escalates if the key keeps overrunning, and returns true.
func (p *Pipeline) throttled(w http.ResponseWriter, r *http.Request, info *reqctx.Info, id *reqctx.Identity, client netip.Addr) bool {
	if p.limit == nil {
		return false
	}
	res := p.limit.Allow(p.limitKey(id, client))
	p.limit.SetHeaders(w.Header(), res)
	if res.Allowed {
		return false
	}
	if res.Escalate {
		p.escalate(id, client)
	}
	p.deny(w, r, info, http.StatusTooManyRequests, ReasonRateLimited, "Too many requests; retry after the number of seconds in Retry-After.")
	return true
}

// limitKey is the bucket of a request: the identity when the route limits
// by identity and one is known, else the client address.
func (p *Pipeline) limitKey(id *reqctx.Identity, client netip.Addr) string {
	if p.limit.KeyKind() == ratelimit.KeyIdentity && id != nil {
		switch {
		case id.KeyName != "":
			return "key:" + id.KeyName
		case id.Subject != "":
			return id.Method + ":" + id.Issuer + "|" + id.Subject
		}
	}
	return ratelimit.ClientKey(client)
}

func (p *Pipeline) escalate(id *reqctx.Identity, client netip.Addr) {
	prefix := ratelimit.ClientPrefix(client)
	if !prefix.IsValid() {
		return
	}
	_, ttl := p.limit.Escalates()
	after, within := p.limit.EscalationWindow()
	err := p.block.Block(prefix, ttl, "ratelimit:"+p.route, "ratelimit")
	detail := fmt.Sprintf("rate limit exceeded %d times within %s; %s blocked for %s", after, within, prefix, ttl)
	if err != nil {
		detail = fmt.Sprintf("rate limit exceeded %d times within %s; blocking %s failed", after, within, prefix)
		p.log.Error("blocking rate-limit offender", "prefix", prefix, "err", err)
	} else {
		p.log.Warn("rate-limit offender blocked", "prefix", prefix, "ttl", ttl, "subject", subject(id))
	}
	p.alerts.Raise(alert.Alert{
		Time: p.now(), Kind: "denials", Route: p.route, Client: client, Identity: subject(id), Detail: detail,
	})
}

func subject(id *reqctx.Identity) string {
	if id == nil {
		return ""
	}
	if id.KeyName != "" {
		return id.KeyName
	}
	return id.Subject
}

func (p *Pipeline) deny(w http.ResponseWriter, r *http.Request, info *reqctx.Info, status int, reason, detail string) {
	if c := p.denials[reason]; c != nil {
		c.Inc()
	}
	pr := problem.New(status, "", detail)
	if info != nil {
		info.SetDecision("deny", reason)
		pr.RequestID = info.ID
	}
	if pr.RequestID == "" {
		pr.RequestID = r.Header.Get("X-Request-Id")
	}
	problem.Write(w, pr)
}

// clientAddr is the engine's idea of the client (reqctx), else RemoteAddr.
func clientAddr(info *reqctx.Info, r *http.Request) netip.Addr {
	if info != nil && info.Client.IsValid() {
		return info.Client.Unmap()
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// Status is what `sealgate status` shows about a route's policy.
type Status struct {
	Route      string               `json:"route"`
	Auth       bool                 `json:"auth"`                 // the route requires credentials
	JWKS       []authn.SourceStatus `json:"jwks,omitempty"`       // one per JWT issuer
	AuthzRules bool                 `json:"authz_rules"`          // the route has rules (default deny)
	RateLimit  *ratelimit.Stats     `json:"rate_limit,omitempty"` // key table, when rate limited
}

// Status returns the pipeline's Status: JWKS sources (kind, location, last
// fetch, last error, key count) and the rate limiter's key table.
func (p *Pipeline) Status() any {
	st := Status{Route: p.route, Auth: p.authn != nil, AuthzRules: p.authz != nil}
	if p.authn != nil {
		st.JWKS = p.authn.Status()
	}
	if p.limit != nil {
		s := p.limit.Stats()
		st.RateLimit = &s
	}
	return st
}
