package appliance

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"testing"
	"time"
)

// FuzzAccessJSON holds appendAccessJSON to slog's JSON handler: for any
// access line, the bytes must be the ones slog writes for a.record(t).
func FuzzAccessJSON(f *testing.F) {
	f.Add("r-1", "127.0.0.1:5000", "api", "r", "GET", "example.com", "/a/b", "HTTP/1.1", "127.0.0.1:8080", 200, int64(0), int64(1024), int64(1234), false, true, uint16(tls.VersionTLS13), uint16(tls.TLS_AES_128_GCM_SHA256), "h2", int64(1764255845123456789))
	f.Add("\"\\\n\r\t\x00\x1f\x7f", "<&>", "\u2028\u2029", "\xff\xfe", "é", "日本", "/%zz", "", "", -1, int64(-5), int64(1<<62), int64(0), true, false, uint16(0), uint16(0), "", int64(0))
	f.Add("", "", "", "", "", "", "", "", "", 0, int64(0), int64(0), int64(1), false, true, uint16(0x0301), uint16(0xffff), "x\u2028", int64(-1))
	f.Fuzz(func(t *testing.T, id, client, listener, route, method, host, path, proto, upstream string,
		status int, in, out, durMicro int64, sealed, withTLS bool, version, cipher uint16, alpn string, unixNano int64) {
		a := accessLine{id: id, client: client, listener: listener, route: route, method: method, host: host, path: path,
			proto: proto, upstream: upstream, status: status, in: in, out: out, dur: time.Duration(durMicro) * time.Microsecond, sealed: sealed}
		if withTLS {
			a.tls = &tls.ConnectionState{Version: version, CipherSuite: cipher, NegotiatedProtocol: alpn}
		}
		tm := time.Unix(0, unixNano%(1<<62)).In(time.FixedZone("x", 3600))
		var want bytes.Buffer
		h := slog.NewJSONHandler(&want, nil).WithAttrs([]slog.Attr{slog.String("log", "access")})
		if err := h.Handle(context.Background(), a.record(tm)); err != nil {
			t.Fatal(err)
		}
		if got := appendAccessJSON(nil, tm, &a); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("encoded\n%s\nslog writes\n%s", got, want.Bytes())
		}
	})
}

// TestAccessLoggerLines checks the logger the daemon uses: the engine's
// lines and any other record come out whole, one per line, level-gated.
func TestAccessLoggerLines(t *testing.T) {
	var buf bytes.Buffer
	lv := new(slog.LevelVar)
	l := NewAccessLogger(&buf, lv)
	a := accessLine{id: "r-1", client: "127.0.0.1:1", listener: "api", route: "r", method: "GET", host: "h", path: "/", proto: "HTTP/1.1", status: 200}
	writeAccess(l.Handler(), &a)
	l.Info("other", "k", 1)
	lines := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
	if len(lines) != 2 || !bytes.Contains(lines[0], []byte(`"msg":"access","log":"access","request_id":"r-1"`)) ||
		!bytes.Contains(lines[1], []byte(`"msg":"other","log":"access","k":1`)) {
		t.Fatalf("lines %q", lines)
	}
	lv.Set(slog.LevelWarn)
	if l.Handler().Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("the access log is on at level warn")
	}
}

// BenchmarkAccessLine compares an access line through slog's JSON handler
// with the engine's encoder.
func BenchmarkAccessLine(b *testing.B) {
	cs := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, NegotiatedProtocol: "http/1.1"}
	a := accessLine{id: "01JDX7Q2-1a2b", client: "127.0.0.1:51234", listener: "bench", route: "bench", method: "GET",
		host: "127.0.0.1:18446", path: "/json", proto: "HTTP/1.1", upstream: "127.0.0.1:18080", status: 200, out: 1024,
		dur: 1234 * time.Microsecond, tls: cs}
	b.Run("slog", func(b *testing.B) {
		h := slog.NewJSONHandler(discard{}, nil).WithAttrs([]slog.Attr{slog.String("log", "access")})
		b.ReportAllocs()
		for b.Loop() {
			writeAccess(h, &a)
		}
	})
	b.Run("engine", func(b *testing.B) {
		h := NewAccessLogger(discard{}, nil).Handler()
		b.ReportAllocs()
		for b.Loop() {
			writeAccess(h, &a)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestAccessTimeAndMillis: the cached clock gives what time.RFC3339Nano
// formatting gives, within a second and across seconds and zones, and the
// integer milliseconds what the float encoding gives.
func TestAccessTimeAndMillis(t *testing.T) {
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("a", 3600), time.FixedZone("b", -(5*3600 + 30*60))}
	base := time.Date(2026, 11, 27, 20, 35, 23, 0, time.UTC)
	for _, loc := range zones {
		for _, off := range []time.Duration{0, 100, 123456789, 999999999, time.Second, time.Second + 10, -1, 24 * time.Hour} {
			for range 2 { // the second from the cache
				tm := base.Add(off).In(loc)
				if got, want := appendTime(nil, tm), tm.AppendFormat(nil, time.RFC3339Nano); !bytes.Equal(got, want) {
					t.Fatalf("%v: %s, want %s", tm, got, want)
				}
			}
		}
	}
	for _, us := range []int64{0, 1, 10, 100, 999, 1000, 1001, 1010, 1100, 1500, 123456789, 1e14 - 1, 1e14, -1, -1500, 1 << 62} {
		if got, want := appendMillis(nil, us), appendJSONFloat(nil, float64(us)/1000); !bytes.Equal(got, want) {
			t.Fatalf("%d µs: %s, want %s", us, got, want)
		}
	}
}
