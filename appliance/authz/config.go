package authz

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Config is a route's [route.authz] table.
type Config struct {
	// Rules are the [[route.authz.rule]] entries. With at least one rule,
	// a request no rule matches is denied.
	Rules []Rule `toml:"rule"`
}

// Rule allows the requests its pattern matches when every requirement it
// states holds.
type Rule struct {
	// Match is a Go ServeMux pattern: "[METHOD ][HOST]/path", with {name}
	// and {name...} wildcards. Where patterns overlap the most specific one
	// decides, as in ServeMux.
	Match string `toml:"match"`
	// Scopes must all be held by the identity.
	Scopes []string `toml:"scopes"`
	// Roles: the identity must hold at least one of them.
	Roles []string `toml:"roles"`
	// Owner ties a path variable to a claim of the identity.
	Owner *Owner `toml:"owner"`
	// CEL is an expression over request and identity that must be true.
	CEL string `toml:"cel"`
}

// Owner requires path variable Var to equal claim Claim (a dotted path), or
// to be one of its values when the claim is a list.
type Owner struct {
	Var   string `toml:"var"`   // wildcard name in Match, e.g. "id"
	Claim string `toml:"claim"` // claim of the identity, e.g. "sub" or "org.accounts"
}

// IsZero reports whether c has no rules.
func (c Config) IsZero() bool { return len(c.Rules) == 0 }

// NeedsIdentity reports whether some rule requires an authenticated
// identity (scopes, roles or an owner), so the route must authenticate.
func (c Config) NeedsIdentity() (int, bool) {
	for i, r := range c.Rules {
		if len(r.Scopes) > 0 || len(r.Roles) > 0 || r.Owner != nil {
			return i, true
		}
	}
	return 0, false
}

var wildcardRE = regexp.MustCompile(`\{([^}]*)\}`)

// patternVars returns the wildcard names in a ServeMux pattern.
func patternVars(pattern string) []string {
	var out []string
	for _, m := range wildcardRE.FindAllStringSubmatch(pattern, -1) {
		name := strings.TrimSuffix(m[1], "...")
		if name != "$" && name != "" {
			out = append(out, name)
		}
	}
	return out
}

func (r Rule) validate() error {
	if strings.TrimSpace(r.Match) == "" {
		return errors.New(`match: missing; write a pattern such as "GET /api/customers/{id}"`)
	}
	for i, s := range r.Scopes {
		if s == "" {
			return fmt.Errorf("scopes[%d]: empty", i)
		}
	}
	for i, s := range r.Roles {
		if s == "" {
			return fmt.Errorf("roles[%d]: empty", i)
		}
	}
	if r.Owner != nil {
		if r.Owner.Var == "" {
			return errors.New("owner.var: missing; name a wildcard of match, e.g. \"id\"")
		}
		found := false
		for _, v := range patternVars(r.Match) {
			found = found || v == r.Owner.Var
		}
		if !found {
			return fmt.Errorf("owner.var: %q is not a wildcard of match %q", r.Owner.Var, r.Match)
		}
		if r.Owner.Claim == "" {
			return errors.New(`owner.claim: missing; name the identity claim that holds the owner, e.g. "sub"`)
		}
	}
	return nil
}
