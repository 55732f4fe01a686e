// Package demoauth is the token issuer of `sealgate demo`: an ES256 key kept
// under the demo directory, its JWKS file, tokens for sample users, and the
// policy the demo route runs with. It is for the demo only; production
// tokens come from the operator's identity provider.
package demoauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sealgate/sealgate/appliance/authn"
	"github.com/sealgate/sealgate/appliance/authz"
	"github.com/sealgate/sealgate/appliance/policy"
	"github.com/sealgate/sealgate/appliance/ratelimit"
)

const (
	// IssuerURL is the iss of demo tokens.
	IssuerURL = "https://demo.sealgate.invalid/issuer"
	// Audience is the aud of demo tokens.
	Audience = "sealgate-demo-api"
	// KeyFile and JWKSFile are the file names under the demo directory.
	KeyFile  = "demo-issuer-key.pem"
	JWKSFile = "jwks.json"
)

// Issuer signs demo tokens.
type Issuer struct {
	key    *ecdsa.PrivateKey
	kid    string
	signer jose.Signer
	jwks   string
	now    func() time.Time
}

// New loads the ES256 key in dir (creating dir 0700 and the key 0600 when
// missing) and writes dir/jwks.json with its public half.
func New(dir string) (*Issuer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("demo issuer: %w", err)
	}
	key, err := loadOrCreateKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("demo issuer: %w", err)
	}
	jwk := jose.JSONWebKey{Key: key.Public(), Use: "sig", Algorithm: string(jose.ES256)}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("demo issuer: key thumbprint: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	set, err := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("demo issuer: encoding jwks: %w", err)
	}
	jwksPath := filepath.Join(dir, JWKSFile)
	if err := writeAtomic(jwksPath, append(set, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("demo issuer: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: jwk.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("demo issuer: %w", err)
	}
	return &Issuer{key: key, kid: jwk.KeyID, signer: signer, jwks: jwksPath, now: time.Now}, nil
}

func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM private key (delete it to make a new one)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (delete it to make a new one)", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: not a P-256 key (delete it to make a new one)", path)
	}
	return ek, nil
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// IssuerURL returns the iss of the tokens.
func (i *Issuer) IssuerURL() string { return IssuerURL }

// Audience returns the aud of the tokens.
func (i *Issuer) Audience() string { return Audience }

// JWKSPath returns the path of the JWKS file New wrote.
func (i *Issuer) JWKSPath() string { return i.jwks }

// KeyID returns the kid of the signing key.
func (i *Issuer) KeyID() string { return i.kid }

// Token returns a signed token for subject with the given scopes (the
// space-separated "scope" claim), valid for ttl.
func (i *Issuer) Token(subject string, scopes []string, ttl time.Duration) (string, error) {
	if subject == "" || ttl <= 0 {
		return "", errors.New("demo token: subject and a positive ttl are required")
	}
	now := i.now()
	jti := make([]byte, 12)
	rand.Read(jti)
	c := map[string]any{
		"iss": IssuerURL, "aud": []string{Audience}, "sub": subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(jti),
	}
	if len(scopes) > 0 {
		c["scope"] = strings.Join(scopes, " ")
	}
	tok, err := jwt.Signed(i.signer).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("demo token: %w", err)
	}
	return tok, nil
}

// Sample users of the demo: their customer ids in the demo API.
var (
	// Alice is a customer who may read her own record.
	Alice = "c-1001"
	// Bob is another customer; Alice's token must not read his record.
	Bob = "c-1002"
)

// Config returns the demo route's policy: JWT required (tokens of this
// issuer, keys from jwksPath); GET /api/customers/{id} only for the
// customer whose id is the token's sub; GET /api/customers (the list) only
// with scope customers:list; POST /api/echo for anyone authenticated;
// everything else denied; 5 requests/s per identity with a burst of 10.
func Config(jwksPath string) policy.Config {
	return policy.Config{
		Auth: authn.Config{
			Methods:        []string{authn.MethodJWT},
			ForwardHeaders: authn.ForwardHeaders{Subject: "X-Auth-Subject", Scopes: "X-Auth-Scopes"},
			JWT: []authn.JWTConfig{{
				Issuer: IssuerURL, Audience: []string{Audience}, Algorithms: []string{"ES256"},
				JWKSFile: jwksPath, Leeway: "30s",
			}},
		},
		Authz: authz.Config{Rules: []authz.Rule{
			{Match: "GET /api/customers/{id}", Owner: &authz.Owner{Var: "id", Claim: "sub"}},
			{Match: "GET /api/customers", Scopes: []string{"customers:list"}},
			{Match: "POST /api/echo"},
		}},
		RateLimit: ratelimit.Config{Key: ratelimit.KeyIdentity, Rate: "5/s", Burst: 10, MaxKeys: 10000},
	}
}
