package appliance

import (
	"net/http"
	"testing"
)

func TestRequestIDReachesUpstream(t *testing.T) {
	f := newFixture(t, nil, nil)
	c := f.client(false)
	for _, tt := range []struct {
		name   string
		header http.Header
	}{
		{"plain", http.Header{}},
		{"client id is replaced", http.Header{"X-Request-Id": {"spoofed"}}},
		{"id named hop-by-hop by the client", http.Header{"Connection": {"X-Request-Id"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", f.url("/api/x"), nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			id := resp.Header.Get("X-Request-Id")
			if id == "" || id == "spoofed" {
				t.Fatalf("response X-Request-Id = %q, want an engine id", id)
			}
			up := f.lastReq.Load()
			if got := up.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != id {
				t.Errorf("upstream saw X-Request-Id %q, want [%q]", got, id)
			}
		})
	}
}
