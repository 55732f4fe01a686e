package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/sealgate/sealgate/appliance/reqctx"
)

// ErrNoCredentials means the request carried none of the accepted
// credentials (answer 401 without an error code).
var ErrNoCredentials = errors.New("no credentials")

// ErrInvalidCredentials means a credential was present but not accepted
// (answer 401 with error="invalid_token"). Errors wrapping it carry a short
// fixed reason, never the credential.
var ErrInvalidCredentials = errors.New("invalid credentials")

// errAbsent tells the Authenticator that a method found no credential of its
// kind, so the next method is tried.
var errAbsent = errors.New("credential absent")

func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidCredentials, reason)
}

// method is one credential kind.
type method interface {
	authenticate(r *http.Request) (*reqctx.Identity, error)
}

// Options are the Authenticator's dependencies.
type Options struct {
	// HTTPClient fetches JWKS URLs; nil means a client with a 10 s timeout.
	// Redirects to anything but https are refused.
	HTTPClient *http.Client
	// Logger receives JWKS refresh events (give it a component attribute);
	// nil discards them.
	Logger *slog.Logger
	// Now is the clock for token times and refetch limits; nil is time.Now.
	Now func() time.Time
}

// Authenticator runs a route's authentication methods.
type Authenticator struct {
	methods []method
	forward ForwardHeaders
	sources []*keySource
	strip   []string // headers removed from every request
	schemes []string // WWW-Authenticate challenges
}

// New validates cfg, loads JWKS files and starts the refreshers of JWKS URLs.
// Close stops them.
func New(cfg Config, opt Options) (_ *Authenticator, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	client := httpsOnly(opt.HTTPClient)
	a := &Authenticator{forward: cfg.ForwardHeaders}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	for _, m := range cfg.Methods {
		switch m {
		case MethodJWT:
			v := &jwtVerifier{issuers: map[string]*issuer{}, now: opt.Now, cache: newTokenCache()}
			for i, jc := range cfg.JWT {
				s, _ := jc.settings() // validated above
				ks := newKeySource(s, client, opt.Now, opt.Logger)
				if ks.kind == "file" {
					if err := ks.load(context.Background()); err != nil {
						return nil, fmt.Errorf("auth.jwt[%d].jwks_file: %w", i, err)
					}
				}
				a.sources = append(a.sources, ks)
				ks.start()
				iss := &issuer{s: s, keys: ks}
				v.issuers[s.Issuer] = iss
				for _, alg := range s.algs {
					if !containsAlg(v.algs, alg) {
						v.algs = append(v.algs, alg)
					}
				}
				if len(cfg.JWT) == 1 {
					v.only = iss
				}
			}
			a.methods = append(a.methods, v)
			a.schemes = append(a.schemes, "Bearer")
		case MethodAPIKey:
			k := newAPIKeys(cfg.APIKey)
			a.methods = append(a.methods, k)
			if k.header != "" {
				a.strip = append(a.strip, k.header)
			}
			a.schemes = append(a.schemes, "ApiKey")
		case MethodMTLS:
			a.methods = append(a.methods, mtlsMethod{})
		}
	}
	f := cfg.ForwardHeaders
	for _, h := range []string{f.Subject, f.Issuer, f.Method, f.KeyName, f.Roles, f.Scopes} {
		if h != "" {
			a.strip = append(a.strip, h)
		}
	}
	return a, nil
}

// httpsOnly returns a copy of c (or a default client) that refuses to follow
// a redirect away from https.
func httpsOnly(c *http.Client) *http.Client {
	var cc http.Client
	if c != nil {
		cc = *c
	} else {
		cc.Timeout = fetchTimeout
	}
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to %s refused: jwks must come over https", req.URL.Scheme)
		}
		if len(via) >= 5 {
			return errors.New("more than 5 redirects")
		}
		return nil
	}
	return &cc
}

// Close stops the JWKS refreshers.
func (a *Authenticator) Close() {
	for _, s := range a.sources {
		s.close()
	}
}

// Enabled reports whether the route requires a credential.
func (a *Authenticator) Enabled() bool { return len(a.methods) > 0 }

// Authenticate strips client-sent copies of the forwarded identity headers
// and of the API key header, then tries the methods in order. It returns
// the identity, or an error wrapping ErrNoCredentials or
// ErrInvalidCredentials. With no methods (auth "none") it returns nil, nil.
func (a *Authenticator) Authenticate(r *http.Request) (*reqctx.Identity, error) {
	if len(a.methods) == 0 {
		a.stripHeaders(r)
		return nil, nil
	}
	// Read credentials before stripping: the API key header is among them.
	for _, m := range a.methods {
		id, err := m.authenticate(r)
		if errors.Is(err, errAbsent) {
			continue
		}
		a.stripHeaders(r)
		return id, err
	}
	a.stripHeaders(r)
	return nil, ErrNoCredentials
}

func (a *Authenticator) stripHeaders(r *http.Request) {
	for _, h := range a.strip {
		r.Header.Del(h)
	}
}

// Challenge returns the WWW-Authenticate value for a 401: a Bearer
// challenge (RFC 6750, with error="invalid_token" when a credential was
// refused) and an ApiKey challenge when API keys are accepted.
func (a *Authenticator) Challenge(invalidToken bool) string {
	out := ""
	for _, s := range a.schemes {
		if out != "" {
			out += ", "
		}
		out += s + ` realm="sealgate"`
		if s == "Bearer" && invalidToken {
			out += `, error="invalid_token"`
		}
	}
	if out == "" { // mTLS only: RFC 9110 still wants a challenge on 401
		out = `Certificate realm="sealgate"`
	}
	return out
}

// Forward sets the configured identity headers on the upstream request.
// Values with control characters are left out rather than forwarded.
func (a *Authenticator) Forward(r *http.Request, id *reqctx.Identity) {
	if id == nil {
		return
	}
	f := a.forward
	set := func(h, v string) {
		if h != "" && v != "" && printable(v) {
			r.Header.Set(h, v)
		}
	}
	set(f.Subject, id.Subject)
	set(f.Issuer, id.Issuer)
	set(f.Method, id.Method)
	set(f.KeyName, id.KeyName)
	if f.Roles != "" && len(id.Roles) > 0 {
		set(f.Roles, joinComma(id.Roles))
	}
	if f.Scopes != "" && len(id.Scopes) > 0 {
		set(f.Scopes, joinComma(id.Scopes))
	}
}

func joinComma(list []string) string {
	n := 0
	for _, s := range list {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, s...)
	}
	return string(b)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// Status returns the state of every JWKS source.
func (a *Authenticator) Status() []SourceStatus {
	out := make([]SourceStatus, 0, len(a.sources))
	for _, s := range a.sources {
		out = append(out, s.status().SourceStatus)
	}
	return out
}

// VerifyToken verifies a bearer token as the route would; for tests and
// tools. The error never contains the token.
func (a *Authenticator) VerifyToken(ctx context.Context, token string) (*reqctx.Identity, error) {
	for _, m := range a.methods {
		if v, ok := m.(*jwtVerifier); ok {
			return v.Verify(ctx, token)
		}
	}
	return nil, errors.New("route does not accept jwt")
}
