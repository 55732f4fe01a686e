package validate

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// TestConfigFixtures decodes each testdata/*.toml strictly, as the daemon
// does, builds every route's stage, and compares the error with the
// "# want:" first line.
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
				Route []struct {
					Name   string `toml:"name"`
					Config Config `toml:"validate"`
				} `toml:"route"`
			}
			if err = toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields().Decode(&doc); err != nil {
				err = fmt.Errorf("decode: %w", err)
			} else {
				for _, r := range doc.Route {
					if _, err = New(r.Name, r.Config, Deps{}); err != nil {
						break
					}
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
