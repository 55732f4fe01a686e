package sealing

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// TestConfigFixtures decodes each testdata/*.toml strictly, applies it and
// compares the options or the error with the .golden file beside it.
func TestConfigFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.toml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".toml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(file, ".toml") + ".golden")
			if err != nil {
				t.Fatal(err)
			}
			var got string
			var c Config
			dec := toml.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&c); err != nil {
				got = err.Error()
			} else {
				var o Options
				if err := c.Apply("seal", &o); err != nil {
					got = err.Error()
				} else {
					got = fmt.Sprintf("key_rotation=%s key_grace=%s ticket_lifetime=%s kems=%v max_sessions=%d max_header_bytes=%d",
						o.KeyRotation, o.KeyGrace, o.TicketLifetime, o.KEMs, o.MaxSessions, o.MaxHeaderBytes)
				}
			}
			if strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}
