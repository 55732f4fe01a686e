package appliance

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

var smallJSON = `{"id":"c-1001","name":"Ada Lovelace","plan":"team","items":[` + strings.TrimSuffix(strings.Repeat(`{"sku":"A-1","qty":1,"price":"9.99"},`, 24), ",") + `]}`

// BenchmarkProxy measures one small JSON API call through TLS and the
// engine's proxy path to a loopback upstream, over keep-alive connections.
func BenchmarkProxy(b *testing.B) {
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(smallJSON)))
		io.WriteString(w, smallJSON)
	})
	for _, proto := range []struct {
		name string
		h2   bool
	}{{"TLS+h1", false}, {"TLS+h2", true}} {
		b.Run(proto.name, func(b *testing.B) {
			f := newFixture(b, up, nil)
			c := f.client(proto.h2)
			url := f.url("/api/customers")
			b.ReportAllocs()
			b.SetBytes(int64(len(smallJSON)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
