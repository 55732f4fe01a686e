package authn

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/sealgate/sealgate/appliance/reqctx"
)

// HashAPIKey returns the hex SHA-256 of key, the form keys are configured in.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// NewAPIKey returns a fresh random API key ("sg_" and 43 base64url
// characters, 256 bits) and its hash for the config.
func NewAPIKey() (key, hash string) {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	key = "sg_" + base64.RawURLEncoding.EncodeToString(b)
	return key, HashAPIKey(key)
}

type storedKey struct {
	name          string
	hash          [sha256.Size]byte
	roles, scopes []string
}

type apiKeys struct {
	header, query string
	keys          []storedKey
}

func newAPIKeys(c *APIKeyConfig) *apiKeys {
	k := &apiKeys{header: c.Header, query: c.Query}
	if k.header == "" && k.query == "" {
		k.header = "X-API-Key"
	}
	for _, sk := range c.Keys {
		var h [sha256.Size]byte
		hex.Decode(h[:], []byte(strings.ToLower(sk.SHA256))) // validated
		k.keys = append(k.keys, storedKey{name: sk.Name, hash: h, roles: sk.Roles, scopes: sk.Scopes})
	}
	return k
}

func (k *apiKeys) authenticate(r *http.Request) (*reqctx.Identity, error) {
	presented, found := "", false
	if k.header != "" {
		if v := r.Header.Values(k.header); len(v) > 0 {
			if len(v) > 1 {
				return nil, invalid("more than one API key header")
			}
			presented, found = v[0], true
		}
	}
	if !found && k.query != "" {
		q := r.URL.Query()
		if v, ok := q[k.query]; ok {
			if len(v) > 1 {
				return nil, invalid("more than one API key parameter")
			}
			presented, found = v[0], true
			// The key must not travel on to the upstream or the access log.
			q.Del(k.query)
			u := *r.URL
			u.RawQuery = q.Encode()
			r.URL = &u
			r.RequestURI = u.RequestURI()
		}
	}
	if !found {
		return nil, errAbsent
	}
	if presented == "" || len(presented) > 4096 {
		return nil, invalid("empty or oversized API key")
	}
	sum := sha256.Sum256([]byte(presented))
	match := -1
	// Compare with every key in constant time, without stopping early, so
	// timing reveals neither which key nor how much of it matched.
	for i := range k.keys {
		if subtle.ConstantTimeCompare(sum[:], k.keys[i].hash[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return nil, invalid("unknown API key")
	}
	sk := &k.keys[match]
	return &reqctx.Identity{
		Method: MethodAPIKey, Subject: sk.name, KeyName: sk.name,
		Roles: sk.roles, Scopes: sk.scopes,
	}, nil
}
