package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the .golden files")

// TestGolden loads every testdata/*.toml and compares the outcome ("ok" or
// the exact error text) with the .golden file beside it.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".toml"), func(t *testing.T) {
			got := "ok"
			if _, err := Load(f); err != nil {
				got = err.Error()
			}
			got += "\n"
			golden := strings.TrimSuffix(f, ".toml") + ".golden"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestDefaultsAndResolution(t *testing.T) {
	c, err := Load("testdata/valid-minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.AdminSocket != DefaultAdminSocket || c.Routes[0].Seal != "optional" || c.Routes[0].Listener != "api" {
		t.Errorf("defaults not applied: %+v", c)
	}
	if !filepath.IsAbs(c.Listeners[0].TLS.Certs[0].Cert) && !strings.HasPrefix(c.Listeners[0].TLS.Certs[0].Cert, "testdata/") {
		t.Errorf("cert path not resolved against the config's directory: %s", c.Listeners[0].TLS.Certs[0].Cert)
	}
	if len(c.SHA256) != 64 {
		t.Errorf("config hash %q", c.SHA256)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"512": 512, "64KiB": 64 << 10, "1MiB": 1 << 20, "10MB": 10e6, "2 GiB": 2 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1", "1TiB", "1.5MiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestKeyLines(t *testing.T) {
	doc := []byte("[daemon]\nstate_dir = \"/x\"\n\n[[route]]\nname = \"a\"\n[[route]]\nname = \"b\"\n[route.auth]\nmethods = []\n")
	lines := keyLines(doc)
	for path, want := range map[string]int{"daemon.state_dir": 2, "route[0].name": 5, "route[1]": 6, "route[1].name": 7, "route[1].auth.methods": 9} {
		if lines[path] != want {
			t.Errorf("%s: line %d, want %d (all: %v)", path, lines[path], want, lines)
		}
	}
}
