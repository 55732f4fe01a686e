package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"
	"time"
)

// BenchmarkRecord compares the record layer with the raw stdlib AEAD on
// 16 KiB records, in the same run:
//
//	go test ./crypto/seal -run '^$' -bench 'Record' -count 5
func BenchmarkRecord(b *testing.B) {
	c := newClock()
	s := newTestServer(b, "", c)
	pt := make([]byte, MaxRecordPlaintext)
	for _, aead := range allAEADs {
		cs := openTestSession(b, s, KEMX25519, aead)
		if aead == AEADAES128GCM {
			block, _ := aes.NewCipher(make([]byte, 16))
			raw, _ := cipher.NewGCM(block)
			nonce := make([]byte, 12)
			out := make([]byte, 0, MaxRecordLen)
			b.Run("raw-stdlib-aes-128-gcm/seal", func(b *testing.B) {
				b.SetBytes(MaxRecordPlaintext)
				b.ReportAllocs()
				for b.Loop() {
					out = raw.Seal(out[:0], nonce, pt, nil)
				}
			})
			sealed := raw.Seal(nil, nonce, pt, nil)
			scratch := make([]byte, len(sealed))
			b.Run("raw-stdlib-aes-128-gcm/open", func(b *testing.B) {
				b.SetBytes(MaxRecordPlaintext)
				b.ReportAllocs()
				for b.Loop() {
					copy(scratch, sealed)
					if _, err := raw.Open(scratch[:0], nonce, scratch, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(aead.String()+"/seal", func(b *testing.B) {
			var sealer RecordSealer
			sealer.c.init(cs.c2s, 1)
			buf := make([]byte, MaxRecordLen)
			b.SetBytes(MaxRecordPlaintext)
			b.ReportAllocs()
			for b.Loop() {
				sealer.c.index = 0
				if _, err := sealer.Seal(buf[:0], pt, false); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(aead.String()+"/open", func(b *testing.B) {
			var sealer RecordSealer
			sealer.c.init(cs.c2s, 1)
			rec, _ := sealer.Seal(make([]byte, 0, MaxRecordLen), pt, false)
			var opener RecordOpener
			opener.c.init(cs.c2s, 1)
			scratch := make([]byte, len(rec))
			b.SetBytes(MaxRecordPlaintext)
			b.ReportAllocs()
			for b.Loop() {
				opener.c.index = 0
				copy(scratch, rec)
				if _, _, err := opener.Open(scratch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSessionOpen measures the server side of opening a session (HPKE
// decapsulation, exporter, ticket sealing), one core:
//
//	go test ./crypto/seal -run '^$' -bench 'SessionOpen' -cpu 1
func BenchmarkSessionOpen(b *testing.B) {
	c := newClock()
	s := newTestServer(b, "", c)
	for _, kem := range KEMs {
		reqs := make([][]byte, 64)
		for i := range reqs {
			reqs[i], _, _ = NewSessionRequest(configFor(b, s, kem), AEADAES128GCM)
		}
		b.Run(kem.String()+"/server", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, _, err := s.OpenSession(reqs[i%len(reqs)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "opens/s")
		})
		b.Run(kem.String()+"/client", func(b *testing.B) {
			cfg := configFor(b, s, kem)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := NewSessionRequest(cfg, AEADAES128GCM); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "opens/s")
		})
	}
}

// BenchmarkRecordVsStdlib interleaves a raw stdlib AES-128-GCM seal (and
// open) of 16 KiB with a record-layer seal (and open) of the same size in
// every iteration, so both see the same machine load, and reports the
// throughput ratios record/raw (1.0 = no overhead):
//
//	go test ./crypto/seal -run '^$' -bench 'RecordVsStdlib' -benchtime 20000x
func BenchmarkRecordVsStdlib(b *testing.B) {
	c := newClock()
	s := newTestServer(b, "", c)
	cs := openTestSession(b, s, KEMX25519, AEADAES128GCM)
	pt := make([]byte, MaxRecordPlaintext)
	block, _ := aes.NewCipher(make([]byte, 16))
	raw, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	rawOut := make([]byte, 0, MaxRecordLen)
	rawSealed := raw.Seal(nil, nonce, pt, nil)
	rawScratch := make([]byte, len(rawSealed))

	var sealer RecordSealer
	sealer.c.init(cs.c2s, 1)
	recBuf := make([]byte, MaxRecordLen)
	rec, _ := sealer.Seal(make([]byte, 0, MaxRecordLen), pt, false)
	var opener RecordOpener
	opener.c.init(cs.c2s, 1)
	recScratch := make([]byte, len(rec))

	var rawSeal, recSeal, rawOpen, recOpen time.Duration
	timed := func(f func()) time.Duration {
		t0 := time.Now()
		f()
		return time.Since(t0)
	}
	doRawSeal := func() { rawOut = raw.Seal(rawOut[:0], nonce, pt, nil) }
	doRecSeal := func() {
		sealer.c.index = 0
		if _, err := sealer.Seal(recBuf[:0], pt, false); err != nil {
			b.Fatal(err)
		}
	}
	doRawOpen := func() {
		copy(rawScratch, rawSealed)
		if _, err := raw.Open(rawScratch[:0], nonce, rawScratch, nil); err != nil {
			b.Fatal(err)
		}
	}
	doRecOpen := func() {
		opener.c.index = 0
		copy(recScratch, rec)
		if _, _, err := opener.Open(recScratch); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(4 * MaxRecordPlaintext)
	b.ReportAllocs()
	odd := false
	for b.Loop() {
		// Alternate which side goes first so neither gets warmer caches.
		if odd {
			rawSeal += timed(doRawSeal)
			recSeal += timed(doRecSeal)
			rawOpen += timed(doRawOpen)
			recOpen += timed(doRecOpen)
		} else {
			recSeal += timed(doRecSeal)
			rawSeal += timed(doRawSeal)
			recOpen += timed(doRecOpen)
			rawOpen += timed(doRawOpen)
		}
		odd = !odd
	}
	b.ReportMetric(float64(rawSeal)/float64(recSeal), "seal-ratio")
	b.ReportMetric(float64(rawOpen)/float64(recOpen), "open-ratio")
	n := float64(b.N)
	b.ReportMetric(float64(MaxRecordPlaintext)*n/recSeal.Seconds()/1e6, "seal-MB/s")
	b.ReportMetric(float64(MaxRecordPlaintext)*n/rawSeal.Seconds()/1e6, "raw-seal-MB/s")
}
