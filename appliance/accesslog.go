package appliance

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// NewAccessLogger returns the access log: JSON lines on w with the attribute
// log=access, written when level allows INFO. They are the lines slog's JSON
// handler writes. The fast paths' lines are encoded straight into a buffer
// instead of through a slog.Record and the handler's generic attribute
// code, which took half of what an access line cost (and a json.Marshal per
// line for the duration); FuzzAccessJSON holds the two encodings to the same
// bytes. Each line is one Write to w; a w shared with another logger must
// serialise their writes.
func NewAccessLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	jh := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(&accessJSON{Handler: jh.WithAttrs([]slog.Attr{slog.String("log", "access")}), w: w})
}

// accessJSON is NewAccessLogger's handler. Records other than the fast
// paths' lines (the handler path's, which carry the stages' findings) go
// through slog's JSON handler.
type accessJSON struct {
	slog.Handler
	w io.Writer
}

var accessBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// line writes a's access line, stamped t.
func (h *accessJSON) line(t time.Time, a *accessLine) error {
	bp := accessBufs.Get().(*[]byte)
	b := appendAccessJSON((*bp)[:0], t, a)
	_, err := h.w.Write(b)
	*bp = b[:0]
	accessBufs.Put(bp)
	return err
}

// writeAccess writes a's access line through h. The fast paths fill a with
// views of a request's memory (id, method, host, path): the engine's
// encoder writes the line before this returns; any other handler gets a
// slog.Record it may keep, so it gets copies.
func writeAccess(h slog.Handler, a *accessLine) {
	if aj, ok := h.(*accessJSON); ok {
		aj.line(time.Now(), a)
		return
	}
	c := *a
	c.id, c.method, c.host, c.path = strings.Clone(a.id), strings.Clone(a.method), strings.Clone(a.host), strings.Clone(a.path)
	h.Handle(context.Background(), c.record(time.Now()))
}

// appendAccessJSON appends a's access line as slog's JSON handler writes
// a.record(t) with the attribute log=access, newline included.
func appendAccessJSON(b []byte, t time.Time, a *accessLine) []byte {
	b = append(b, `{"time":"`...)
	b = appendTime(b, t)
	b = append(b, `","level":"INFO","msg":"access","log":"access","request_id":`...)
	b = appendJSONString(b, a.id)
	b = append(b, `,"client":`...)
	b = appendJSONString(b, a.client)
	b = append(b, `,"listener":`...)
	b = appendJSONString(b, a.listener)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, a.route)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, a.method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, a.host)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, a.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(a.status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, a.in, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, a.out, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, a.dur.Microseconds())
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, a.proto)
	b = append(b, `,"sealed":`...)
	b = strconv.AppendBool(b, a.sealed)
	if a.upstream != "" {
		b = append(b, `,"upstream":`...)
		b = appendJSONString(b, a.upstream)
	}
	if a.tls != nil {
		b = append(b, `,"tls":`...)
		b = appendJSONString(b, tlsVersionName(a.tls.Version))
		b = append(b, `,"cipher":`...)
		b = appendJSONString(b, cipherSuiteName(a.tls.CipherSuite))
		b = append(b, `,"alpn":`...)
		b = appendJSONString(b, a.tls.NegotiatedProtocol)
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s quoted as slog's JSON handler quotes strings:
// no HTML escaping; control characters, invalid UTF-8 and U+2028/U+2029
// escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	// Most values need no escaping: one table lookup a byte finds that.
	i := 0
	for i < len(s) && jsonPlain[s[i]] {
		i++
	}
	if i == len(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	start := 0
	for i < len(s) {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// clockCache is one second's formatted date and clock and its zone, for
// appendTime.
type clockCache struct {
	sec        int64
	loc        *time.Location
	head, zone []byte
}

var lastClock atomic.Pointer[clockCache]

// appendTime appends t as t.AppendFormat(b, time.RFC3339Nano) does; the
// date, clock and zone are formatted once a second (the offset cannot
// change within a second), the fraction for each line.
func appendTime(b []byte, t time.Time) []byte {
	sec, loc := t.Unix(), t.Location()
	c := lastClock.Load()
	if c == nil || c.sec != sec || c.loc != loc {
		c = &clockCache{sec: sec, loc: loc,
			head: t.AppendFormat(nil, "2006-01-02T15:04:05"), zone: t.AppendFormat(nil, "Z07:00")}
		lastClock.Store(c)
	}
	b = append(b, c.head...)
	if ns := t.Nanosecond(); ns != 0 {
		// ".999999999": nine digits, trailing zeros dropped.
		var d [10]byte
		d[0] = '.'
		for i := 9; i >= 1; i-- {
			d[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for d[n-1] == '0' {
			n--
		}
		b = append(b, d[:n]...)
	}
	return append(b, c.zone...)
}

// appendMillis appends us microseconds as milliseconds, as appendJSONFloat
// writes float64(us)/1000: for a duration under three years that is the
// exact decimal (at most 14 significant digits, which a float64 keeps), so
// it is written from the integer.
func appendMillis(b []byte, us int64) []byte {
	if us < 0 || us >= 1e14 {
		return appendJSONFloat(b, float64(us)/1000)
	}
	b = strconv.AppendInt(b, us/1000, 10)
	if f := us % 1000; f != 0 {
		b = append(b, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
		for b[len(b)-1] == '0' {
			b = b[:len(b)-1]
		}
	}
	return b
}

// jsonPlain marks the bytes appendJSONString copies as they are: printable
// ASCII but the quote and the backslash.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONFloat appends f as encoding/json writes a float64 (which is
// what slog's JSON handler calls for one).
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9, as encoding/json does
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
