// Package problem writes RFC 9457 problem details (application/problem+json).
// Every error response of the engine and the admin API is formed here, so none
// leaks internals: callers pass a fixed title and a detail meant for clients.
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// Error lets a Problem travel as an error.
func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Title + ": " + p.Detail
	}
	return p.Title
}

// New returns a problem of status with the standard title for it when title
// is empty.
func New(status int, title, detail string) *Problem {
	if title == "" {
		title = http.StatusText(status)
	}
	return &Problem{Type: "about:blank", Title: title, Status: status, Detail: detail}
}

// Write sends p. Headers already set on w (WWW-Authenticate, Retry-After) are
// kept; Content-Length is set so keep-alive clients need no chunking.
func Write(w http.ResponseWriter, p *Problem) {
	b, err := json.Marshal(p)
	if err != nil { // cannot happen with these field types
		b = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		p.Status = http.StatusInternalServerError
	}
	b = append(b, '\n')
	h := w.Header()
	h.Del("Content-Encoding")
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	w.Write(b)
}

// Error writes a problem of status with the given detail, tagged with the
// request id when the request carries one in X-Request-Id.
func Error(w http.ResponseWriter, r *http.Request, status int, detail string) {
	p := New(status, "", detail)
	if r != nil {
		p.RequestID = r.Header.Get("X-Request-Id")
	}
	Write(w, p)
}
