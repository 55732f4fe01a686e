package client

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/appliance/sealing"
)

// BenchmarkRoundTrip compares a sealed and a plain GET of a JSON response
// through the same in-process TLS server (HTTP/2), in one run:
//
//	go test ./client -run '^$' -bench RoundTrip
func BenchmarkRoundTrip(b *testing.B) {
	ep, err := sealing.New(sealing.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer ep.Close()
	docs := map[int][]byte{}
	for _, n := range []int{1 << 10, 1 << 20} {
		var sb strings.Builder
		sb.WriteString(`{"customers":[`)
		for i := 0; sb.Len() < n-64; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(`{"id":` + strconv.Itoa(i) + `,"name":"Ada Lovelace","iban":"GB33BUKB20201555555555"}`)
		}
		sb.WriteString("]}")
		docs[n] = []byte(sb.String())
	}
	router := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "application/json")
		w.Write(docs[n])
	})
	srv := httptest.NewUnstartedServer(ep.Handler(router))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	plain := srv.Client()
	sealed := &http.Client{Transport: New(srv.Client().Transport)}
	for _, n := range []int{1 << 10, 1 << 20} {
		url := srv.URL + "/api/customers?n=" + strconv.Itoa(n)
		for _, c := range []struct {
			name string
			hc   *http.Client
		}{{"plain", plain}, {"sealed", sealed}} {
			b.Run(strconv.Itoa(n>>10)+"KiB/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(docs[n])))
				b.ReportAllocs()
				for b.Loop() {
					resp, err := c.hc.Get(url)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, resp.Body); err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
				}
			})
		}
	}
}
