package authn

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sealgate/sealgate/appliance/reqctx"
)

// MaxTokenSize bounds a bearer token; larger ones are refused unparsed.
const MaxTokenSize = 16 << 10

// issuer is one trusted issuer with its key source.
type issuer struct {
	s    jwtSettings
	keys *keySource
}

// jwtVerifier verifies bearer tokens from a set of issuers.
type jwtVerifier struct {
	issuers map[string]*issuer
	only    *issuer // the single issuer, when there is one
	algs    []jose.SignatureAlgorithm
	now     func() time.Time
	cache   *tokenCache
}

// bearerToken returns the token of an "Authorization: Bearer" header, or
// errAbsent when the request carries no bearer token.
func bearerToken(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", errAbsent
	}
	scheme, tok, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", errAbsent
	}
	if len(vals) > 1 {
		return "", invalid("more than one Authorization header")
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", invalid("empty bearer token")
	}
	return tok, nil
}

func (v *jwtVerifier) authenticate(r *http.Request) (*reqctx.Identity, error) {
	tok, err := bearerToken(r)
	if err != nil {
		return nil, err
	}
	return v.Verify(r.Context(), tok)
}

// Verify checks a compact JWS token: its algorithm against the issuer's
// allow-list, its signature against the issuer's JWKS, and its iss, aud, exp,
// nbf and iat claims. The error never contains the token. A token verified
// before is found in the cache and only its time claims are checked again;
// the returned Identity is then shared with earlier requests and must be
// treated as read-only.
func (v *jwtVerifier) Verify(ctx context.Context, raw string) (*reqctx.Identity, error) {
	if len(raw) > MaxTokenSize {
		return nil, invalid("token larger than 16 KiB")
	}
	digest := sha256.Sum256([]byte(raw))
	if e, ok := v.cache.get(digest); ok {
		if err := v.checkClaims(&e.std, e.iss); err != nil {
			v.cache.drop(digest)
			return nil, err
		}
		return e.id, nil
	}
	// ParseSigned refuses any algorithm outside the union of the issuers'
	// allow-lists, so "none" and HS* never reach key selection.
	tok, err := jwt.ParseSigned(raw, v.algs)
	if err != nil {
		return nil, invalid("malformed or disallowed token: " + joseReason(err))
	}
	if len(tok.Headers) != 1 {
		return nil, invalid("token must carry exactly one signature")
	}
	hdr := tok.Headers[0]
	iss := v.only
	if iss == nil {
		var c jwt.Claims
		if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
			return nil, invalid("unreadable claims")
		}
		if iss = v.issuers[c.Issuer]; iss == nil {
			return nil, invalid("untrusted issuer")
		}
	}
	alg := jose.SignatureAlgorithm(hdr.Algorithm)
	if !containsAlg(iss.s.algs, alg) {
		return nil, invalid("algorithm " + hdr.Algorithm + " not allowed for this issuer")
	}
	gen := iss.keys.generation()
	keys := iss.keys.lookup(hdr.KeyID, alg)
	if len(keys) == 0 {
		// An unknown kid may mean the issuer rotated keys: fetch again, at
		// most once per MinRefetchInterval whatever the traffic. The fetch
		// outlives the request (bounded by its own timeout), so a client
		// that hangs up cannot cancel it and hold back a rotation.
		iss.keys.loadIfStale(context.WithoutCancel(ctx))
		gen = iss.keys.generation()
		if keys = iss.keys.lookup(hdr.KeyID, alg); len(keys) == 0 {
			return nil, invalid("no key for the token's kid")
		}
	}
	var std jwt.Claims
	var all map[string]any
	verified := false
	for i, k := range keys {
		if i == 8 {
			break // bound the work a kid-less token can cause
		}
		if err := tok.Claims(k.Key, &std, &all); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, invalid("bad signature")
	}
	if std.Expiry == nil {
		return nil, invalid("token has no exp claim")
	}
	if err := v.checkClaims(&std, iss); err != nil {
		return nil, err
	}
	id := &reqctx.Identity{
		Method:  MethodJWT,
		Subject: std.Subject,
		Issuer:  std.Issuer,
		Roles:   stringList(claimPath(all, iss.s.RolesClaim)),
		Scopes:  stringList(claimPath(all, iss.s.ScopesClaim)),
		Claims:  all,
	}
	v.cache.put(digest, cachedToken{id: id, std: std, iss: iss, gen: gen})
	return id, nil
}

// checkClaims checks iss and aud, and exp, nbf and iat against the clock.
func (v *jwtVerifier) checkClaims(std *jwt.Claims, iss *issuer) error {
	err := std.ValidateWithLeeway(jwt.Expected{
		Issuer: iss.s.Issuer, AnyAudience: iss.s.Audience, Time: v.now(),
	}, iss.s.leeway)
	if err != nil {
		return invalid(claimReason(err))
	}
	return nil
}

func containsAlg(list []jose.SignatureAlgorithm, a jose.SignatureAlgorithm) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// joseReason maps a parse error to a short fixed reason, so nothing from the
// token ends up in a log line.
func joseReason(err error) string {
	if strings.Contains(err.Error(), "unexpected signature algorithm") {
		return "algorithm not allowed"
	}
	return "not a compact JWS"
}

func claimReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrNotValidYet):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return "token issued in the future"
	case errors.Is(err, jwt.ErrInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return "wrong issuer"
	}
	return "claims rejected"
}

// claimPath follows a dotted path through nested claim objects.
func claimPath(claims map[string]any, path string) any {
	if v, ok := claims[path]; ok {
		return v
	}
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// stringList turns a claim into a list: a space-separated string (OAuth
// scope) or a JSON array of strings. Other values give nil.
func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// ClaimValues returns the string values of a claim of id (a dotted path): a
// string gives one value, a list its string members. "sub" falls back to the
// identity's subject, so API-key and certificate identities can be owners.
func ClaimValues(id *reqctx.Identity, claim string) []string {
	if id == nil {
		return nil
	}
	v := claimPath(id.Claims, claim)
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		return stringList(v)
	case []string:
		return v
	case float64:
		return []string{strconv.FormatFloat(v, 'f', -1, 64)}
	case bool:
		return []string{strconv.FormatBool(v)}
	case nil:
		if claim == "sub" && id.Subject != "" {
			return []string{id.Subject}
		}
	}
	return nil
}
