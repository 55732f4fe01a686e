package dlp

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mixedJSON is about size bytes of API-like JSON records: ids, names,
// timestamps, prices, UUIDs, text, nested objects, with a sensitive value
// (card, e-mail, phone, SSN, IBAN, token) in one record in every (0: none).
func mixedJSON(size, every int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString(`{"data":[`)
	words := strings.Fields("alpha beta gamma delta order shipped pending invoice customer account premium monthly renewal warehouse Berlin Lisbon express standard refund")
	sensitive := []string{`"card":"4111 1111 1111 1111"`, `"email":"jane.doe@example.com"`, `"phone":"+442079460958"`,
		`"ssn":"078-05-1121"`, `"iban":"DE89370400440532013000"`, `"token":"ghp_16C7e42F292c6912E7710c838347Ae178B4a"`}
	for i := 0; b.Len() < size-600; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"uuid":"%08x-%04x-4%03x-a%03x-%012x","created_at":"2024-%02d-%02dT%02d:%02d:%02d.%03dZ","updated":%d,`,
			100000+i, r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff, r.Uint32()&0xfff, r.Uint64()&0xffffffffffff,
			1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1000), 1700000000000+r.Int64N(1e10))
		fmt.Fprintf(&b, `"name":"%s %s","price":%d.%02d,"currency":"EUR","qty":%d,"tags":["%s","%s"],"version":"%d.%d.%d",`,
			words[r.IntN(len(words))], words[r.IntN(len(words))], r.IntN(500), r.IntN(100), 1+r.IntN(9),
			words[r.IntN(len(words))], words[r.IntN(len(words))], r.IntN(5), r.IntN(20), r.IntN(50))
		fmt.Fprintf(&b, `"address":{"street":"%d %s Street","city":"%s","zip":"%05d"},"note":"%s %s %s %s","score":%.6f`,
			1+r.IntN(300), words[r.IntN(len(words))], words[r.IntN(len(words))], r.IntN(99999),
			words[r.IntN(len(words))], words[r.IntN(len(words))], words[r.IntN(len(words))], words[r.IntN(len(words))], r.Float64())
		if every > 0 && i%every == 0 {
			b.WriteString("," + sensitive[r.IntN(len(sensitive))])
		}
		b.WriteByte('}')
	}
	b.WriteString("]}")
	return []byte(b.String())
}

type discardSink struct{}

func (discardSink) emit([]byte) error                   { return nil }
func (discardSink) found(Kind, secretType, int64) error { return nil }

func benchScanner(b *testing.B, cfg Config, chunk int, scalar ...bool) {
	benchScannerBody(b, mixedJSON(1<<20, 10), cfg, chunk, scalar...)
}

func benchScannerBody(b *testing.B, body []byte, cfg Config, chunk int, scalar ...bool) {
	cc := mustCompile(b, cfg)
	var s scanner
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	defer reportCPU(b, len(body))()
	for b.Loop() {
		s.reset(cc, true, discardSink{}, discardSink{})
		s.scalarOnly = len(scalar) > 0
		for p := body; len(p) > 0; {
			k := min(chunk, len(p))
			if err := s.write(p[:k]); err != nil {
				b.Fatal(err)
			}
			p = p[k:]
		}
		if err := s.close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScanner is the scanner alone over a 1 MiB mixed JSON body in 32
// KiB writes (what a reverse proxy does), all detectors on.
func BenchmarkScanner(b *testing.B) {
	b.Run("all detectors/redact", func(b *testing.B) { benchScanner(b, Config{Action: "redact"}, 32<<10) })
	b.Run("all detectors/log", func(b *testing.B) { benchScanner(b, Config{Action: "log"}, 32<<10) })
	b.Run("all detectors/log, byte loop", func(b *testing.B) { benchScanner(b, Config{Action: "log"}, 32<<10, true) })
	b.Run("all detectors+json_fields", func(b *testing.B) {
		benchScanner(b, Config{Action: "redact", JSONFields: []string{"password", "national_id", "ssn"}}, 32<<10)
	})
	b.Run("all detectors/writes of 1KiB", func(b *testing.B) { benchScanner(b, Config{Action: "redact"}, 1<<10) })
	b.Run("all detectors/clean corpus", func(b *testing.B) {
		benchScannerBody(b, cleanCorpus(b), Config{Action: "redact"}, 32<<10)
	})
	b.Run("all detectors/clean corpus, byte loop", func(b *testing.B) {
		benchScannerBody(b, cleanCorpus(b), Config{Action: "redact"}, 32<<10, true)
	})
}

// cleanCorpus is every file of testdata/clean (JSON, NDJSON, CSV, HTML and
// text; no finding) concatenated, one newline between files.
func cleanCorpus(b *testing.B) []byte {
	files, err := filepath.Glob(filepath.Join("testdata", "clean", "*"))
	if err != nil || len(files) == 0 {
		b.Fatalf("corpus: %v (%d files)", err, len(files))
	}
	var body []byte
	for _, f := range files {
		p, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		body = append(append(body, p...), '\n')
	}
	return body
}

// discardWriter is a ResponseWriter that drops the body.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkWrap is the whole middleware: a handler writing a 1 MiB JSON body
// in 32 KiB writes through Wrap to a discarding ResponseWriter. "redact" has
// a sensitive value in one record in ten; "block" is a clean body held whole
// in the block buffer, then sent.
func BenchmarkWrap(b *testing.B) {
	mixed, clean := mixedJSON(1<<20, 10), mixedJSON(1<<20, 0)
	for _, tc := range []struct {
		name string
		cfg  Config
		body []byte
	}{
		{"off", Config{}, mixed},
		{"redact", Config{Action: "redact"}, mixed},
		{"log", Config{Action: "log"}, mixed},
		{"block clean body", Config{Action: "block", MaxBlockBuffer: "2MiB"}, clean},
	} {
		body := tc.body
		upstream := chunked(http.Header{"Content-Type": {"application/json"}}, 200, body, 32<<10)
		b.Run(tc.name, func(b *testing.B) {
			p, err := New("bench", tc.cfg, Deps{})
			if err != nil {
				b.Fatal(err)
			}
			h := p.Wrap(upstream)
			r := httptest.NewRequest("GET", "/", nil)
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			defer reportCPU(b, len(body))()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
	}
}

// reportCPU adds a cpu-MB/s metric: bytes per second of process CPU time
// (user + system), which stays meaningful when the machine is shared and
// wall-clock MB/s is not. Run with -cpu 1 so the process is the benchmark.
func reportCPU(b *testing.B, size int) func() {
	start := cpuTime()
	return func() {
		if d := cpuTime() - start; d > 0 && b.N > 0 {
			b.ReportMetric(float64(size)*float64(b.N)/d.Seconds()/1e6, "cpu-MB/s")
		}
	}
}
