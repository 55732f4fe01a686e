package anomaly

import (
	"bytes"
	"os"
	"testing"

	"github.com/sealgate/sealgate/internal/fixture"

	"github.com/pelletier/go-toml/v2"

	"github.com/sealgate/sealgate/appliance/blocker"
)

// TestConfigFixtures decodes each testdata/*.toml strictly, as the daemon
// does, builds the detector, and compares the error with the "# want:"
// first line.
func TestConfigFixtures(t *testing.T) {
	fixture.Run(t, "testdata/*.toml", fixture.Prefix, func(t *testing.T, b []byte) error {
		var doc struct {
			Anomaly Config `toml:"anomaly"`
		}
		if err := fixture.DecodeStrict(b, &doc); err != nil {
			return err
		}
		d, err := New(doc.Anomaly, Deps{Blocker: blocker.NewList(nil)})
		if err == nil {
			d.Close()
		}
		return err
	})
}

func TestFullFixtureDecodesEveryKey(t *testing.T) {
	b, err := os.ReadFile("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Anomaly Config `toml:"anomaly"`
	}
	if err := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields().Decode(&doc); err != nil {
		t.Fatal(err)
	}
	c := doc.Anomaly
	if c.Window != "1m" || c.SurgeFactor != 5 || c.MinRequests != 50 || c.AuthFailures != 10 || c.Enumeration != 100 ||
		c.DLPSpike != 20 || c.Cooldown != "5m" || c.MaxTracked != 10000 || len(c.Exempt) != 2 ||
		c.Webhook != (Webhook{URL: "https://hooks.example/sealgate", Timeout: "5s", Queue: 1000, Retries: 3, Backoff: "1s"}) ||
		c.Block["auth_failures"] != "15m" || c.Block["enumeration"] != "1h" {
		t.Fatalf("decoded %+v", c)
	}
}
