package demoapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func luhn(s string) bool {
	sum, n := 0, 0
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c == ' ' || c == '-' {
			continue
		}
		d := int(c - '0')
		if n%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		n++
	}
	return n >= 13 && sum%10 == 0
}

func TestCustomersCarrySensitiveLookingData(t *testing.T) {
	for _, c := range Customers() {
		if !luhn(c.Card) {
			t.Errorf("%s: card %q is not Luhn-valid", c.ID, c.Card)
		}
		if !strings.Contains(c.Email, "@") || len(c.NationalID) != 11 {
			t.Errorf("%s: bad email or national id", c.ID)
		}
	}
}

func TestHandler(t *testing.T) {
	h := Handler()
	tests := []struct {
		method, path, body string
		want               int
		contains           string
	}{
		{"GET", "/api/customers", "", 200, `"count":20`},
		{"GET", "/api/customers/c-1002", "", 200, `"id":"c-1002"`},
		{"GET", "/api/customers/c-9999", "", 404, "no such customer"},
		{"POST", "/api/echo", `{"a":1}`, 200, `{"a":1}`},
		{"DELETE", "/api/customers", "", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body)))
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d", rec.Code, tt.want)
			}
			if !strings.Contains(rec.Body.String(), tt.contains) {
				t.Fatalf("body %q lacks %q", rec.Body.String(), tt.contains)
			}
			if tt.want == 200 && tt.method == "GET" && !json.Valid(rec.Body.Bytes()) {
				t.Fatal("invalid JSON")
			}
		})
	}
	_ = http.StatusOK
}
