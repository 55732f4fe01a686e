package authz

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/interpreter"

	"github.com/sealgate/sealgate/appliance/reqctx"
)

// celCostLimit bounds the work one expression may do per request.
const celCostLimit = 100000

// celEnv declares what an expression may read. Names are qualified
// variables resolved lazily per request, so the checker catches a misspelt
// field at config load and a request pays only for what it reads.
//
//	request.method      string   "GET"
//	request.path        string   "/api/customers/c-1001"
//	request.host        string   host the client asked for, without port
//	request.vars        map      path wildcards of the matched rule
//	request.query       map      first value of each query parameter
//	request.headers     map      lowercase names, values joined with ", "
//	request.client      string   client address, e.g. "192.0.2.7"
//	request.tls         bool     whether the client connection is TLS
//	request.tls_version string   "1.2", "1.3" or ""
//	request.sni         string   TLS server name
//	identity.authenticated bool
//	identity.method     string   jwt, apikey, mtls or ""
//	identity.subject, identity.issuer, identity.key_name string
//	identity.roles, identity.scopes list(string)
//	identity.claims     map(string, dyn)   verified token claims
var celVars = []cel.EnvOption{
	cel.Variable("request.method", cel.StringType),
	cel.Variable("request.path", cel.StringType),
	cel.Variable("request.host", cel.StringType),
	cel.Variable("request.vars", cel.MapType(cel.StringType, cel.StringType)),
	cel.Variable("request.query", cel.MapType(cel.StringType, cel.StringType)),
	cel.Variable("request.headers", cel.MapType(cel.StringType, cel.StringType)),
	cel.Variable("request.client", cel.StringType),
	cel.Variable("request.tls", cel.BoolType),
	cel.Variable("request.tls_version", cel.StringType),
	cel.Variable("request.sni", cel.StringType),
	cel.Variable("identity.authenticated", cel.BoolType),
	cel.Variable("identity.method", cel.StringType),
	cel.Variable("identity.subject", cel.StringType),
	cel.Variable("identity.issuer", cel.StringType),
	cel.Variable("identity.key_name", cel.StringType),
	cel.Variable("identity.roles", cel.ListType(cel.StringType)),
	cel.Variable("identity.scopes", cel.ListType(cel.StringType)),
	cel.Variable("identity.claims", cel.MapType(cel.StringType, cel.DynType)),
}

func newCELEnv() (*cel.Env, error) {
	return cel.NewEnv(celVars...)
}

// compileCEL type-checks src and returns its program. The error is
// "line:column: message" for each problem, joined with "; ".
func compileCEL(env *cel.Env, src string) (cel.Program, error) {
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		var msgs []string
		for _, e := range iss.Errors() {
			msgs = append(msgs, fmt.Sprintf("%d:%d: %s", e.Location.Line(), e.Location.Column()+1,
				strings.TrimSuffix(e.Message, " (in container '')")))
		}
		return nil, fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("1:1: expression is of type %s, must be bool", ast.OutputType())
	}
	return env.Program(ast, cel.CostLimit(celCostLimit), cel.EvalOptions(cel.OptOptimize))
}

// activation resolves the declared variables for one request on demand.
type activation struct {
	r      *http.Request
	id     *reqctx.Identity
	client netip.Addr
	vars   []string // wildcard names of the matched rule
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) ResolveName(name string) (any, bool) {
	r, id := a.r, a.id
	switch name {
	case "request.method":
		return r.Method, true
	case "request.path":
		return r.URL.Path, true
	case "request.host":
		return hostOnly(r.Host), true
	case "request.vars":
		m := make(map[string]string, len(a.vars))
		for _, v := range a.vars {
			m[v] = r.PathValue(v)
		}
		return m, true
	case "request.query":
		q := r.URL.Query()
		m := make(map[string]string, len(q))
		for k, v := range q {
			m[k] = v[0]
		}
		return m, true
	case "request.headers":
		m := make(map[string]string, len(r.Header))
		for k, v := range r.Header {
			m[strings.ToLower(k)] = strings.Join(v, ", ")
		}
		return m, true
	case "request.client":
		if a.client.IsValid() {
			return a.client.String(), true
		}
		return "", true
	case "request.tls":
		return r.TLS != nil, true
	case "request.tls_version":
		if r.TLS == nil {
			return "", true
		}
		switch r.TLS.Version {
		case tls.VersionTLS13:
			return "1.3", true
		case tls.VersionTLS12:
			return "1.2", true
		}
		return "", true
	case "request.sni":
		if r.TLS == nil {
			return "", true
		}
		return r.TLS.ServerName, true
	case "identity.authenticated":
		return id != nil, true
	}
	if id == nil {
		id = &reqctx.Identity{}
	}
	switch name {
	case "identity.method":
		return id.Method, true
	case "identity.subject":
		return id.Subject, true
	case "identity.issuer":
		return id.Issuer, true
	case "identity.key_name":
		return id.KeyName, true
	case "identity.roles":
		return nonNil(id.Roles), true
	case "identity.scopes":
		return nonNil(id.Scopes), true
	case "identity.claims":
		if id.Claims == nil {
			return map[string]any{}, true
		}
		return id.Claims, true
	}
	return nil, false
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func hostOnly(h string) string {
	if ap, err := netip.ParseAddrPort(h); err == nil {
		return ap.Addr().String()
	}
	if i := strings.LastIndexByte(h, ':'); i > 0 && !strings.Contains(h[i:], "]") && strings.Count(h, ":") == 1 {
		return h[:i]
	}
	return strings.Trim(h, "[]")
}
