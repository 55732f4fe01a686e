// Package authn owns the authentication stage of the policy pipeline: it
// turns a request's credentials (a JWT bearer token verified against JWKS, an
// API key compared with stored SHA-256 hashes, or a client certificate the
// listener verified) into a reqctx.Identity, and forwards that identity
// upstream in headers the operator names. It keeps the JWKS caches and their
// refreshers. It never stores, logs or forwards a token or key: only who it
// identified. Authorization and rate limiting live in their own packages.
package authn
