package validate

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sealgate/sealgate/appliance/audit"
	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/appliance/problem"
	"github.com/sealgate/sealgate/appliance/reqctx"
)

// upstream records what the protected handler received.
type upstream struct {
	calls int
	body  []byte
	cl    int64
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.calls++
	u.body, _ = io.ReadAll(r.Body)
	u.cl = r.ContentLength
	w.WriteHeader(http.StatusNoContent)
}

func nest(depth int) string {
	return strings.Repeat(`{"a":`, depth-1) + `{}` + strings.Repeat(`}`, depth-1)
}

func TestLimits(t *testing.T) {
	cfg := Config{
		Methods:        []string{"GET", "POST"},
		ContentTypes:   []string{"application/json", "text/*"},
		MaxJSONDepth:   4,
		MaxJSONSize:    "64B",
		MaxQueryParams: 3,
		MaxQueryLength: 20,
		MaxHeaderCount: 4,
		MaxHeaderBytes: "128B",
	}
	type req struct {
		method, target, ctype, body string
		headers                     int // extra X-Pad-N headers of 10-byte values
		padBytes                    int // one X-Big header of this many bytes
	}
	tests := []struct {
		name   string
		req    req
		status int
		reason string
	}{
		{"get passes", req{method: "GET", target: "/x"}, 204, ""},
		{"method", req{method: "DELETE", target: "/x"}, 405, "validate_method"},
		{"content type passes", req{method: "POST", target: "/x", ctype: "text/plain", body: "hi"}, 204, ""},
		{"content type", req{method: "POST", target: "/x", ctype: "application/xml", body: "<a/>"}, 415, "validate_content_type"},
		{"content type case and parameters", req{method: "POST", target: "/x", ctype: "Application/JSON; charset=UTF-8", body: "{}"}, 204, ""},
		{"content type malformed", req{method: "POST", target: "/x", ctype: "application/json/x", body: "{}"}, 415, "validate_content_type"},
		{"content type missing", req{method: "POST", target: "/x", body: "x"}, 415, "validate_content_type"},
		{"json depth at limit", req{method: "POST", target: "/x", ctype: "application/json", body: nest(4)}, 204, ""},
		{"json depth", req{method: "POST", target: "/x", ctype: "application/json", body: nest(5)}, 400, "validate_json_depth"},
		{"json depth brackets in strings", req{method: "POST", target: "/x", ctype: "application/json", body: `{"a":"[[[[[[\"{{{{"}`}, 204, ""},
		{"json malformed", req{method: "POST", target: "/x", ctype: "application/json", body: `{"a":1,}`}, 400, "validate_json_syntax"},
		{"json trailing data", req{method: "POST", target: "/x", ctype: "application/json", body: `{} {}`}, 400, "validate_json_syntax"},
		{"json +json suffix", req{method: "POST", target: "/x", ctype: "application/merge-patch+json", body: `{"a":`}, 415, "validate_content_type"},
		{"json size at limit", req{method: "POST", target: "/x", ctype: "application/json", body: `"` + strings.Repeat("a", 62) + `"`}, 204, ""},
		{"json size", req{method: "POST", target: "/x", ctype: "application/json", body: `"` + strings.Repeat("a", 63) + `"`}, 413, "validate_json_size"},
		{"query params at limit", req{method: "GET", target: "/x?a=1&b=2&c=3"}, 204, ""},
		{"query params", req{method: "GET", target: "/x?a&b&c&d"}, 400, "validate_query_params"},
		{"query length at limit", req{method: "GET", target: "/x?" + strings.Repeat("q", 20)}, 204, ""},
		{"query length", req{method: "GET", target: "/x?" + strings.Repeat("q", 21)}, 414, "validate_query_length"},
		{"header count at limit", req{method: "GET", target: "/x", headers: 4}, 204, ""},
		{"header count", req{method: "GET", target: "/x", headers: 5}, 431, "validate_header_count"},
		{"header bytes at limit", req{method: "GET", target: "/x", padBytes: 128 - len("X-Big") - 4}, 204, ""},
		{"header bytes", req{method: "GET", target: "/x", padBytes: 128 - len("X-Big") - 3}, 431, "validate_header_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			v, err := New("orders", cfg, Deps{Metrics: m})
			if err != nil {
				t.Fatal(err)
			}
			up := &upstream{}
			var body io.Reader
			if tt.req.body != "" {
				body = strings.NewReader(tt.req.body)
			}
			r := httptest.NewRequest(tt.req.method, tt.req.target, body)
			if tt.req.ctype != "" {
				r.Header.Set("Content-Type", tt.req.ctype)
			}
			for i := range tt.req.headers {
				r.Header.Set("X-Pad-"+string(rune('a'+i)), "0123456789")
			}
			if tt.req.padBytes > 0 {
				r.Header.Set("X-Big", strings.Repeat("b", tt.req.padBytes))
			}
			info := &reqctx.Info{ID: "t"}
			r = r.WithContext(reqctx.With(r.Context(), info))
			w := httptest.NewRecorder()
			v.Wrap(up).ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status == 204 {
				if up.calls != 1 || string(up.body) != tt.req.body {
					t.Fatalf("upstream calls %d body %q, want 1 and %q", up.calls, up.body, tt.req.body)
				}
				return
			}
			if up.calls != 0 {
				t.Fatalf("upstream called on rejection")
			}
			if ct := w.Header().Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("content type %q", ct)
			}
			if got := counterValue(m.PolicyDenials.WithLabelValues("orders", tt.reason)); got != 1 {
				t.Errorf("denials{%s} = %v, want 1", tt.reason, got)
			}
			if d, rule := info.Decision(); d != "deny" || rule != "validate:"+strings.TrimPrefix(tt.reason, "validate_") {
				t.Errorf("decision %q %q", d, rule)
			}
			if tt.status == 405 && w.Header().Get("Allow") != "GET, POST" {
				t.Errorf("Allow = %q", w.Header().Get("Allow"))
			}
		})
	}
}

// chunkedBody hides its length so the request looks chunked.
type chunkedBody struct{ io.Reader }

func (chunkedBody) Close() error { return nil }

func TestBodyReplay(t *testing.T) {
	v, err := New("r", Config{MaxJSONSize: "1KiB"}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		body    string
		chunked bool
		status  int
	}{
		{"known length", `{"name":"Ada","tags":["a","b"]}`, false, 204},
		{"chunked", `[1,2,3,{"x":null}]`, true, 204},
		{"chunked too large", `"` + strings.Repeat("z", 1100) + `"`, true, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &upstream{}
			r := httptest.NewRequest("POST", "/", strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/json; charset=utf-8")
			if tt.chunked {
				r.ContentLength = -1
				r.Body = chunkedBody{strings.NewReader(tt.body)}
			}
			w := httptest.NewRecorder()
			v.Wrap(up).ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d", w.Code, tt.status)
			}
			if tt.status != 204 {
				if up.calls != 0 {
					t.Fatal("upstream called")
				}
				return
			}
			if string(up.body) != tt.body || up.cl != int64(len(tt.body)) {
				t.Fatalf("upstream got %q (length %d)", up.body, up.cl)
			}
		})
	}
}

func TestBodyReachesRealUpstream(t *testing.T) {
	// Through a real HTTP server, the body the upstream reads is byte-identical.
	var got []byte
	upstreamSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
	}))
	defer upstreamSrv.Close()
	v, err := New("r", Config{MaxJSONDepth: 8}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	forward := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, _ := http.NewRequestWithContext(r.Context(), "POST", upstreamSrv.URL, r.Body)
		out.ContentLength = r.ContentLength
		resp, err := upstreamSrv.Client().Do(out)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
	})
	front := httptest.NewServer(v.Wrap(forward))
	defer front.Close()
	body := `{"customer":{"name":"Grace","orders":[{"id":1,"total":"12.50"}]}}`
	resp, err := http.Post(front.URL, "application/json", chunkedBody{strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if string(got) != body {
		t.Fatalf("upstream got %q", got)
	}
}

func TestZeroConfigIsOff(t *testing.T) {
	v, err := New("r", Config{}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	up := &upstream{}
	if got := v.Wrap(up); got != http.Handler(up) {
		t.Fatal("zero config must return next unchanged")
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"depth", Config{MaxJSONDepth: -1}, "route[orders].validate.max_json_depth: must be > 0"},
		{"params", Config{MaxQueryParams: -3}, "route[orders].validate.max_query_params"},
		{"size syntax", Config{MaxJSONSize: "1 megabyte"}, "route[orders].validate.max_json_size"},
		{"size zero", Config{MaxJSONSize: "0B"}, "route[orders].validate.max_json_size: must be > 0"},
		{"header bytes", Config{MaxHeaderBytes: "-1KiB"}, "route[orders].validate.max_header_bytes"},
		{"method", Config{Methods: []string{"get"}}, "route[orders].validate.methods[0]"},
		{"content type", Config{ContentTypes: []string{"json"}}, "route[orders].validate.content_types[0]"},
		{"mode", Config{OpenAPI: "testdata/customers.yaml", OpenAPIMode: "strict"}, "route[orders].validate.openapi_mode"},
		{"mode without spec", Config{OpenAPIMode: "report"}, "route[orders].validate.openapi_mode"},
		{"spec missing", Config{OpenAPI: "testdata/nope.yaml"}, "route[orders].validate.openapi"},
		{"spec invalid", Config{OpenAPI: "testdata/broken.yaml"}, "route[orders].validate.openapi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New("orders", tt.cfg, Deps{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestOpenAPI(t *testing.T) {
	tests := []struct {
		name, method, target, body string
		enforce                    int    // status in enforce mode
		detail                     string // part of the problem detail in enforce mode
	}{
		{"valid post", "POST", "/api/customers", `{"name":"Ada","email":"ada@example.com"}`, 204, ""},
		{"valid get", "GET", "/api/customers?limit=10", "", 204, ""},
		{"valid path param", "GET", "/api/customers/42", "", 204, ""},
		{"missing field", "POST", "/api/customers", `{"name":"Ada"}`, 400, "email"},
		{"wrong type", "POST", "/api/customers", `{"name":"Ada","email":"ada@example.com","age":"old"}`, 400, `"/age"`},
		{"unknown field", "POST", "/api/customers", `{"name":"Ada","email":"ada@example.com","admin":true}`, 400, "admin"},
		{"query too big", "GET", "/api/customers?limit=1000", "", 400, `query parameter "limit"`},
		{"path param type", "GET", "/api/customers/abc", "", 400, `path parameter "id"`},
		{"unknown path", "GET", "/api/orders", "", 404, "no operation"},
		{"unknown method", "DELETE", "/api/customers", "", 405, "DELETE"},
	}
	for _, mode := range []string{ModeEnforce, ModeReport} {
		for _, tt := range tests {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				var logs bytes.Buffer
				auditPath := filepath.Join(t.TempDir(), "audit.log")
				al, err := audit.New(audit.Config{Path: auditPath}, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer al.Close()
				m := metrics.New()
				v, err := New("customers", Config{OpenAPI: "testdata/customers.yaml", OpenAPIMode: mode},
					Deps{Metrics: m, Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Audit: al})
				if err != nil {
					t.Fatal(err)
				}
				up := &upstream{}
				var body io.Reader
				if tt.body != "" {
					body = strings.NewReader(tt.body)
				}
				r := httptest.NewRequest(tt.method, tt.target, body)
				if tt.body != "" {
					r.Header.Set("Content-Type", "application/json")
				}
				w := httptest.NewRecorder()
				v.Wrap(up).ServeHTTP(w, r)
				want := tt.enforce
				if mode == ModeReport {
					want = 204
				}
				if w.Code != want {
					t.Fatalf("status %d, want %d: %s", w.Code, want, w.Body)
				}
				if want == 204 {
					if up.calls != 1 || string(up.body) != tt.body {
						t.Fatalf("upstream calls %d body %q", up.calls, up.body)
					}
				} else {
					if up.calls != 0 {
						t.Fatal("upstream called on rejection")
					}
					var p problem.Problem
					if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
						t.Fatal(err)
					}
					if !strings.Contains(p.Detail, tt.detail) {
						t.Errorf("detail %q does not name %q", p.Detail, tt.detail)
					}
					if strings.Contains(p.Detail, "old") || strings.Contains(p.Detail, "1000") || strings.Contains(p.Detail, "abc") {
						t.Errorf("detail %q echoes the offending value", p.Detail)
					}
				}
				violation := tt.enforce != 204
				reported := counterValue(m.PolicyDenials.WithLabelValues("customers", "validate_openapi_report"))
				if mode == ModeReport {
					if violation != (reported == 1) {
						t.Errorf("report counter %v for violation=%v", reported, violation)
					}
					if violation != strings.Contains(logs.String(), "report mode") {
						t.Errorf("log %q for violation=%v", logs.String(), violation)
					}
					if data, _ := os.ReadFile(auditPath); len(data) != 0 {
						t.Errorf("report mode wrote to the audit log: %q", data)
					}
				} else if reported != 0 {
					t.Errorf("enforce mode counted a report")
				}
			})
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"", 0, false}, {"512", 512, false}, {"512B", 512, false}, {"16KiB", 16384, false},
		{"1MiB", 1 << 20, false}, {"2GiB", 2 << 30, false}, {"10KB", 10000, false}, {"1 MB", 1000000, false},
		{"1.5MiB", 0, true}, {"-1", 0, true}, {"+1", 0, true}, {"MiB", 0, true}, {"1TiB", 0, true},
		{"99999999999999999999", 0, true}, {"9999999999999GiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v", tt.in, got, err)
			}
		})
	}
}
