package authn

import (
	"crypto/sha256"
	"sync"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sealgate/sealgate/appliance/reqctx"
)

// TokenCacheSize bounds how many verified tokens a route remembers.
const TokenCacheSize = 10000

// tokenCache remembers tokens whose signature and static claims (iss, aud)
// were verified, keyed by the token's SHA-256 (the token itself is not
// kept), so a client presenting the same token again costs a hash instead of
// a signature check. An entry holds until the token's time claims fail or
// its issuer's key set changes; the table is bounded and drops an arbitrary
// entry when full.
type tokenCache struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]cachedToken
}

type cachedToken struct {
	id  *reqctx.Identity
	std jwt.Claims
	iss *issuer
	gen uint64 // the issuer's key set generation at verification
}

func newTokenCache() *tokenCache {
	return &tokenCache{m: make(map[[sha256.Size]byte]cachedToken)}
}

func (c *tokenCache) get(k [sha256.Size]byte) (cachedToken, bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if ok && e.gen != e.iss.keys.generation() {
		c.drop(k)
		return cachedToken{}, false
	}
	return e, ok
}

func (c *tokenCache) put(k [sha256.Size]byte, e cachedToken) {
	c.mu.Lock()
	if len(c.m) >= TokenCacheSize {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = e
	c.mu.Unlock()
}

func (c *tokenCache) drop(k [sha256.Size]byte) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
