package dlp

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkMasked walks the decoded original and redacted documents side by side:
// under a flagged key every string is all '*' and every number all 9s;
// elsewhere the values are equal.
func checkMasked(t *testing.T, path string, orig, red any, flagged bool, names map[string]bool) {
	t.Helper()
	switch o := orig.(type) {
	case map[string]any:
		r, ok := red.(map[string]any)
		if !ok || len(r) != len(o) {
			t.Fatalf("%s: object shape changed", path)
		}
		for k, v := range o {
			checkMasked(t, path+"."+k, v, r[k], flagged || names[strings.ToLower(k)], names)
		}
	case []any:
		r, ok := red.([]any)
		if !ok || len(r) != len(o) {
			t.Fatalf("%s: array shape changed", path)
		}
		for i := range o {
			checkMasked(t, path+"[]", o[i], r[i], flagged, names)
		}
	case string:
		r, _ := red.(string)
		if flagged {
			if strings.Trim(r, "*") != "" || (o != "" && r == "") {
				t.Fatalf("%s: %q not masked: %q", path, o, r)
			}
		} else if r != o {
			t.Fatalf("%s: %q changed to %q", path, o, r)
		}
	case json.Number:
		r, _ := red.(json.Number)
		if flagged {
			if strings.Trim(string(r), "9.-+eE") != "" {
				t.Fatalf("%s: number %s not masked: %s", path, o, r)
			}
		} else if r != o {
			t.Fatalf("%s: %s changed to %s", path, o, r)
		}
	default:
		if orig != red {
			t.Fatalf("%s: %v changed to %v", path, orig, red)
		}
	}
}

func decodeNumbers(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return v
}

// TestJSONFieldsAgainstDecoder checks the streaming field tracker against
// encoding/json on the corpus documents: exactly the values under the
// configured keys, at any depth and whatever their type, are masked.
func TestJSONFieldsAgainstDecoder(t *testing.T) {
	fields := []string{"name", "price", "tags", "metadata", "properties", "Status", "values", "id"}
	names := map[string]bool{}
	for _, f := range fields {
		names[strings.ToLower(f)] = true
	}
	cc := mustCompile(t, Config{Detectors: []string{}, JSONFields: fields})
	files, _ := filepath.Glob(filepath.Join("testdata", "clean", "*.json"))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var h harness
			out, _ := h.scan(t, cc, true, body, len(body)/2, len(body)/2+1)
			if !json.Valid(out) {
				t.Fatal("redacted document is not valid JSON")
			}
			checkMasked(t, "$", decodeNumbers(t, body), decodeNumbers(t, out), false, names)
		})
	}
}
