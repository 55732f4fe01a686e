package validate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// spec is a loaded OpenAPI description and its router.
type spec struct {
	router routers.Router
	opts   *openapi3filter.Options
}

// loadSpec reads and validates an OpenAPI 3 description. External references
// are refused: loading must never reach the network. Server URLs are reduced
// to their path, since the engine's route, not the spec, decides which host
// the request came in on (servers of single path items are not used).
func loadSpec(path string) (*spec, error) {
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading OpenAPI description: %w", err)
	}
	stripServerHosts(doc.Servers)
	router, err := legacy.NewRouter(doc)
	if err != nil { // includes the description's own validation
		return nil, fmt.Errorf("OpenAPI description %s: %w", path, err)
	}
	return &spec{
		router: router,
		opts: &openapi3filter.Options{
			AuthenticationFunc:  openapi3filter.NoopAuthenticationFunc, // authentication is the access-control stage's job
			SkipSettingDefaults: true,                                  // never rewrite the request the upstream gets
		},
	}, nil
}

func stripServerHosts(servers openapi3.Servers) {
	for _, s := range servers {
		u := s.URL
		if _, rest, ok := strings.Cut(u, "://"); ok {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				u = rest[i:]
			} else {
				u = "/"
			}
		}
		s.URL = u
	}
}

// checkSpec validates r (whose body, already buffered, is body) against the
// description. Details name the parameter or body field and the schema rule,
// never the offending value.
func (v *Validator) checkSpec(r *http.Request, body []byte) *rejection {
	rc := *r // shallow: the validator reads the body, which must stay intact for the upstream
	rc.Body = http.NoBody
	if body != nil {
		rc.Body = io.NopCloser(bytes.NewReader(body))
	}
	route, params, err := v.spec.router.FindRoute(&rc)
	var routeErr *routers.RouteError
	switch {
	case errors.As(err, &routeErr) && routeErr.Reason == routers.ErrMethodNotAllowed.Error():
		return &rejection{http.StatusMethodNotAllowed, "openapi", "the API description defines no " + r.Method + " operation for this path"}
	case err != nil:
		return &rejection{http.StatusNotFound, "openapi", "the API description defines no operation for this path"}
	}
	err = openapi3filter.ValidateRequest(r.Context(), &openapi3filter.RequestValidationInput{
		Request: &rc, PathParams: params, Route: route, Options: v.spec.opts,
	})
	if err == nil {
		return nil
	}
	return &rejection{http.StatusBadRequest, "openapi", describe(err)}
}

// describe turns a kin-openapi error into a client-facing detail. Only
// parameter names, body field pointers and schema reasons (which kin-openapi
// documents as never containing the value) are used.
func describe(err error) string {
	var reqErr *openapi3filter.RequestError
	if !errors.As(err, &reqErr) {
		return "request does not match the API description"
	}
	reason := "invalid value"
	var schemaErr *openapi3.SchemaError
	switch {
	case errors.As(reqErr.Err, &schemaErr):
		reason = schemaErr.Reason
		if ptr := schemaErr.JSONPointer(); len(ptr) > 0 && reqErr.Parameter == nil {
			return fmt.Sprintf("request body field %q: %s", "/"+strings.Join(escapePointer(ptr), "/"), reason)
		}
	case errors.Is(reqErr.Err, openapi3filter.ErrInvalidRequired):
		reason = "value is required but missing"
	case errors.Is(reqErr.Err, openapi3filter.ErrInvalidEmptyValue):
		reason = "empty value is not allowed"
	case reqErr.Parameter == nil && reqErr.RequestBody != nil && reqErr.Err == nil && reqErr.Reason != "":
		reason = reqErr.Reason // e.g. "header Content-Type has unexpected value", "value is required but missing"
	}
	if p := reqErr.Parameter; p != nil {
		return fmt.Sprintf("%s parameter %q: %s", p.In, p.Name, reason)
	}
	if reqErr.RequestBody != nil {
		return "request body: " + reason
	}
	return "request does not match the API description"
}

func escapePointer(ptr []string) []string {
	out := make([]string, len(ptr))
	for i, p := range ptr {
		out[i] = url.PathEscape(strings.NewReplacer("~", "~0", "/", "~1").Replace(p))
	}
	return out
}
