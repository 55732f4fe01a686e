package waf

import (
	"testing"

	"github.com/sealgate/sealgate/internal/fixture"
)

// TestConfigFixtures decodes each testdata/*.toml strictly, as the daemon
// does, builds every route's stage, and compares the error with the
// "# want:" first line.
func TestConfigFixtures(t *testing.T) {
	fixture.Run(t, "testdata/*.toml", fixture.Prefix, func(t *testing.T, b []byte) error {
		var doc struct {
			Route []struct {
				Name   string `toml:"name"`
				Config Config `toml:"waf"`
			} `toml:"route"`
		}
		if err := fixture.DecodeStrict(b, &doc); err != nil {
			return err
		}
		for _, r := range doc.Route {
			if _, err := New(r.Name, r.Config, Deps{Engines: engines}); err != nil {
				return err
			}
		}
		return nil
	})
}
