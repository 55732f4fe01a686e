package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEExamples parses every TOML example of the README that starts
// with "# example:", so the documentation cannot drift from the decoder.
func TestREADMEExamples(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(# example: ([^\n]+)\n.*?)```").FindAllStringSubmatch(string(b), -1)
	if len(blocks) == 0 {
		t.Fatal("README has no TOML example")
	}
	cert, _ := filepath.Abs("testdata/cert.pem")
	key, _ := filepath.Abs("testdata/key.pem")
	for _, m := range blocks {
		t.Run(m[2], func(t *testing.T) {
			// The example names the operator's certificate; use the test one.
			doc := strings.NewReplacer("/etc/sealgate/api.crt", cert, "/etc/sealgate/api.key", key).Replace(m[1])
			c, err := Parse("README.md", []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Routes) == 0 || c.Routes[0].Auth.Methods == nil || c.Routes[0].DLP.Action == "" {
				t.Fatalf("example decoded without its policy tables: %+v", c.Routes)
			}
		})
	}
}
