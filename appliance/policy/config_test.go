package policy

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/sealgate/sealgate/internal/fixture"

	"github.com/pelletier/go-toml/v2"
)

// route mirrors how the daemon's config embeds Config in [[route]]: the
// policy tables sit beside the route's own keys.
type route struct {
	Name     string `toml:"name"`
	Listener string `toml:"listener"`
	Match    string `toml:"match"`
	Upstream string `toml:"upstream"`
	Config
}

// TestConfigFixtures decodes each testdata/*.toml strictly, validates every
// route, and compares the error with the "# want:" first line.
func TestConfigFixtures(t *testing.T) {
	fixture.Run(t, "testdata/*.toml", fixture.Prefix, func(t *testing.T, b []byte) error {
		var doc struct {
			Route []route `toml:"route"`
		}
		if err := fixture.DecodeStrict(b, &doc); err != nil {
			return err
		}
		for _, r := range doc.Route {
			if r.Config.IsZero() {
				t.Fatalf("route %s decoded to an empty policy", r.Name)
			}
			if err := Validate(r.Name, r.Config); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestFullFixtureDecodesEveryKey(t *testing.T) {
	b, err := os.ReadFile("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Route []route `toml:"route"`
	}
	if err := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields().Decode(&doc); err != nil {
		t.Fatal(err)
	}
	c := doc.Route[0].Config
	got := fmt.Sprintf("%v|%s|%s|%v|%s|%s|%v|%s/%s|%s|%s/%d/%d|%d/%s/%s",
		c.Auth.Methods, c.Auth.ForwardHeaders.Subject, c.Auth.ForwardHeaders.Roles,
		c.Auth.JWT[0].Algorithms, c.Auth.JWT[0].Refresh, c.Auth.APIKey.Keys[0].Name, c.Auth.APIKey.Keys[0].Roles,
		c.Authz.Rules[0].Owner.Var, c.Authz.Rules[0].Owner.Claim, c.Authz.Rules[1].CEL,
		c.RateLimit.Rate, c.RateLimit.Burst, c.RateLimit.MaxKeys,
		c.RateLimit.Escalate.After, c.RateLimit.Escalate.Within, c.RateLimit.Escalate.BlockTTL)
	want := "[jwt apikey mtls]|X-Auth-Subject|X-Auth-Roles|[ES256]|10m|billing-batch|[reader]|id/sub|request.method == 'GET' && identity.subject != ''|10/s/20/100000|5/1m/10m"
	if got != want {
		t.Fatalf("decoded\n  %s\nwant\n  %s", got, want)
	}
}
