// Package validate owns per-route input validation: allowed methods and
// content types, query and header limits, JSON well-formedness with size and
// depth limits, and OpenAPI 3 request validation. A request that fails is
// answered with a problem+json error before the upstream sees a byte of it.
// It knows nothing of authentication, the WAF or DLP.
//
// Configured per route:
//
//	[route.validate]
//	methods          = ["GET", "POST"]
//	content_types    = ["application/json"]
//	max_json_depth   = 32
//	max_json_size    = "1MiB"
//	max_query_params = 50
//	max_query_length = 2048
//	max_header_count = 64
//	max_header_bytes = "16KiB"
//	openapi          = "/etc/sealgate/customers.yaml"
//	openapi_mode     = "enforce" # or "report"
//
// Statuses: 405 (method, with Allow), 415 (content type), 413 (JSON size),
// 400 (malformed or too deep JSON, too many query parameters, OpenAPI
// violation), 414 (query length), 431 (header count or bytes), 404/405 for
// paths and methods the OpenAPI description does not define.
package validate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/sealgate/sealgate/appliance/audit"
	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/appliance/problem"
	"github.com/sealgate/sealgate/appliance/reqctx"
)

// DefaultMaxJSONSize bounds the buffered body when a JSON depth limit or an
// OpenAPI description is configured without max_json_size.
const DefaultMaxJSONSize = 1 << 20

// OpenAPI modes.
const (
	ModeReport  = "report"  // log and count violations, pass the request
	ModeEnforce = "enforce" // answer violations with a problem+json error
)

// Config is a route's [route.validate] table. The zero value checks nothing.
type Config struct {
	// Methods lists the allowed request methods; others get 405 with Allow.
	Methods []string `toml:"methods"`
	// ContentTypes lists the media types a request body may have
	// ("application/json", "text/*"); others get 415. Requests without a
	// body are not checked.
	ContentTypes []string `toml:"content_types"`
	// MaxJSONDepth is the deepest allowed object/array nesting of a JSON
	// body; deeper gets 400.
	MaxJSONDepth int `toml:"max_json_depth"`
	// MaxJSONSize bounds a JSON body ("1MiB"); larger gets 413. JSON bodies
	// are buffered up to this size so they can be checked before the
	// upstream gets anything. With openapi set it bounds every body.
	MaxJSONSize string `toml:"max_json_size"`
	// MaxQueryParams bounds the number of query parameters; more gets 400.
	MaxQueryParams int `toml:"max_query_params"`
	// MaxQueryLength bounds the raw query string in bytes; longer gets 414.
	MaxQueryLength int `toml:"max_query_length"`
	// MaxHeaderCount bounds the number of request header lines; more gets 431.
	MaxHeaderCount int `toml:"max_header_count"`
	// MaxHeaderBytes bounds the total size of request header names and
	// values ("16KiB"); more gets 431.
	MaxHeaderBytes string `toml:"max_header_bytes"`
	// OpenAPI is the path of an OpenAPI 3 description (YAML or JSON) that
	// requests are validated against.
	OpenAPI string `toml:"openapi"`
	// OpenAPIMode is "enforce" (default when openapi is set) or "report".
	OpenAPIMode string `toml:"openapi_mode"`
}

// Deps are the validator's collaborators; all are optional.
type Deps struct {
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Audit is accepted so every stage is wired alike; validation writes no
	// audit events (a rejected request is a counted policy denial, and
	// denials above a threshold are audited by the policy stage).
	Audit *audit.Log
}

// Validator enforces one route's Config.
type Validator struct {
	route        string
	methods      []string
	allow        string // Allow header value
	contentTypes []string
	maxDepth     int
	maxBody      int64
	maxParams    int
	maxQuery     int
	maxHdrCount  int
	maxHdrBytes  int64
	spec         *spec
	enforce      bool

	metrics *metrics.Metrics
	logger  *slog.Logger
	enabled bool
}

// New validates cfg and returns the route's validator. Errors name the field,
// e.g. "route[orders].validate.max_json_depth: must be > 0".
func New(route string, cfg Config, deps Deps) (*Validator, error) {
	field := func(name string) string { return fmt.Sprintf("route[%s].validate.%s", route, name) }
	v := &Validator{route: route, metrics: deps.Metrics}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	v.logger = deps.Logger.With("component", "validate", "route", route)

	for i, m := range cfg.Methods {
		if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/") {
			return nil, fmt.Errorf("%s[%d]: %q is not an upper-case HTTP method", field("methods"), i, m)
		}
		if !slices.Contains(v.methods, m) {
			v.methods = append(v.methods, m)
		}
	}
	v.allow = strings.Join(v.methods, ", ")
	for i, ct := range cfg.ContentTypes {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !strings.Contains(mt, "/") || strings.HasPrefix(mt, "*") {
			return nil, fmt.Errorf("%s[%d]: %q is not a media type like application/json or text/*", field("content_types"), i, ct)
		}
		v.contentTypes = append(v.contentTypes, mt)
	}
	ints := []struct {
		name string
		val  int
		dst  *int
	}{
		{"max_json_depth", cfg.MaxJSONDepth, &v.maxDepth},
		{"max_query_params", cfg.MaxQueryParams, &v.maxParams},
		{"max_query_length", cfg.MaxQueryLength, &v.maxQuery},
		{"max_header_count", cfg.MaxHeaderCount, &v.maxHdrCount},
	}
	for _, f := range ints {
		if f.val < 0 {
			return nil, fmt.Errorf("%s: must be > 0 (or absent for no limit), got %d", field(f.name), f.val)
		}
		*f.dst = f.val
	}
	var err error
	if v.maxBody, err = ParseSize(cfg.MaxJSONSize); err != nil {
		return nil, fmt.Errorf("%s: %w", field("max_json_size"), err)
	}
	if cfg.MaxJSONSize != "" && v.maxBody == 0 {
		return nil, fmt.Errorf("%s: must be > 0", field("max_json_size"))
	}
	if v.maxHdrBytes, err = ParseSize(cfg.MaxHeaderBytes); err != nil {
		return nil, fmt.Errorf("%s: %w", field("max_header_bytes"), err)
	}
	if cfg.MaxHeaderBytes != "" && v.maxHdrBytes == 0 {
		return nil, fmt.Errorf("%s: must be > 0", field("max_header_bytes"))
	}
	switch cfg.OpenAPIMode {
	case "", ModeEnforce, ModeReport:
	default:
		return nil, fmt.Errorf("%s: %q is not report or enforce", field("openapi_mode"), cfg.OpenAPIMode)
	}
	if cfg.OpenAPI != "" {
		if v.spec, err = loadSpec(cfg.OpenAPI); err != nil {
			return nil, fmt.Errorf("%s: %w", field("openapi"), err)
		}
		v.enforce = cfg.OpenAPIMode != ModeReport
	} else if cfg.OpenAPIMode != "" {
		return nil, fmt.Errorf("%s: set without openapi", field("openapi_mode"))
	}
	if v.maxBody == 0 && (v.maxDepth > 0 || v.spec != nil) {
		v.maxBody = DefaultMaxJSONSize
	}
	v.enabled = len(v.methods) > 0 || len(v.contentTypes) > 0 || v.maxDepth > 0 || v.maxBody > 0 ||
		v.maxParams > 0 || v.maxQuery > 0 || v.maxHdrCount > 0 || v.maxHdrBytes > 0 || v.spec != nil
	return v, nil
}

// rejection is a failed check: the status, the client-facing detail and the
// bounded reason label for metrics and the access log.
type rejection struct {
	status int
	reason string
	detail string
}

// Wrap returns next behind the route's checks. With a zero Config it returns
// next itself.
func (v *Validator) Wrap(next http.Handler) http.Handler {
	if v == nil || !v.enabled {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rej := v.checkHead(r); rej != nil {
			v.reject(w, r, rej)
			return
		}
		if rej := v.checkBody(r); rej != nil {
			v.reject(w, r, rej)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkHead runs the checks that need no body.
func (v *Validator) checkHead(r *http.Request) *rejection {
	if len(v.methods) > 0 && !slices.Contains(v.methods, r.Method) {
		return &rejection{http.StatusMethodNotAllowed, "method", "method " + r.Method + " is not allowed on this route"}
	}
	if v.maxHdrCount > 0 || v.maxHdrBytes > 0 {
		count, size := 0, int64(0)
		for k, vals := range r.Header {
			count += len(vals)
			for _, val := range vals {
				size += int64(len(k) + len(val) + 4) // "k: v\r\n"
			}
		}
		if v.maxHdrCount > 0 && count > v.maxHdrCount {
			return &rejection{http.StatusRequestHeaderFieldsTooLarge, "header_count",
				fmt.Sprintf("%d header fields, at most %d allowed", count, v.maxHdrCount)}
		}
		if v.maxHdrBytes > 0 && size > v.maxHdrBytes {
			return &rejection{http.StatusRequestHeaderFieldsTooLarge, "header_bytes",
				fmt.Sprintf("header fields total %d bytes, at most %d allowed", size, v.maxHdrBytes)}
		}
	}
	if v.maxQuery > 0 && len(r.URL.RawQuery) > v.maxQuery {
		return &rejection{http.StatusRequestURITooLong, "query_length",
			fmt.Sprintf("query string of %d bytes, at most %d allowed", len(r.URL.RawQuery), v.maxQuery)}
	}
	if v.maxParams > 0 {
		if n := countParams(r.URL.RawQuery); n > v.maxParams {
			return &rejection{http.StatusBadRequest, "query_params",
				fmt.Sprintf("%d query parameters, at most %d allowed", n, v.maxParams)}
		}
	}
	if len(v.contentTypes) > 0 && hasBody(r) {
		if mt := mediaType(r.Header.Get("Content-Type")); !v.contentTypeAllowed(mt) {
			return &rejection{http.StatusUnsupportedMediaType, "content_type",
				"request body media type is not accepted here; use one of: " + strings.Join(v.contentTypes, ", ")}
		}
	}
	return nil
}

// countParams counts non-empty &-separated fields, as url.ParseQuery would,
// without allocating.
func countParams(q string) int {
	n := 0
	for q != "" {
		var field string
		field, q, _ = strings.Cut(q, "&")
		if field != "" {
			n++
		}
	}
	return n
}

// mediaType returns the lower-cased type/subtype of a Content-Type value, or
// "" when it has none. Parameters are ignored, so no allocation is needed.
func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || typ == "" || sub == "" || strings.ContainsAny(mt, " \t\",()<>@:[]?={}\\") || strings.Count(mt, "/") != 1 {
		return ""
	}
	for i := 0; i < len(mt); i++ {
		if 'A' <= mt[i] && mt[i] <= 'Z' {
			return strings.ToLower(mt)
		}
	}
	return mt
}

func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

func (v *Validator) contentTypeAllowed(mt string) bool {
	for _, ct := range v.contentTypes {
		if ct == mt {
			return true
		}
		if prefix, ok := strings.CutSuffix(ct, "/*"); ok && strings.HasPrefix(mt, prefix+"/") {
			return true
		}
	}
	return false
}

func isJSON(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// checkBody buffers a JSON body (or any body the OpenAPI description must
// see) up to the size limit, checks it, and leaves r.Body replaying the exact
// bytes read.
func (v *Validator) checkBody(r *http.Request) *rejection {
	if v.maxBody == 0 && v.spec == nil {
		return nil
	}
	var body []byte
	if hasBody(r) {
		jsonBody := isJSON(mediaType(r.Header.Get("Content-Type")))
		if jsonBody || v.spec != nil {
			var rej *rejection
			if body, rej = v.buffer(r); rej != nil {
				return rej
			}
			if jsonBody && len(body) > 0 {
				switch checkJSON(body, v.maxDepth) {
				case jsonTooDeep:
					return &rejection{http.StatusBadRequest, "json_depth",
						fmt.Sprintf("JSON body nested deeper than %d levels", v.maxDepth)}
				case jsonMalformed:
					return &rejection{http.StatusBadRequest, "json_syntax", "request body is not well-formed JSON"}
				}
			}
		}
	}
	if v.spec != nil {
		if rej := v.checkSpec(r, body); rej != nil {
			if v.enforce {
				return rej
			}
			v.report(r, rej)
		}
	}
	return nil
}

// buffer reads the body up to maxBody bytes and replaces r.Body with a reader
// over exactly those bytes.
func (v *Validator) buffer(r *http.Request) ([]byte, *rejection) {
	tooLarge := func() *rejection {
		return &rejection{http.StatusRequestEntityTooLarge, "json_size",
			fmt.Sprintf("request body larger than %d bytes", v.maxBody)}
	}
	if r.ContentLength > v.maxBody {
		return nil, tooLarge()
	}
	body, err := readAtMost(r.Body, v.maxBody, r.ContentLength)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge()
		}
		return nil, &rejection{http.StatusBadRequest, "body_read", "request body could not be read completely"}
	}
	if int64(len(body)) > v.maxBody {
		return nil, tooLarge()
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if r.ContentLength != int64(len(body)) {
		// It was chunked (or lied); the upstream gets an exact length.
		r.ContentLength = int64(len(body))
		r.TransferEncoding = nil
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	return body, nil
}

// readAtMost reads r to EOF or until more than limit bytes arrived (then it
// returns limit+1 bytes). hint is the announced length, or -1.
func readAtMost(r io.Reader, limit, hint int64) ([]byte, error) {
	size := hint + 1 // +1: room to see EOF without growing
	if hint < 0 || hint > limit {
		size = min(limit+1, 4096)
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grow
		}
		want := min(int64(cap(buf)), limit+1)
		n, err := r.Read(buf[len(buf):want])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf, nil
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (v *Validator) reject(w http.ResponseWriter, r *http.Request, rej *rejection) {
	if v.metrics != nil {
		v.metrics.PolicyDenials.WithLabelValues(v.route, "validate_"+rej.reason).Inc()
	}
	if info := reqctx.From(r.Context()); info != nil {
		info.SetDecision("deny", "validate:"+rej.reason)
	}
	v.logger.Info("request rejected by validation", "reason", rej.reason, "status", rej.status,
		"method", r.Method, "path", r.URL.Path)
	if rej.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", v.allow)
	}
	problem.Error(w, r, rej.status, rej.detail)
}

// report records an OpenAPI violation in report mode: logged and counted
// under the reason "validate_openapi_report"; the request passes. It is not
// audited: a schema mismatch being trialled is not a security event, and a
// busy route would flood the audit log.
func (v *Validator) report(r *http.Request, rej *rejection) {
	if v.metrics != nil {
		v.metrics.PolicyDenials.WithLabelValues(v.route, "validate_openapi_report").Inc()
	}
	if info := reqctx.From(r.Context()); info != nil {
		info.SetNote("openapi", rej.reason)
	}
	v.logger.Warn("request violates the OpenAPI description (report mode, passed)",
		"reason", rej.reason, "detail", rej.detail, "method", r.Method, "path", r.URL.Path)
}
