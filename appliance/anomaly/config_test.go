package anomaly

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/sealgate/sealgate/appliance/blocker"
)

// TestConfigFixtures decodes each testdata/*.toml strictly, as the daemon
// does, builds the detector, and compares the error with the "# want:"
// first line.
func TestConfigFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.toml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := bufio.NewReader(bytes.NewReader(b)).ReadLine()
			want, ok := strings.CutPrefix(string(first), "# want: ")
			if !ok {
				t.Fatal(`first line must be "# want: <error prefix or ok>"`)
			}
			var doc struct {
				Anomaly Config `toml:"anomaly"`
			}
			if err = toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields().Decode(&doc); err != nil {
				err = fmt.Errorf("decode: %w", err)
			} else {
				var d *Detector
				if d, err = New(doc.Anomaly, Deps{Blocker: blocker.NewList(nil)}); err == nil {
					d.Close()
				}
			}
			switch {
			case want == "ok" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case want != "ok" && err == nil:
				t.Fatalf("no error, want %q", want)
			case want != "ok" && !strings.HasPrefix(err.Error(), want):
				t.Fatalf("error:\n  %v\nwant prefix:\n  %s", err, want)
			}
		})
	}
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
