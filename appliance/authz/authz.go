package authz

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"

	"github.com/google/cel-go/cel"

	"github.com/sealgate/sealgate/appliance/authn"
	"github.com/sealgate/sealgate/appliance/reqctx"
)

// Denial reasons, bounded for the sealgate_policy_denials_total label.
const (
	ReasonForbidden = "forbidden" // scopes or roles missing
	ReasonNotOwner  = "not_owner" // object-level check failed
	ReasonCEL       = "cel"       // attribute rule false or failed
	ReasonNoRule    = "no_rule"   // no rule matches on a protected route
)

// Decision is the outcome of Authorize.
type Decision struct {
	// Allowed is true when the request may proceed.
	Allowed bool
	// Rule is the pattern of the rule that decided ("" with no_rule).
	Rule string
	// Reason is one of the Reason constants when denied.
	Reason string
}

type compiledRule struct {
	Rule
	vars []string
	prg  cel.Program
}

// Authorizer decides requests against a route's rules. It is safe for
// concurrent use.
type Authorizer struct {
	rules []compiledRule
	mux   *http.ServeMux
	index map[string]int // registered pattern → rule
}

// New validates and compiles cfg: patterns are registered in a ServeMux (a
// conflict is an error naming both rules) and CEL is type-checked. Errors
// name the field under "authz.".
func New(cfg Config) (*Authorizer, error) {
	a := &Authorizer{mux: http.NewServeMux(), index: map[string]int{}}
	var env *cel.Env
	for i, r := range cfg.Rules {
		field := fmt.Sprintf("authz.rule[%d]", i)
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("%s.%w", field, err)
		}
		if prev, dup := a.index[r.Match]; dup {
			return nil, fmt.Errorf("%s.match: %q is already the pattern of authz.rule[%d]", field, r.Match, prev)
		}
		if err := register(a.mux, r.Match); err != nil {
			return nil, fmt.Errorf("%s.match: %w", field, err)
		}
		a.index[r.Match] = i
		cr := compiledRule{Rule: r, vars: patternVars(r.Match)}
		if r.CEL != "" {
			if env == nil {
				var err error
				if env, err = newCELEnv(); err != nil {
					return nil, fmt.Errorf("authz: cel environment: %w", err)
				}
			}
			prg, err := compileCEL(env, r.CEL)
			if err != nil {
				return nil, fmt.Errorf("%s.cel: %w", field, err)
			}
			cr.prg = prg
		}
		a.rules = append(a.rules, cr)
	}
	return a, nil
}

// register adds pattern to mux, turning ServeMux's panic on a malformed or
// conflicting pattern into an error.
func register(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	mux.Handle(pattern, matchHandler)
	return nil
}

// matchHandler marks the probe: the request reached a rule's pattern.
var matchHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	if p, ok := w.(*probe); ok {
		p.matched = true
	}
})

// Enabled reports whether the route has rules.
func (a *Authorizer) Enabled() bool { return len(a.rules) > 0 }

// Authorize finds the most specific rule matching r and checks it against
// id (nil when unauthenticated). client is the client address for CEL.
func (a *Authorizer) Authorize(r *http.Request, id *reqctx.Identity, client netip.Addr) Decision {
	if len(a.rules) == 0 {
		return Decision{Allowed: true}
	}
	// ServeMux records the matched pattern and wildcards on the request it
	// serves; give it a copy so the caller's request keeps its own.
	m := r.WithContext(r.Context())
	m.Pattern = ""
	p := &probe{}
	a.mux.ServeHTTP(p, m)
	// Only a rule's own handler counts as a match: ServeMux also reports a
	// pattern when it redirects to a cleaned path, and such requests (dot
	// segments, doubled slashes) are refused rather than guessed at.
	i, ok := a.index[m.Pattern]
	if !p.matched || !ok {
		return Decision{Reason: ReasonNoRule}
	}
	rule := &a.rules[i]
	d := Decision{Rule: rule.Match}
	for _, s := range rule.Scopes {
		if id == nil || !slices.Contains(id.Scopes, s) {
			d.Reason = ReasonForbidden
			return d
		}
	}
	if len(rule.Roles) > 0 && (id == nil || !slices.ContainsFunc(rule.Roles, func(role string) bool {
		return slices.Contains(id.Roles, role)
	})) {
		d.Reason = ReasonForbidden
		return d
	}
	if o := rule.Owner; o != nil {
		v := m.PathValue(o.Var)
		if v == "" || !slices.Contains(authn.ClaimValues(id, o.Claim), v) {
			d.Reason = ReasonNotOwner
			return d
		}
	}
	if rule.prg != nil {
		out, _, err := rule.prg.Eval(&activation{r: m, id: id, client: client, vars: rule.vars})
		if err != nil || out.Value() != true {
			d.Reason = ReasonCEL
			return d
		}
	}
	d.Allowed = true
	return d
}

// probe is the ResponseWriter the mux is run against; ServeMux's own
// answers (404, 405, redirects) are discarded.
type probe struct{ matched bool }

func (*probe) Header() http.Header         { return http.Header{} }
func (*probe) Write(b []byte) (int, error) { return len(b), nil }
func (*probe) WriteHeader(int)             {}
