package validate

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// referenceDepth measures nesting with encoding/json's tokenizer; ok is false
// when data is not exactly one well-formed JSON value.
func referenceDepth(data []byte) (depth int, ok bool) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	// Numbers stay text: 1E700 is well-formed JSON even though it does not
	// fit a float64.
	dec.UseNumber()
	cur := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, false
		}
		if d, isDelim := tok.(json.Delim); isDelim {
			switch d {
			case '{', '[':
				cur++
				depth = max(depth, cur)
			default:
				cur--
			}
		}
	}
	// Token accepts a stream of values; the body must be exactly one.
	return depth, json.Valid(data)
}

func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":[1,2,{"b":"c\"]"}]}`, `"[[["`, `[[[[[[`, `{"a":1,}`, `1 2`, ``, `"\\"`, `[{"\\\"":[]}]`} {
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, data []byte, maxDepth int) {
		maxDepth = maxDepth%20 + 1
		if maxDepth < 1 {
			maxDepth += 20
		}
		got := checkJSON(data, maxDepth)
		depth, ok := referenceDepth(data)
		var want jsonResult
		switch {
		case !ok:
			// Malformed input may be reported as too deep when the bracket
			// scan trips first; either way it is rejected.
			if got == jsonOK {
				t.Fatalf("checkJSON(%q) accepted malformed JSON", data)
			}
			return
		case depth > maxDepth:
			want = jsonTooDeep
		default:
			want = jsonOK
		}
		if got != want {
			t.Fatalf("checkJSON(%q, %d) = %v, want %v (depth %d)", data, maxDepth, got, want, depth)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1MiB", "16KiB", "0", "", "1.5GB", "-1B", "9223372036854775807", "8EiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}

// FuzzWrap sends arbitrary bodies, queries and content types through a fully
// configured validator: it must never panic, and whatever it accepts must
// reach the upstream byte for byte.
func FuzzWrap(f *testing.F) {
	f.Add("application/json", "a=1&b=2", []byte(`{"name":"Ada","email":"ada@example.com"}`))
	f.Add("application/json", "", []byte(`[[[[[[[[[[]]]]]]]]]]`))
	f.Add("text/plain", "x", []byte("hello"))
	f.Add("application/json; charset=\"", "&&&", []byte(`{`))
	v, err := New("fuzz", Config{
		ContentTypes: []string{"application/json", "text/*"}, MaxJSONDepth: 8, MaxJSONSize: "4KiB",
		MaxQueryParams: 5, MaxQueryLength: 100, OpenAPI: "testdata/customers.yaml", OpenAPIMode: ModeEnforce,
	}, Deps{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ctype, query string, body []byte) {
		up := &upstream{}
		r := httptest.NewRequest("POST", "/api/customers", strings.NewReader(string(body)))
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", ctype)
		w := httptest.NewRecorder()
		v.Wrap(up).ServeHTTP(w, r)
		if w.Code == http.StatusNoContent && string(up.body) != string(body) {
			t.Fatalf("upstream got %q, sent %q", up.body, body)
		}
		if w.Code != http.StatusNoContent && up.calls != 0 {
			t.Fatalf("status %d but upstream called", w.Code)
		}
	})
}

// BenchmarkSmallJSONPost is the per-request cost of methods, content type,
// query/header limits and the JSON size/depth check on a ~200-byte body.
func BenchmarkSmallJSONPost(b *testing.B) {
	benchWrap(b, Config{
		Methods: []string{"GET", "POST"}, ContentTypes: []string{"application/json"}, MaxJSONDepth: 32,
		MaxJSONSize: "1MiB", MaxQueryParams: 50, MaxQueryLength: 2048, MaxHeaderCount: 64, MaxHeaderBytes: "16KiB",
	})
}

// BenchmarkSmallJSONPostOpenAPI adds OpenAPI schema validation in enforce mode.
func BenchmarkSmallJSONPostOpenAPI(b *testing.B) {
	benchWrap(b, Config{
		Methods: []string{"GET", "POST"}, ContentTypes: []string{"application/json"}, MaxJSONDepth: 32,
		MaxJSONSize: "1MiB", OpenAPI: "testdata/customers.yaml",
	})
}

const benchBody = `{"name":"Ada Lovelace","email":"ada@example.com","age":36,"tags":["vip","newsletter","eu-west","analytical-engine"]}`

func benchWrap(b *testing.B, cfg Config) {
	v, err := New("bench", cfg, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	h := v.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	body := strings.NewReader(benchBody)
	r := httptest.NewRequest("POST", "/api/customers?limit=10", body)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "bench/1.0")
	w := httptest.NewRecorder()
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(benchBody)
		r.Body = io.NopCloser(body)
		r.ContentLength = int64(len(benchBody))
		h.ServeHTTP(w, r)
		if w.Code != http.StatusNoContent {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
