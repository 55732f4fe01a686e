package seal

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// rfcExample reads a hex dump from testdata/rfc9292 (copied from RFC 9292,
// Section 5) and returns its bytes.
func rfcExample(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "rfc9292", name+".hex"))
	if err != nil {
		t.Fatal(err)
	}
	var clean strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		// The RFC's dumps carry an ASCII column after two spaces.
		if i := strings.Index(line, "  "); i >= 0 {
			line = line[:i]
		}
		clean.WriteString(strings.ReplaceAll(line, " ", ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

func TestRFC9292Examples(t *testing.T) {
	reqHeader := []Field{
		{"user-agent", "curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3"},
		{"host", "www.example.com"},
		{"accept-language", "en, mi"},
	}
	tests := []struct {
		name     string
		request  *Request
		response *Response
	}{
		{name: "known-length-request", request: &Request{Method: "GET", Scheme: "https", Path: "/hello.txt", Header: reqHeader}},
		{name: "indeterminate-length-request", request: &Request{Method: "GET", Scheme: "https", Path: "/hello.txt", Header: reqHeader,
			Framing: Framing{Indeterminate: true, Padding: 10}}},
		{name: "indeterminate-length-response", response: &Response{
			Informational: []InformationalResponse{
				{Status: 102, Header: []Field{{"running", `"sleep 15"`}}},
				{Status: 103, Header: []Field{{"link", "</style.css>; rel=preload; as=style"}, {"link", "</script.js>; rel=preload; as=script"}}},
			},
			Status: 200,
			Header: []Field{
				{"date", "Mon, 27 Jul 2009 12:28:53 GMT"}, {"server", "Apache"},
				{"last-modified", "Wed, 22 Jul 2009 19:15:56 GMT"}, {"etag", `"34aa387-d-1568eb00"`},
				{"accept-ranges", "bytes"}, {"content-length", "51"}, {"vary", "Accept-Encoding"},
				{"content-type", "text/plain"},
			},
			Content: []byte("Hello World! My content includes a trailing CRLF.\r\n"),
			Framing: Framing{Indeterminate: true},
		}},
		{name: "known-length-response", response: &Response{Status: 200, Content: []byte("This content contains CRLF.\r\n"),
			Trailer: []Field{{"trailer", "text"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := rfcExample(t, tt.name)
			var got any
			var err error
			var encode func() ([]byte, error)
			if tt.request != nil {
				var r *Request
				r, err = DecodeRequest(wire)
				got, encode = r, func() ([]byte, error) { return r.AppendBinary(nil) }
				if err == nil && !reflect.DeepEqual(r, tt.request) {
					t.Fatalf("decoded\n%+v\nwant\n%+v", r, tt.request)
				}
			} else {
				var r *Response
				r, err = DecodeResponse(wire)
				got, encode = r, func() ([]byte, error) { return r.AppendBinary(nil) }
				if err == nil && !reflect.DeepEqual(r, tt.response) {
					t.Fatalf("decoded\n%+v\nwant\n%+v", r, tt.response)
				}
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			_ = got
			again, err := encode()
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.Equal(again, wire) {
				t.Fatalf("re-encoded\n%x\nwant\n%x", again, wire)
			}
		})
	}
}

func TestRFC9292Truncation(t *testing.T) {
	// RFC 9292, Section 5.1: the last two bytes of the known-length request
	// (empty content and trailer) can be removed without changing it.
	wire := rfcExample(t, "known-length-request")
	full, err := DecodeRequest(wire)
	if err != nil {
		t.Fatal(err)
	}
	for cut := 1; cut <= 2; cut++ {
		r, err := DecodeRequest(wire[:len(wire)-cut])
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if r.Framing.Truncated != cut {
			t.Errorf("cut %d: Truncated = %d", cut, r.Framing.Truncated)
		}
		if !reflect.DeepEqual(r.Header, full.Header) || len(r.Content) != 0 {
			t.Errorf("cut %d: semantics changed", cut)
		}
		again, _ := r.AppendBinary(nil)
		if !bytes.Equal(again, wire[:len(wire)-cut]) {
			t.Errorf("cut %d: re-encoding differs", cut)
		}
	}
}

func TestBHTTPMalformed(t *testing.T) {
	tests := []struct {
		name     string
		hex      string
		response bool
	}{
		{"empty", "", false},
		{"bad framing indicator", "04", false},
		{"response framing as request", "01", false},
		{"request framing as response", "00", true},
		{"truncated method", "000347", false},
		{"method length beyond input", "0009474554", false},
		{"empty method", "00000568747470730000012f", false},
		{"relative path", "000347455405687474707300016100", false},
		{"uppercase field name", "000347455405687474707300012f03014100", false},
		{"pseudo field", "000347455405687474707300012f04023a6d00", false},
		{"field section overruns", "000347455405687474707300012f0f01610162", false},
		{"empty field name", "000347455405687474707300012f0400016100", false},
		{"value with newline", "000347455405687474707300012f040161010a", false},
		{"content overruns", "000347455405687474707300012f00056869", false},
		{"non-zero padding", "000347455405687474707300012f00000001", false},
		{"unterminated chunks", "020347455405687474707300012f00026869", false},
		{"unterminated header", "020347455405687474707300012f01610162", false},
		{"status out of range", "014040", true},
		{"status 600", "01425800", true},
		{"informational then end", "01406400", true},
		{"varint cut short", "018000", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := hex.DecodeString(strings.ReplaceAll(tt.hex, " ", ""))
			if err != nil {
				t.Fatalf("bad test hex: %v", err)
			}
			if tt.response {
				_, err = DecodeResponse(b)
			} else {
				_, err = DecodeRequest(b)
			}
			if !errors.Is(err, ErrMalformedBHTTP) {
				t.Fatalf("err = %v, want ErrMalformedBHTTP", err)
			}
		})
	}
}

func TestBHTTPStreamRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 4095, 70000} {
		t.Run(strings.Repeat("x", 0)+itoa(size), func(t *testing.T) {
			body := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
			var buf bytes.Buffer
			cw, err := WriteRequestHead(&buf, &Request{Method: "POST", Scheme: "https", Authority: "api.example.com",
				Path: "/v1/customers?x=1", Header: []Field{{"content-type", "application/json"}}})
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off < len(body); off += 1000 {
				cw.Write(body[off:min(off+1000, len(body))])
			}
			if err := cw.Close([]Field{{"x-checksum", "abc"}}); err != nil {
				t.Fatal(err)
			}
			d := NewDecoder(&buf, Limits{})
			req, err := d.ReadRequestHead()
			if err != nil {
				t.Fatal(err)
			}
			if req.Authority != "api.example.com" || req.Path != "/v1/customers?x=1" || req.Header[0].Value != "application/json" {
				t.Fatalf("head = %+v", req)
			}
			got, err := io.ReadAll(d.Body())
			if err != nil {
				t.Fatal(err)
			}
			trailer, err := d.Finish()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, body) || len(trailer) != 1 || trailer[0].Value != "abc" {
				t.Fatalf("body %d bytes (want %d), trailer %v", len(got), len(body), trailer)
			}
		})
	}
}

func TestBHTTPLimits(t *testing.T) {
	var buf bytes.Buffer
	_, err := WriteRequestHead(&buf, &Request{Method: "GET", Scheme: "https", Path: "/",
		Header: []Field{{"x-big", strings.Repeat("a", 5000)}}})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDecoder(bytes.NewReader(buf.Bytes()), Limits{MaxFieldSection: 1024})
	if _, err := d.ReadRequestHead(); !errors.Is(err, ErrMalformedBHTTP) {
		t.Fatalf("oversized header accepted: %v", err)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(rfcExample(f, "known-length-request"))
	f.Add(rfcExample(f, "indeterminate-length-request"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			return
		}
		again, err := r.AppendBinary(nil)
		if err != nil {
			t.Fatalf("decoded request does not re-encode: %v", err)
		}
		r2, err := DecodeRequest(again)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoding changed the request: %v", err)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(rfcExample(f, "indeterminate-length-response"))
	f.Add(rfcExample(f, "known-length-response"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResponse(b)
		if err != nil {
			return
		}
		again, err := r.AppendBinary(nil)
		if err != nil {
			t.Fatalf("decoded response does not re-encode: %v", err)
		}
		r2, err := DecodeResponse(again)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoding changed the response: %v", err)
		}
	})
}
