// Package demoapi is the built-in sample upstream of `sealgate demo`: a small
// JSON API serving fake customer records that carry the kinds of data sealgate
// protects (names, emails, phone numbers, Luhn-valid test card numbers,
// national id numbers), so a newcomer sees realistic traffic. All data is
// invented; the card numbers are the networks' published test numbers.
package demoapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// Customer is one fake record.
type Customer struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Email      string `json:"email"`
	Phone      string `json:"phone"`
	Card       string `json:"card"`
	NationalID string `json:"national_id"`
	Plan       string `json:"plan"`
	Balance    string `json:"balance"`
	CreatedAt  string `json:"created_at"`
}

// Test card numbers published by the card networks (all Luhn-valid).
var testCards = []string{
	"4111 1111 1111 1111", "5555555555554444", "4012-8888-8888-1881", "378282246310005",
	"6011111111111117", "5105105105105100", "4242424242424242", "3530111333300000",
}

// Synthetic SSNs in valid ranges (area not 000/666/9xx, group and serial not zero).
var testSSNs = []string{"123-45-6789", "219-09-9999", "078-05-1120", "457-55-5462", "512-34-5678"}

var firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Leslie"}
var lastNames = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Lamport"}

// Customers returns the fixed demo data set: ids c-1001 … c-1020.
func Customers() []Customer {
	out := make([]Customer, 20)
	for i := range out {
		first, last := firstNames[i%len(firstNames)], lastNames[(i*3)%len(lastNames)]
		out[i] = Customer{
			ID:         fmt.Sprintf("c-%d", 1001+i),
			Name:       first + " " + last,
			Email:      fmt.Sprintf("%s.%s@example.com", lower(first), lower(last)),
			Phone:      fmt.Sprintf("+1415555%04d", 100+i*7),
			Card:       testCards[i%len(testCards)],
			NationalID: testSSNs[i%len(testSSNs)],
			Plan:       []string{"free", "team", "enterprise"}[i%3],
			Balance:    strconv.FormatFloat(float64(i*1375%10000)/100, 'f', 2, 64),
			CreatedAt:  fmt.Sprintf("2025-%02d-%02dT10:%02d:00Z", 1+i%12, 1+i%28, i%60),
		}
	}
	return out
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// Handler returns the demo API:
//
//	GET  /api/customers       all records
//	GET  /api/customers/{id}  one record, 404 problem if unknown
//	POST /api/echo            echoes the JSON body it is sent (up to 1 MiB)
//	GET  /healthz             "ok"
func Handler() http.Handler {
	customers := Customers()
	byID := make(map[string]Customer, len(customers))
	for _, c := range customers {
		byID[c.ID] = c
	}
	list, _ := json.Marshal(map[string]any{"customers": customers, "count": len(customers)})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/customers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("GET /api/customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := byID[r.PathValue("id")]
		if !ok {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"type":"about:blank","title":"Not Found","status":404,"detail":"no such customer"}`+"\n")
			return
		}
		b, _ := json.Marshal(c)
		writeJSON(w, http.StatusOK, b)
	})
	mux.HandleFunc("POST /api/echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(b)
	w.Write([]byte{'\n'})
}
