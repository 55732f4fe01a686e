package dlp

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var genCorpus = flag.Bool("gen-corpus", false, "regenerate testdata/clean/gen-*.json from fixed seeds")

// TestGenerateCorpus writes the generated part of the clean corpus. The
// files are committed; run with -gen-corpus only to change the generator.
// Values are drawn from the distributions real APIs use (epoch times,
// auto-increment and snowflake ids, UUIDs, hex digests, EAN/ISBN codes with
// their own check digits, coordinates), never filtered against the
// detectors.
func TestGenerateCorpus(t *testing.T) {
	if !*genCorpus {
		t.Skip("run with -gen-corpus to regenerate testdata/clean/gen-*.json")
	}
	gens := map[string]func(*rand.Rand) any{
		"users": genUsers, "orders": genOrders, "events": genEvents, "metrics": genMetrics,
		"catalog": genCatalog, "geo": genGeo, "k8s": genK8s, "payments": genPayments, "repos": genRepos,
	}
	for name, g := range gens {
		r := rand.New(rand.NewPCG(uint64(len(name)), 0x5ea1))
		var docs []byte
		if name == "events" {
			// NDJSON
			for _, ev := range g(r).([]any) {
				b, _ := json.Marshal(ev)
				docs = append(docs, b...)
				docs = append(docs, '\n')
			}
		} else {
			b, err := json.MarshalIndent(g(r), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			docs = b
		}
		ext := ".json"
		if name == "events" {
			ext = ".ndjson"
		}
		if err := os.WriteFile(filepath.Join("testdata", "clean", "gen-"+name+ext), docs, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	firstNames = strings.Fields("ada grace linus margaret ken barbara dennis frances alan edsger john radia tim vint whitfield sophie yuki amara mateo chen")
	lastNames  = strings.Fields("lovelace hopper torvalds hamilton thompson liskov ritchie allen turing dijkstra mccarthy perlman berners-lee cerf diffie wilson tanaka okafor garcia wei")
	cities     = strings.Fields("Berlin Lisbon Nairobi Osaka Toronto Lima Oslo Austin Dublin Pune Seoul Lyon")
	wordsList  = strings.Fields("shipped pending refunded delivered cancelled backorder express standard priority gift wrapped fragile returned")
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func uuid4(r *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func hexN(r *rand.Rand, n int) string {
	b := make([]byte, (n+1)/2)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return hex.EncodeToString(b)[:n]
}

func ts(r *rand.Rand) time.Time {
	return time.Unix(1577836800+r.Int64N(220000000), r.Int64N(1e9)).UTC()
}

// snowflake is a Twitter/Discord-style id minted between 2020 and 2026.
func snowflake(r *rand.Rand) int64 {
	ms := 1577836800000 + r.Int64N(220000000000) - 1288834974657
	return ms<<22 | r.Int64N(1<<22)
}

// ean13 returns a valid EAN-13 with the given prefix (GS1 check digit).
func ean13(r *rand.Rand, prefix string) string {
	d := []byte(prefix)
	for len(d) < 12 {
		d = append(d, byte('0'+r.IntN(10)))
	}
	sum := 0
	for i, c := range d {
		w := 1
		if i%2 == 1 {
			w = 3
		}
		sum += int(c-'0') * w
	}
	return string(append(d, byte('0'+(10-sum%10)%10)))
}

func isbn10(r *rand.Rand) string {
	d := make([]byte, 9)
	sum := 0
	for i := range d {
		d[i] = byte('0' + r.IntN(10))
		sum += (10 - i) * int(d[i]-'0')
	}
	c := (11 - sum%11) % 11
	check := byte('0' + c)
	if c == 10 {
		check = 'X'
	}
	return fmt.Sprintf("%s-%s-%s-%c", d[:1], d[1:4], d[4:9], check)
}

func ipv4(r *rand.Rand) string {
	return fmt.Sprintf("%d.%d.%d.%d", 1+r.IntN(223), r.IntN(256), r.IntN(256), 1+r.IntN(254))
}

func ipv6(r *rand.Rand) string {
	return fmt.Sprintf("2001:db8:%x:%x::%x", r.IntN(65536), r.IntN(65536), 1+r.IntN(65535))
}

func b64(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return base64.StdEncoding.EncodeToString(b)
}

func genUsers(r *rand.Rand) any {
	var out []any
	for i := 0; i < 300; i++ {
		fn, ln := pick(r, firstNames), pick(r, lastNames)
		created := ts(r)
		out = append(out, map[string]any{
			"id": 1000 + i, "uuid": uuid4(r), "username": fmt.Sprintf("%s%s%d", fn[:1], ln, r.IntN(100)),
			"display_name": strings.ToUpper(fn[:1]) + fn[1:] + " " + strings.ToUpper(ln[:1]) + ln[1:],
			"created_at":   created.Format(time.RFC3339), "created_at_local": created.In(time.FixedZone("", (r.IntN(27)-12)*3600)).Format(time.RFC3339Nano),
			"last_login": created.Unix() + r.Int64N(1e7), "last_seen_ms": created.UnixMilli() + r.Int64N(1e10),
			"avatar": fmt.Sprintf("https://cdn.example.net/avatars/%d/avatar@2x.png", 1000+i),
			"locale": pick(r, []string{"de-DE", "en-US", "pt-PT", "ja-JP", "fr-CA"}), "timezone": pick(r, []string{"Europe/Berlin", "America/Toronto", "Asia/Tokyo", "Africa/Nairobi"}),
			"bio":       fmt.Sprintf("Building things in %s. Ping @%s%s for reviews; v%d.%d.%d released.", pick(r, cities), fn, ln[:2], r.IntN(4), r.IntN(20), r.IntN(30)),
			"followers": r.IntN(50000), "karma": r.Float64() * 1000, "snowflake": snowflake(r), "flags": r.IntN(1 << 16),
			"home": map[string]any{"city": pick(r, cities), "postal_code": fmt.Sprintf("%05d", r.IntN(100000)), "lat": r.Float64()*180 - 90, "lng": r.Float64()*360 - 180},
		})
	}
	return map[string]any{"users": out, "page": 1, "per_page": 300, "next_cursor": base64.StdEncoding.EncodeToString([]byte(`{"after":1300,"order":"id"}`))}
}

func genOrders(r *rand.Rand) any {
	var out []any
	for i := 0; i < 250; i++ {
		var items []any
		for k := 0; k < 1+r.IntN(4); k++ {
			price := 99 + r.IntN(50000)
			items = append(items, map[string]any{
				"sku":  fmt.Sprintf("SKU-%05d-%s-%s", r.IntN(100000), pick(r, []string{"BLK", "WHT", "RED"}), pick(r, []string{"S", "M", "L", "XL"})),
				"gtin": ean13(r, pick(r, []string{"400", "401", "412", "440", "50", "30", "34", "76", "87", "978"})),
				"upc":  ean13(r, "0")[1:], "qty": 1 + r.IntN(5), "unit_price": fmt.Sprintf("%d.%02d", price/100, price%100), "unit_price_cents": price,
			})
		}
		created := ts(r)
		out = append(out, map[string]any{
			"order_id": fmt.Sprintf("ORD-%d-%06d", created.Year(), r.IntN(1000000)), "order_number": fmt.Sprintf("%03d-%07d-%07d", r.IntN(1000), r.IntN(10000000), r.IntN(10000000)),
			"reference": fmt.Sprintf("%04d-%04d-%04d", r.IntN(10000), r.IntN(10000), r.IntN(10000)), "hotline_ref": fmt.Sprintf("1-800-%03d-%04d", r.IntN(1000), r.IntN(10000)),
			"status": pick(r, wordsList), "items": items, "currency": pick(r, []string{"EUR", "USD", "GBP", "JPY"}),
			"total": fmt.Sprintf("%d.%02d", r.IntN(2000), r.IntN(100)), "tax_rate": 0.19, "discount": fmt.Sprintf("-%d%%", r.IntN(30)),
			"tracking":   map[string]any{"carrier": "UPS", "number": fmt.Sprintf("1Z%03dAA1%08d", r.IntN(1000), r.IntN(100000000))},
			"usps":       fmt.Sprintf("9400 1%03d %04d %04d %04d %04d %02d", r.IntN(1000), r.IntN(10000), r.IntN(10000), r.IntN(10000), r.IntN(10000), r.IntN(100)),
			"created_at": created.Format(time.RFC3339Nano), "eta_days": r.IntN(14), "change": fmt.Sprintf("+%d.%d%%", r.IntN(50), r.IntN(10)),
		})
	}
	return map[string]any{"orders": out, "total_count": 250}
}

func genEvents(r *rand.Rand) any {
	var out []any
	paths := []string{"/api/v1/items/%d", "/api/v2/orders/%d/lines", "/healthz", "/api/v1/users/%d/avatar@2x.png", "/static/app.%s.js"}
	for i := 0; i < 800; i++ {
		p := pick(r, paths)
		switch {
		case strings.Contains(p, "%d"):
			p = fmt.Sprintf(p, r.IntN(10000000))
		case strings.Contains(p, "%s"):
			p = fmt.Sprintf(p, hexN(r, 8))
		}
		t := ts(r)
		out = append(out, map[string]any{
			"ts": t.Format(time.RFC3339Nano), "ts_ns": t.UnixNano(), "level": pick(r, []string{"info", "warn", "debug"}),
			"trace_id": hexN(r, 32), "span_id": hexN(r, 16), "method": pick(r, []string{"GET", "POST", "PATCH"}), "path": p,
			"status": pick(r, []int{200, 201, 204, 304, 400, 404, 500}), "latency_ms": r.Float64() * 250, "bytes": r.IntN(1 << 20),
			"client": pick(r, []string{ipv4(r), ipv6(r)}), "ua": fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/%d.0.%d.%d Safari/537.36", 100+r.IntN(30), r.IntN(7000), r.IntN(300)),
			"msg": fmt.Sprintf("request %s done in %dms (retry %d/3, pool %d/%d)", pick(r, wordsList), r.IntN(900), r.IntN(4), r.IntN(64), 64),
		})
	}
	return out
}

func genMetrics(r *rand.Rand) any {
	var series []any
	for s := 0; s < 25; s++ {
		var points [][2]any
		start := int64(1700000000000 + r.Int64N(1e10))
		for k := 0; k < 60; k++ {
			points = append(points, [2]any{start + int64(k)*15000, r.Float64() * float64(r.IntN(100000))})
		}
		series = append(series, map[string]any{
			"metric": map[string]string{"__name__": pick(r, []string{"http_requests_total", "process_cpu_seconds_total", "go_gc_duration_seconds"}), "instance": ipv4(r) + ":9100", "job": "node"},
			"values": points, "ratio": r.Float64(), "p99": r.ExpFloat64(),
		})
	}
	return map[string]any{"status": "success", "data": map[string]any{"resultType": "matrix", "result": series}}
}

func genCatalog(r *rand.Rand) any {
	var out []any
	for i := 0; i < 200; i++ {
		maj, min, pat := r.IntN(10), r.IntN(30), r.IntN(50)
		out = append(out, map[string]any{
			"name": fmt.Sprintf("@%s/%s-kit", pick(r, firstNames), pick(r, wordsList)), "version": fmt.Sprintf("%d.%d.%d-rc.%d+build.%d", maj, min, pat, r.IntN(5), r.IntN(9999)),
			"dependencies": map[string]string{"left-pad": fmt.Sprintf("^%d.%d.%d", maj, min, pat), "core": fmt.Sprintf("core@%d.%d.%d", maj, min, pat)},
			"isbn10":       isbn10(r), "isbn13": ean13(r, "978"), "sha1": hexN(r, 40), "sha256": "sha256:" + hexN(r, 64), "md5": hexN(r, 32),
			"thumbnail": "data:image/png;base64," + b64(r, 90), "hero": fmt.Sprintf("hero@%dx.webp", 1+r.IntN(3)),
			"cursor": base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"page":%d,"size":50}`, r.IntN(500)))),
			"etag":   fmt.Sprintf(`W/"%s"`, hexN(r, 16)), "size_bytes": r.Int64N(1 << 40), "downloads_last_month": r.IntN(10000000),
		})
	}
	return map[string]any{"packages": out}
}

func genGeo(r *rand.Rand) any {
	var feats []any
	for i := 0; i < 150; i++ {
		var ring [][2]float64
		lat, lng := r.Float64()*170-85, r.Float64()*350-175
		for k := 0; k < 8; k++ {
			ring = append(ring, [2]float64{lng + r.Float64()/100, lat + r.Float64()/100})
		}
		ring = append(ring, ring[0])
		feats = append(feats, map[string]any{
			"type": "Feature", "id": fmt.Sprintf("way/%d", r.Int64N(1e10)),
			"geometry":   map[string]any{"type": "Polygon", "coordinates": [][][2]float64{ring}},
			"properties": map[string]any{"name": pick(r, cities) + " " + pick(r, wordsList), "population": r.IntN(5000000), "area_km2": r.Float64() * 900, "osm_version": r.IntN(40), "bbox": []float64{lng, lat, lng + 0.01, lat + 0.01}},
		})
	}
	return map[string]any{"type": "FeatureCollection", "features": feats}
}

func genK8s(r *rand.Rand) any {
	var items []any
	for i := 0; i < 80; i++ {
		name := fmt.Sprintf("%s-%s-%s", pick(r, wordsList), hexN(r, 10), hexN(r, 5))
		items = append(items, map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": name, "namespace": "prod", "uid": uuid4(r), "resourceVersion": fmt.Sprint(r.IntN(1e9)), "generation": r.IntN(20),
				"creationTimestamp": ts(r).Format(time.RFC3339), "labels": map[string]string{"app": "api", "pod-template-hash": hexN(r, 10)},
				"annotations": map[string]string{"kubectl.kubernetes.io/restartedAt": ts(r).Format(time.RFC3339), "checksum/config": hexN(r, 64)}},
			"spec": map[string]any{"nodeName": fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", r.IntN(256), r.IntN(256)),
				"containers": []any{map[string]any{"name": "api", "image": "registry.example.com/team/api@sha256:" + hexN(r, 64),
					"ports":     []any{map[string]any{"containerPort": 8080, "protocol": "TCP"}},
					"resources": map[string]any{"limits": map[string]string{"cpu": "500m", "memory": "512Mi"}},
					"env":       []any{map[string]string{"name": "GOMAXPROCS", "value": "2"}, map[string]string{"name": "LOG_LEVEL", "value": "info"}}}}},
			"status": map[string]any{"podIP": "10.0." + fmt.Sprint(r.IntN(256)) + "." + fmt.Sprint(r.IntN(256)), "hostIP": ipv4(r), "phase": "Running", "startTime": ts(r).Format(time.RFC3339)},
		})
	}
	return map[string]any{"apiVersion": "v1", "kind": "PodList", "items": items}
}

func genPayments(r *rand.Rand) any {
	var out []any
	for i := 0; i < 200; i++ {
		amount := 50 + r.IntN(100000)
		out = append(out, map[string]any{
			"id": "ch_" + b64id(r, 24), "object": "charge", "amount": amount, "amount_captured": amount, "currency": "eur",
			"customer": "cus_" + b64id(r, 14), "payment_intent": "pi_" + b64id(r, 24), "created": ts(r).Unix(),
			"payment_method_details": map[string]any{"card": map[string]any{"brand": pick(r, []string{"visa", "mastercard", "amex"}), "last4": fmt.Sprintf("%04d", r.IntN(10000)),
				"exp_month": 1 + r.IntN(12), "exp_year": 2026 + r.IntN(6), "fingerprint": b64id(r, 16), "display": fmt.Sprintf("**** **** **** %04d", r.IntN(10000)), "country": "DE"}},
			"balance_transaction": "txn_" + b64id(r, 24), "receipt_number": fmt.Sprintf("%04d-%04d", r.IntN(10000), r.IntN(10000)),
			"fee_rate": "1.4% + 0.25", "risk_score": r.IntN(100), "statement_descriptor": "SEALGATE DEMO " + fmt.Sprint(r.IntN(1000)),
		})
	}
	return map[string]any{"object": "list", "data": out, "has_more": true, "url": "/v1/charges"}
}

func b64id(r *rand.Rand, n int) string {
	const al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = al[r.IntN(len(al))]
	}
	return string(b)
}

func genRepos(r *rand.Rand) any {
	var out []any
	for i := 0; i < 150; i++ {
		id := 1000000 + r.IntN(800000000)
		owner := pick(r, firstNames) + pick(r, lastNames)
		name := pick(r, wordsList) + "-" + pick(r, wordsList)
		out = append(out, map[string]any{
			"id": id, "node_id": base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("010:Repository%d", id))), "name": name, "full_name": owner + "/" + name,
			"html_url": "https://github.com/" + owner + "/" + name, "git_url": "git://github.com/" + owner + "/" + name + ".git",
			"commits_url": "https://api.github.com/repos/" + owner + "/" + name + "/commits{/sha}", "default_branch": "main",
			"pushed_at": ts(r).Format(time.RFC3339), "size": r.IntN(100000), "stargazers_count": r.IntN(100000), "forks": r.IntN(5000),
			"head_sha": hexN(r, 40), "topics": []string{pick(r, wordsList), "go", "api"}, "license": map[string]string{"spdx_id": "Apache-2.0"},
			"latest_release": fmt.Sprintf("v%d.%d.%d", r.IntN(5), r.IntN(30), r.IntN(20)), "ipv4_hook": ipv4(r) + "/32",
		})
	}
	return out
}
