package dlp

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	fixtures "github.com/sealgate/sealgate/internal/fixture"

	"github.com/pelletier/go-toml/v2"
)

type routeDoc struct {
	DLP Config `toml:"dlp"`
}

func decodeStrict(b []byte, v any) error {
	d := toml.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// TestConfigGolden decodes each testdata/config/*.toml strictly and builds a
// Policy; the first line says "# want: ok" or the expected error text.
func TestConfigGolden(t *testing.T) {
	fixtures.Run(t, filepath.Join("testdata", "config", "*.toml"), fixtures.Contains, func(t *testing.T, b []byte) error {
		var doc routeDoc
		if err := decodeStrict(b, &doc); err != nil {
			return err
		}
		_, err := New("r", doc.DLP, Deps{})
		return err
	})
}

func TestConfigDefaults(t *testing.T) {
	var doc routeDoc
	if err := decodeStrict([]byte("[dlp]\naction = \"block\"\n"), &doc); err != nil {
		t.Fatal(err)
	}
	cc := mustCompile(t, doc.DLP)
	for k := Kind(0); k < KindField; k++ {
		if !cc.enabled[k] || cc.action[k] != ActionBlock {
			t.Errorf("%s: enabled=%v action=%s", k, cc.enabled[k], cc.action[k])
		}
	}
	if cc.enabled[KindField] || !cc.decode || cc.maxBlock != 1<<20 || len(cc.types) != len(DefaultContentTypes) {
		t.Errorf("defaults: %+v", cc)
	}
	if !(Config{}).IsZero() || doc.DLP.IsZero() {
		t.Error("IsZero")
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"1MiB", 1 << 20, false}, {"512KiB", 512 << 10, false}, {"64kB", 64000, false}, {"4096", 4096, false},
		{"2 MiB", 2 << 20, false}, {"1GB", 1e9, false}, {"", 0, true}, {"MiB", 0, true}, {"1XB", 0, true},
		{"99999999999999999999", 0, true}, {"9223372036854775807GiB", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("ParseSize(%q) = %d, %v", tc.in, got, err)
			}
		})
	}
}

// TestReadmeExample loads the TOML examples of README.md, so the docs
// cannot rot.
func TestReadmeExample(t *testing.T) {
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []string
	var cur *strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && line == "```toml":
			cur = &strings.Builder{}
		case cur != nil && line == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	if len(blocks) == 0 {
		t.Fatal("README.md has no toml example")
	}
	for i, blk := range blocks {
		var doc struct {
			Route []struct {
				Name string `toml:"name"`
				DLP  Config `toml:"dlp"`
			} `toml:"route"`
		}
		if err := toml.Unmarshal([]byte(blk), &doc); err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if len(doc.Route) == 0 {
			t.Fatalf("block %d: no [[route]]", i)
		}
		for _, r := range doc.Route {
			p, err := New(r.Name, r.DLP, Deps{})
			if err != nil {
				t.Fatalf("block %d route %s: %v", i, r.Name, err)
			}
			if !p.Enabled() {
				t.Fatalf("block %d route %s: DLP off", i, r.Name)
			}
		}
	}
}
