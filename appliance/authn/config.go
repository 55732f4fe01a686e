package authn

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Method names for Config.Methods.
const (
	MethodJWT    = "jwt"
	MethodAPIKey = "apikey"
	MethodMTLS   = "mtls"
	MethodNone   = "none"
)

// Config is a route's [route.auth] table.
type Config struct {
	// Methods lists the accepted credentials in the order they are tried:
	// "jwt", "apikey", "mtls"; or ["none"] for a route without
	// authentication. The first credential present decides: a request with
	// an invalid bearer token is refused even if it also holds a valid
	// client certificate tried later.
	Methods []string `toml:"methods"`
	// ForwardHeaders names the request headers the identity is forwarded
	// upstream in. Copies of these headers sent by the client are always
	// removed.
	ForwardHeaders ForwardHeaders `toml:"forward_headers"`
	// JWT lists the trusted token issuers ([[route.auth.jwt]]).
	JWT []JWTConfig `toml:"jwt"`
	// APIKey configures API keys ([route.auth.apikey]).
	APIKey *APIKeyConfig `toml:"apikey"`
}

// ForwardHeaders names upstream headers for parts of the identity; an empty
// name forwards nothing for that part. Lists are joined with ",".
type ForwardHeaders struct {
	Subject string `toml:"subject"`  // JWT sub, key name, certificate subject
	Issuer  string `toml:"issuer"`   // JWT iss, certificate issuer
	Method  string `toml:"method"`   // jwt | apikey | mtls
	KeyName string `toml:"key_name"` // API key name
	Roles   string `toml:"roles"`    // comma-separated
	Scopes  string `toml:"scopes"`   // comma-separated
}

// JWTConfig is one trusted issuer ([[route.auth.jwt]]).
type JWTConfig struct {
	// Issuer must equal the token's iss claim; an https URL.
	Issuer string `toml:"issuer"`
	// Audience lists accepted aud values; a token must name at least one.
	Audience []string `toml:"audience"`
	// Algorithms is the allow-list of signature algorithms: RS256, RS384,
	// RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA. HMAC and
	// "none" are refused.
	Algorithms []string `toml:"algorithms"`
	// JWKSFile is a local JWKS document; exactly one of JWKSFile and JWKSURL.
	JWKSFile string `toml:"jwks_file"`
	// JWKSURL is an https URL serving the JWKS document.
	JWKSURL string `toml:"jwks_url"`
	// Refresh is how often the JWKS is fetched again (default "10m").
	Refresh string `toml:"refresh"`
	// Leeway is the clock skew allowed on exp, nbf and iat (default "30s").
	Leeway string `toml:"leeway"`
	// RolesClaim names the claim holding roles (default "roles"); a dotted
	// path such as "realm_access.roles" reaches into objects.
	RolesClaim string `toml:"roles_claim"`
	// ScopesClaim names the claim holding scopes (default "scope"), either a
	// space-separated string or a list.
	ScopesClaim string `toml:"scopes_claim"`
}

// APIKeyConfig is the [route.auth.apikey] table.
type APIKeyConfig struct {
	// Header carries the key (default "X-API-Key" when Query is empty).
	Header string `toml:"header"`
	// Query names a query parameter carrying the key. It is removed from the
	// URL before the request goes further.
	Query string `toml:"query"`
	// Keys are the accepted keys, stored only as hashes.
	Keys []APIKey `toml:"keys"`
}

// APIKey is one accepted key.
type APIKey struct {
	// Name identifies the key in logs, metrics-free access logs and rules.
	Name string `toml:"name"`
	// SHA256 is the hex SHA-256 of the key (sealgate keys hash prints it).
	SHA256 string   `toml:"sha256"`
	Roles  []string `toml:"roles"`  // roles the key holds, for authz rules
	Scopes []string `toml:"scopes"` // scopes the key holds, for authz rules
}

// IsZero reports whether c configures no authentication at all.
func (c Config) IsZero() bool {
	return len(c.Methods) == 0 && len(c.JWT) == 0 && c.APIKey == nil && c.ForwardHeaders == (ForwardHeaders{})
}

// Enabled reports whether c requires some credential (not "none", not empty).
func (c Config) Enabled() bool {
	return len(c.Methods) > 0 && !(len(c.Methods) == 1 && c.Methods[0] == MethodNone)
}

var allowedAlgs = map[string]jose.SignatureAlgorithm{
	"RS256": jose.RS256, "RS384": jose.RS384, "RS512": jose.RS512,
	"PS256": jose.PS256, "PS384": jose.PS384, "PS512": jose.PS512,
	"ES256": jose.ES256, "ES384": jose.ES384, "ES512": jose.ES512,
	"EdDSA": jose.EdDSA,
}

// Validate checks c; errors name the field under "auth.".
func (c Config) Validate() error {
	seen := map[string]bool{}
	for i, m := range c.Methods {
		switch m {
		case MethodJWT, MethodAPIKey, MethodMTLS:
		case MethodNone:
			if len(c.Methods) != 1 {
				return fmt.Errorf("auth.methods[%d]: \"none\" cannot be combined with other methods", i)
			}
		default:
			return fmt.Errorf("auth.methods[%d]: %q is not one of jwt, apikey, mtls, none", i, m)
		}
		if seen[m] {
			return fmt.Errorf("auth.methods[%d]: %q is listed twice", i, m)
		}
		seen[m] = true
	}
	if len(c.Methods) == 0 && (len(c.JWT) > 0 || c.APIKey != nil) {
		return errors.New(`auth.methods: missing; list the accepted credentials, e.g. ["jwt"]`)
	}
	switch {
	case seen[MethodJWT] && len(c.JWT) == 0:
		return errors.New("auth.jwt: methods lists jwt but no [[route.auth.jwt]] issuer is configured")
	case !seen[MethodJWT] && len(c.JWT) > 0:
		return errors.New(`auth.jwt: issuers configured but "jwt" is not in auth.methods`)
	case seen[MethodAPIKey] && c.APIKey == nil:
		return errors.New("auth.apikey: methods lists apikey but no [route.auth.apikey] table is configured")
	case !seen[MethodAPIKey] && c.APIKey != nil:
		return errors.New(`auth.apikey: configured but "apikey" is not in auth.methods`)
	}
	if c.ForwardHeaders != (ForwardHeaders{}) && !c.Enabled() {
		return errors.New("auth.forward_headers: set but the route authenticates no one")
	}
	if err := c.ForwardHeaders.validate(); err != nil {
		return err
	}
	issuers := map[string]int{}
	for i, j := range c.JWT {
		if err := j.validate(); err != nil {
			return fmt.Errorf("auth.jwt[%d].%w", i, err)
		}
		if prev, dup := issuers[j.Issuer]; dup {
			return fmt.Errorf("auth.jwt[%d].issuer: %q is already configured in auth.jwt[%d]", i, j.Issuer, prev)
		}
		issuers[j.Issuer] = i
	}
	if c.APIKey != nil {
		if err := c.APIKey.validate(); err != nil {
			return fmt.Errorf("auth.apikey.%w", err)
		}
	}
	return nil
}

// reservedHeaders may not carry a forwarded identity: they mean something
// to HTTP itself or carry credentials.
var reservedHeaders = []string{
	"Authorization", "Connection", "Content-Length", "Content-Type", "Cookie", "Host",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "X-Forwarded-For",
}

func (f ForwardHeaders) validate() error {
	used := map[string]string{}
	for _, kv := range [][2]string{
		{"subject", f.Subject}, {"issuer", f.Issuer}, {"method", f.Method},
		{"key_name", f.KeyName}, {"roles", f.Roles}, {"scopes", f.Scopes},
	} {
		field, name := kv[0], kv[1]
		if name == "" {
			continue
		}
		if !validHeaderName(name) {
			return fmt.Errorf("auth.forward_headers.%s: %q is not a valid header name", field, name)
		}
		canon := http.CanonicalHeaderKey(name)
		if slices.Contains(reservedHeaders, canon) {
			return fmt.Errorf("auth.forward_headers.%s: %q is reserved; pick a name such as X-Auth-Subject", field, name)
		}
		if other, dup := used[canon]; dup {
			return fmt.Errorf("auth.forward_headers.%s: %q is already used for %s", field, name, other)
		}
		used[canon] = field
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// jwtSettings is a validated JWTConfig.
type jwtSettings struct {
	JWTConfig
	algs    []jose.SignatureAlgorithm
	refresh time.Duration
	leeway  time.Duration
}

func (j JWTConfig) validate() error {
	_, err := j.settings()
	return err
}

func (j JWTConfig) settings() (jwtSettings, error) {
	s := jwtSettings{JWTConfig: j, refresh: 10 * time.Minute, leeway: 30 * time.Second}
	u, err := url.Parse(j.Issuer)
	if j.Issuer == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		return s, fmt.Errorf("issuer: %q must be an https URL equal to the tokens' iss claim", j.Issuer)
	}
	if len(j.Audience) == 0 {
		return s, errors.New("audience: missing; list the aud values this route accepts (without it a token minted for any other API of the issuer would pass)")
	}
	for i, a := range j.Audience {
		if a == "" {
			return s, fmt.Errorf("audience[%d]: empty", i)
		}
	}
	if len(j.Algorithms) == 0 {
		return s, errors.New(`algorithms: missing; list the issuer's signature algorithms, e.g. ["ES256"]`)
	}
	for i, a := range j.Algorithms {
		alg, ok := allowedAlgs[a]
		if !ok {
			if a == "none" || strings.HasPrefix(strings.ToUpper(a), "HS") {
				return s, fmt.Errorf("algorithms[%d]: %q is refused: only public-key signatures are accepted", i, a)
			}
			return s, fmt.Errorf("algorithms[%d]: %q is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA", i, a)
		}
		s.algs = append(s.algs, alg)
	}
	switch {
	case j.JWKSFile == "" && j.JWKSURL == "":
		return s, errors.New("jwks_file: set jwks_file or jwks_url")
	case j.JWKSFile != "" && j.JWKSURL != "":
		return s, errors.New("jwks_url: set only one of jwks_file and jwks_url")
	case j.JWKSURL != "":
		u, err := url.Parse(j.JWKSURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return s, fmt.Errorf("jwks_url: %q must be an https URL", j.JWKSURL)
		}
	}
	if j.Refresh != "" {
		d, err := time.ParseDuration(j.Refresh)
		if err != nil || d < time.Minute {
			return s, fmt.Errorf("refresh: %q must be a duration of at least 1m", j.Refresh)
		}
		s.refresh = d
	}
	if j.Leeway != "" {
		d, err := time.ParseDuration(j.Leeway)
		if err != nil || d < 0 || d > 10*time.Minute {
			return s, fmt.Errorf("leeway: %q must be a duration between 0s and 10m", j.Leeway)
		}
		s.leeway = d
	}
	if s.RolesClaim == "" {
		s.RolesClaim = "roles"
	}
	if s.ScopesClaim == "" {
		s.ScopesClaim = "scope"
	}
	return s, nil
}

func (a *APIKeyConfig) validate() error {
	if a.Header != "" && !validHeaderName(a.Header) {
		return fmt.Errorf("header: %q is not a valid header name", a.Header)
	}
	if a.Header != "" && slices.Contains(reservedHeaders, http.CanonicalHeaderKey(a.Header)) {
		return fmt.Errorf("header: %q is reserved; use a name such as X-API-Key", a.Header)
	}
	if len(a.Keys) == 0 {
		return errors.New("keys: no keys configured; add { name = \"...\", sha256 = \"...\" } entries (sealgate keys hash prints the hash)")
	}
	names, hashes := map[string]int{}, map[string]int{}
	for i, k := range a.Keys {
		if k.Name == "" {
			return fmt.Errorf("keys[%d].name: missing", i)
		}
		if prev, dup := names[k.Name]; dup {
			return fmt.Errorf("keys[%d].name: %q is already used by keys[%d]", i, k.Name, prev)
		}
		names[k.Name] = i
		if err := ValidateHash(k.SHA256); err != nil {
			return fmt.Errorf("keys[%d].sha256: %w", i, err)
		}
		h := strings.ToLower(k.SHA256)
		if prev, dup := hashes[h]; dup {
			return fmt.Errorf("keys[%d].sha256: same key as keys[%d]", i, prev)
		}
		hashes[h] = i
	}
	return nil
}

// ValidateHash checks that h is a hex SHA-256 (64 hex digits).
func ValidateHash(h string) error {
	if len(h) != 64 {
		return fmt.Errorf("must be 64 hex digits (a SHA-256), got %d characters; run sealgate keys hash", len(h))
	}
	if _, err := hex.DecodeString(h); err != nil {
		return errors.New("must be 64 hex digits (a SHA-256); run sealgate keys hash")
	}
	return nil
}
