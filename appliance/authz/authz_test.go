package authz

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/sealgate/sealgate/internal/fixture"

	"github.com/sealgate/sealgate/appliance/reqctx"
)

// TestConfigFixtures loads each testdata/config/*.toml strictly and checks
// the error against the "# want:" first line ("ok" for none).
func TestConfigFixtures(t *testing.T) {
	fixture.Run(t, "testdata/config/*.toml", fixture.Prefix, func(t *testing.T, b []byte) error {
		var doc struct {
			Authz Config `toml:"authz"`
		}
		if err := fixture.DecodeStrict(b, &doc); err != nil {
			return err
		}
		_, err := New(doc.Authz)
		return err
	})
}

func rules() Config {
	return Config{Rules: []Rule{
		{Match: "GET /api/customers/{id}", Scopes: []string{"customers:read"}, Owner: &Owner{Var: "id", Claim: "sub"}},
		{Match: "GET /api/customers", Scopes: []string{"customers:list"}},
		{Match: "DELETE /api/customers/{id}", Roles: []string{"admin", "support"}},
		{Match: "GET /api/accounts/{acct}/statements", Owner: &Owner{Var: "acct", Claim: "accounts"}},
		{Match: "GET /api/tenants/{t}/", Owner: &Owner{Var: "t", Claim: "org.tenant"}},
		{Match: "POST /api/echo"},
		{Match: "GET /api/reports", CEL: "'auditor' in identity.roles && request.client.startsWith('10.') && request.headers['x-purpose'] == 'audit'"},
		{Match: "GET /api/internal/{path...}", CEL: "request.tls && request.tls_version == '1.3' && identity.method == 'mtls' && request.vars.path.startsWith('metrics')"},
		{Match: "PUT /api/customers/{id}", CEL: "identity.claims.sub == request.vars.id && 'customers:write' in identity.scopes"},
		{Match: "GET /public/status", CEL: "!identity.authenticated || identity.subject != ''"},
	}}
}

func TestAuthorize(t *testing.T) {
	a, err := New(rules())
	if err != nil {
		t.Fatal(err)
	}
	alice := &reqctx.Identity{Method: "jwt", Subject: "c-1001", Scopes: []string{"customers:read"},
		Claims: map[string]any{"sub": "c-1001", "accounts": []any{"acc-1", "acc-2"}, "org": map[string]any{"tenant": "acme"}}}
	lister := &reqctx.Identity{Method: "jwt", Subject: "ops", Scopes: []string{"customers:list"}}
	support := &reqctx.Identity{Method: "apikey", Subject: "helpdesk", KeyName: "helpdesk", Roles: []string{"support"}}
	auditor := &reqctx.Identity{Method: "jwt", Subject: "au", Roles: []string{"auditor"}}
	machine := &reqctx.Identity{Method: "mtls", Subject: "CN=prom"}
	writer := &reqctx.Identity{Method: "jwt", Subject: "c-1001", Scopes: []string{"customers:write"}, Claims: map[string]any{"sub": "c-1001"}}
	lan := netip.MustParseAddr("10.1.2.3")
	wan := netip.MustParseAddr("203.0.113.9")

	tests := []struct {
		name    string
		method  string
		target  string
		id      *reqctx.Identity
		client  netip.Addr
		header  map[string]string
		tls     uint16
		allowed bool
		reason  string
		rule    string
	}{
		{"own record", "GET", "/api/customers/c-1001", alice, wan, nil, 0, true, "", "GET /api/customers/{id}"},
		{"HEAD follows GET rule", "HEAD", "/api/customers/c-1001", alice, wan, nil, 0, true, "", "GET /api/customers/{id}"},
		{"someone else's record", "GET", "/api/customers/c-1002", alice, wan, nil, 0, false, ReasonNotOwner, "GET /api/customers/{id}"},
		{"escaped path still compared exactly", "GET", "/api/customers/c-1001%2F..%2Fc-1002", alice, wan, nil, 0, false, ReasonNotOwner, "GET /api/customers/{id}"},
		{"record without scope", "GET", "/api/customers/ops", lister, wan, nil, 0, false, ReasonForbidden, "GET /api/customers/{id}"},
		{"unauthenticated", "GET", "/api/customers/c-1001", nil, wan, nil, 0, false, ReasonForbidden, "GET /api/customers/{id}"},
		{"list with scope", "GET", "/api/customers", lister, wan, nil, 0, true, "", "GET /api/customers"},
		{"list without scope", "GET", "/api/customers", alice, wan, nil, 0, false, ReasonForbidden, "GET /api/customers"},
		{"delete with one of the roles", "DELETE", "/api/customers/c-1", support, wan, nil, 0, true, "", "DELETE /api/customers/{id}"},
		{"delete without role", "DELETE", "/api/customers/c-1001", alice, wan, nil, 0, false, ReasonForbidden, "DELETE /api/customers/{id}"},
		{"owner in claim list", "GET", "/api/accounts/acc-2/statements", alice, wan, nil, 0, true, "", "GET /api/accounts/{acct}/statements"},
		{"owner not in claim list", "GET", "/api/accounts/acc-3/statements", alice, wan, nil, 0, false, ReasonNotOwner, "GET /api/accounts/{acct}/statements"},
		{"owner via nested claim", "GET", "/api/tenants/acme/users", alice, wan, nil, 0, true, "", "GET /api/tenants/{t}/"},
		{"owner claim absent", "GET", "/api/tenants/acme/users", support, wan, nil, 0, false, ReasonNotOwner, "GET /api/tenants/{t}/"},
		{"any authenticated", "POST", "/api/echo", support, wan, nil, 0, true, "", "POST /api/echo"},
		{"cel true", "GET", "/api/reports", auditor, lan, map[string]string{"X-Purpose": "audit"}, 0, true, "", "GET /api/reports"},
		{"cel wrong network", "GET", "/api/reports", auditor, wan, map[string]string{"X-Purpose": "audit"}, 0, false, ReasonCEL, "GET /api/reports"},
		{"cel missing header is an error, denied", "GET", "/api/reports", auditor, lan, nil, 0, false, ReasonCEL, "GET /api/reports"},
		{"cel tls and vars", "GET", "/api/internal/metrics/x", machine, lan, nil, 0x0304, true, "", "GET /api/internal/{path...}"},
		{"cel tls 1.2", "GET", "/api/internal/metrics/x", machine, lan, nil, 0x0303, false, ReasonCEL, "GET /api/internal/{path...}"},
		{"cel claims and vars", "PUT", "/api/customers/c-1001", writer, wan, nil, 0, true, "", "PUT /api/customers/{id}"},
		{"cel claims other id", "PUT", "/api/customers/c-1002", writer, wan, nil, 0, false, ReasonCEL, "PUT /api/customers/{id}"},
		{"cel with no identity", "GET", "/public/status", nil, wan, nil, 0, true, "", "GET /public/status"},
		{"default deny: unknown path", "GET", "/api/orders", alice, wan, nil, 0, false, ReasonNoRule, ""},
		{"default deny: unknown method", "PATCH", "/api/customers/c-1001", alice, wan, nil, 0, false, ReasonNoRule, ""},
		{"default deny: trailing slash", "GET", "/api/customers/", alice, wan, nil, 0, false, ReasonNoRule, ""},
		{"default deny: dot segments", "GET", "/api/echo/../customers/c-1002", alice, wan, nil, 0, false, ReasonNoRule, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "https://api.example"+tt.target, nil)
			if tt.target == "/api/echo/../customers/c-1002" {
				r.URL.Path = tt.target // httptest cleans nothing, but be explicit
			}
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			if tt.tls == 0 {
				r.TLS = nil
			} else {
				r.TLS.Version = tt.tls
			}
			d := a.Authorize(r, tt.id, tt.client)
			if d.Allowed != tt.allowed || d.Reason != tt.reason || d.Rule != tt.rule {
				t.Fatalf("decision %+v, want allowed=%v reason=%q rule=%q", d, tt.allowed, tt.reason, tt.rule)
			}
			if r.Pattern != "" || r.PathValue("id") != "" {
				t.Fatal("Authorize changed the caller's request")
			}
		})
	}
}

func TestNoRulesAllowsAll(t *testing.T) {
	a, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if d := a.Authorize(httptest.NewRequest("GET", "/anything", nil), nil, netip.Addr{}); !d.Allowed {
		t.Fatalf("no rules: %+v", d)
	}
}

func TestCELCostLimit(t *testing.T) {
	a, err := New(Config{Rules: []Rule{{
		Match: "GET /x",
		CEL:   "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, a+b+c+d+e > 0)))))",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if d := a.Authorize(httptest.NewRequest("GET", "/x", nil), nil, netip.Addr{}); d.Allowed || d.Reason != ReasonCEL {
		t.Fatalf("expensive expression: %+v, want denied by the cost limit", d)
	}
}

func BenchmarkAuthorizeOwner(b *testing.B) {
	a, _ := New(rules())
	id := &reqctx.Identity{Subject: "c-1001", Scopes: []string{"customers:read"}, Claims: map[string]any{"sub": "c-1001"}}
	r := httptest.NewRequest("GET", "/api/customers/c-1001", nil)
	b.ReportAllocs()
	for b.Loop() {
		if !a.Authorize(r, id, netip.Addr{}).Allowed {
			b.Fatal("denied")
		}
	}
}

func BenchmarkAuthorizeCEL(b *testing.B) {
	a, _ := New(rules())
	id := &reqctx.Identity{Method: "jwt", Subject: "c-1001", Scopes: []string{"customers:write"}, Claims: map[string]any{"sub": "c-1001"}}
	r := httptest.NewRequest("PUT", "/api/customers/c-1001", nil)
	b.ReportAllocs()
	for b.Loop() {
		if !a.Authorize(r, id, netip.Addr{}).Allowed {
			b.Fatal("denied")
		}
	}
}
