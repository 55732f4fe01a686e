// Package reqctx carries what the engine learns about one request (its id,
// route, the authenticated identity, policy decisions, DLP and WAF findings)
// from stage to stage and into the access log. It holds no secrets: a token or
// key is never stored here, only who it identified.
package reqctx

import (
	"context"
	"net/netip"
	"sync"
)

// Identity is who a request was authenticated as.
type Identity struct {
	Method  string   `json:"method"`             // jwt | apikey | mtls
	Subject string   `json:"subject,omitempty"`  // JWT sub, certificate subject
	Issuer  string   `json:"issuer,omitempty"`   // JWT iss, certificate issuer
	KeyName string   `json:"key_name,omitempty"` // API key name
	Roles   []string `json:"roles,omitempty"`
	Scopes  []string `json:"scopes,omitempty"`
	// Claims holds the verified token's claims for authorization rules; it is
	// never logged.
	Claims map[string]any `json:"-"`
}

// Info is the per-request record. Stages run sequentially per request, but a
// response body may be scanned on another goroutine than the handler's, so the
// mutable parts are guarded.
type Info struct {
	ID       string
	Listener string
	Route    string
	Upstream string // host:port the request was forwarded to
	Client   netip.Addr
	Sealed   bool

	mu       sync.Mutex
	identity *Identity
	decision string // allow | deny
	rule     string // the rule or reason that decided
	dlp      map[string]int
	waf      []string
	notes    map[string]string
}

type key struct{}

// With returns ctx carrying info.
func With(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, key{}, info)
}

// From returns the Info in ctx, or nil.
func From(ctx context.Context) *Info {
	info, _ := ctx.Value(key{}).(*Info)
	return info
}

// SetIdentity records the authenticated identity.
func (i *Info) SetIdentity(id *Identity) {
	i.mu.Lock()
	i.identity = id
	i.mu.Unlock()
}

// Identity returns the authenticated identity or nil.
func (i *Info) Identity() *Identity {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.identity
}

// SetDecision records the policy decision and the rule (or reason) behind it.
func (i *Info) SetDecision(decision, rule string) {
	i.mu.Lock()
	i.decision, i.rule = decision, rule
	i.mu.Unlock()
}

// Decision returns the recorded policy decision and rule.
func (i *Info) Decision() (decision, rule string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.decision, i.rule
}

// AddDLP counts n findings of kind.
func (i *Info) AddDLP(kind string, n int) {
	i.mu.Lock()
	if i.dlp == nil {
		i.dlp = make(map[string]int)
	}
	i.dlp[kind] += n
	i.mu.Unlock()
}

// DLP returns a copy of the finding counts by kind.
func (i *Info) DLP() map[string]int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if len(i.dlp) == 0 {
		return nil
	}
	out := make(map[string]int, len(i.dlp))
	for k, v := range i.dlp {
		out[k] = v
	}
	return out
}

// AddWAFRule records the id of a WAF rule that matched.
func (i *Info) AddWAFRule(id string) {
	i.mu.Lock()
	i.waf = append(i.waf, id)
	i.mu.Unlock()
}

// WAFRules returns the matched WAF rule ids.
func (i *Info) WAFRules() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]string(nil), i.waf...)
}

// SetNote attaches a short, non-secret key/value to the access log line.
func (i *Info) SetNote(k, v string) {
	i.mu.Lock()
	if i.notes == nil {
		i.notes = make(map[string]string)
	}
	i.notes[k] = v
	i.mu.Unlock()
}

// Notes returns a copy of the notes.
func (i *Info) Notes() map[string]string {
	i.mu.Lock()
	defer i.mu.Unlock()
	if len(i.notes) == 0 {
		return nil
	}
	out := make(map[string]string, len(i.notes))
	for k, v := range i.notes {
		out[k] = v
	}
	return out
}
