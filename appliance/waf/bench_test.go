package waf

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const benchBody = `{"name":"Ada Lovelace","email":"ada@example.com","age":36,"tags":["vip","newsletter","eu-west","analytical-engine"]}`

// BenchmarkSmallJSONPost is the WAF's per-request cost (paranoia 1, block
// mode) on a ~120-byte JSON POST that matches nothing.
func BenchmarkSmallJSONPost(b *testing.B) {
	w, err := New("bench", Config{Mode: ModeBlock}, Deps{Engines: engines})
	if err != nil {
		b.Fatal(err)
	}
	h := w.Wrap(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		rw.WriteHeader(http.StatusNoContent)
	}))
	body := strings.NewReader(benchBody)
	r := httptest.NewRequest("POST", "http://api.example.com/api/customers?limit=10", body)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "bench/1.0")
	rec := httptest.NewRecorder()
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(benchBody)
		r.Body = io.NopCloser(body)
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusNoContent {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// BenchmarkBuild is the time to compile the embedded CRS once (what a route
// with a new paranoia/exclusion setting costs at config load).
func BenchmarkBuild(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New("bench", Config{Mode: ModeBlock}, Deps{}); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzWrap sends arbitrary query strings, content types and bodies through a
// blocking WAF: it must never panic, a request it passes must reach the
// upstream byte for byte, and one it stops must not reach it at all.
func FuzzWrap(f *testing.F) {
	f.Add("id=1", "application/json", []byte(`{"a":1}`))
	f.Add("q=%3Cscript%3E", "application/x-www-form-urlencoded", []byte("a=1&b=<script>"))
	f.Add("", "multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--\r\n"))
	f.Add("x=%", "text/xml", []byte("<a><b>1</b></a>"))
	w, err := New("fuzz", Config{Mode: ModeBlock, MaxBody: "4KiB", BodyOverflow: OverflowPartial}, Deps{Engines: engines})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query, ctype string, body []byte) {
		var got []byte
		calls := 0
		h := w.Wrap(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			calls++
			got, _ = io.ReadAll(r.Body)
		}))
		r := httptest.NewRequest("POST", "http://api.example.com/api/x", strings.NewReader(string(body)))
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", ctype)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if calls == 1 && string(got) != string(body) {
			t.Fatalf("upstream got %q, sent %q", got, body)
		}
		if calls == 0 && rec.Code < 400 {
			t.Fatalf("status %d without reaching the upstream", rec.Code)
		}
	})
}

// BenchmarkSmallGET is the WAF's per-request cost on a GET with a short query.
func BenchmarkSmallGET(b *testing.B) {
	w, err := New("bench", Config{Mode: ModeBlock}, Deps{Engines: engines})
	if err != nil {
		b.Fatal(err)
	}
	h := w.Wrap(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { rw.WriteHeader(http.StatusNoContent) }))
	r := httptest.NewRequest("GET", "http://api.example.com/api/customers/42?fields=name,email", nil)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "bench/1.0")
	rec := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(rec, r)
	}
}
