package dlp

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// straddleBodies embeds ex in a JSON document and in text, with neighbours
// on both sides.
func straddleBodies(ex string) map[string][]byte {
	js, _ := json.Marshal(ex)
	return map[string][]byte{
		"json": []byte(`{"id":1042,"items":["a","b"],"value":` + string(js) + `,"at":"2024-05-01T12:00:00Z"}`),
		"text": []byte("line one\nvalue: " + ex + "\nline three"),
	}
}

func TestStraddleEveryOffset(t *testing.T) {
	cc := mustCompile(t, Config{JSONFields: []string{"password"}})
	var h harness
	for _, tc := range detectorCases {
		if !tc.want {
			continue
		}
		for ctxName, body := range straddleBodies(tc.in) {
			t.Run(tc.name+"/"+ctxName, func(t *testing.T) {
				isJSON := ctxName == "json"
				wantOut, wantFinds := h.scan(t, cc, isJSON, body)
				if len(wantFinds) != 1 || wantFinds[0].Kind != tc.kind {
					t.Fatalf("unsplit: want one %s, got %v", tc.kind, wantFinds)
				}
				for i := 0; i <= len(body); i++ {
					out, finds := h.scan(t, cc, isJSON, body, i)
					if !slices.Equal(finds, wantFinds) || !bytes.Equal(out, wantOut) {
						t.Fatalf("split at %d: findings %v (want %v), output\n%s\nwant\n%s", i, finds, wantFinds, out, wantOut)
					}
				}
				step := 1
				if len(body) > 120 {
					step = 3
				}
				for i := 0; i <= len(body); i += step {
					for j := i; j <= len(body); j += step {
						out, finds := h.scan(t, cc, isJSON, body, i, j)
						if !slices.Equal(finds, wantFinds) || !bytes.Equal(out, wantOut) {
							t.Fatalf("split at %d,%d: findings %v (want %v), output\n%s\nwant\n%s", i, j, finds, wantFinds, out, wantOut)
						}
					}
				}
			})
		}
	}
}

func TestStraddleByteAtATime(t *testing.T) {
	cc := mustCompile(t, Config{JSONFields: []string{"password", "national_id"}})
	var b strings.Builder
	b.WriteString("[")
	for i, tc := range detectorCases {
		if i > 0 {
			b.WriteString(",")
		}
		js, _ := json.Marshal(tc.in)
		b.WriteString(`{"n":` + string(js) + `,"password":"p@ss w0rd 4111111111111111","national_id":12345678901}`)
	}
	b.WriteString("]")
	body := []byte(b.String())
	var h harness
	wantOut, wantFinds := h.scan(t, cc, true, body)
	cuts := make([]int, 0, len(body))
	for i := 1; i < len(body); i++ {
		cuts = append(cuts, i)
	}
	out, finds := h.scan(t, cc, true, body, cuts...)
	if !slices.Equal(finds, wantFinds) || !bytes.Equal(out, wantOut) {
		t.Fatalf("byte at a time differs: %d findings vs %d", len(finds), len(wantFinds))
	}
	if !json.Valid(out) {
		t.Fatalf("redacted output is not valid JSON:\n%s", out)
	}
}

func TestRedactKeepsJSONValid(t *testing.T) {
	cc := mustCompile(t, Config{Action: "redact", JSONFields: []string{"password", "ssn", "pin", "profile"}})
	doc := map[string]any{
		"card_str":    "4111 1111 1111 1111",
		"card_num":    json.Number("4111111111111111"),
		"cards":       []any{json.Number("5555555555554444"), "378282246310005"},
		"ssn":         "078051121",
		"password":    `quote " and backslash \ and unicode é and \u escapes`,
		"pin":         json.Number("-12.5e3"),
		"profile":     map[string]any{"name": "Jane", "age": json.Number("42"), "tags": []any{"a", true, nil}},
		"iban":        "GB82 WEST 1234 5698 7654 32",
		"mail":        "jane.roe@example.org",
		"phone":       "+442079460958",
		"pem":         pemKey,
		"jwt":         "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
		"description": "card 4111-1111-1111-1111 in text, then 6011111111111117",
	}
	body, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out, finds := scanSplit(t, cc, true, body)
	if len(out) != len(body) {
		t.Fatalf("length changed: %d → %d", len(body), len(out))
	}
	if !json.Valid(out) {
		t.Fatalf("redacted output is not valid JSON:\n%s", out)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		"card_str": "**** **** **** 1111",
		"ssn":      "*********",
		"iban":     "**** **** **** **** **54 32",
		"mail":     "****.***@*******.***",
		"phone":    "+************",
	}
	for k, want := range checks {
		if got[k] != want {
			t.Errorf("%s = %v, want %q", k, got[k], want)
		}
	}
	if n := got["card_num"].(float64); n != 9999999999991111 {
		t.Errorf("card_num = %v, want 9999999999991111", n)
	}
	if d := got["description"].(string); d != "card ****-****-****-1111 in text, then ************1117" {
		t.Errorf("description = %q", d)
	}
	if p := got["password"].(string); strings.Trim(p, "*") != "" {
		t.Errorf("password not masked: %q", p)
	}
	prof := got["profile"].(map[string]any)
	if prof["name"] != "****" || prof["age"].(float64) != 99 || prof["tags"].([]any)[0] != "*" {
		t.Errorf("profile not masked: %v", prof)
	}
	for _, leak := range []string{"4111 1111 1111", "5555555555554444", "078051121", "jane.roe", "2079460958", "MIIEowIBAAKCAQEA", "SflKxwRJ", "Jane"} {
		if bytes.Contains(out, []byte(leak)) {
			t.Errorf("output still contains %q", leak)
		}
	}
	kinds := map[Kind]int{}
	for _, f := range finds {
		kinds[f.Kind]++
	}
	if kinds[KindCard] != 6 || kinds[KindField] < 4 || kinds[KindSecret] != 2 {
		t.Errorf("findings by kind: %v", kinds)
	}
}

func TestLogActionPassesBytes(t *testing.T) {
	cc := mustCompile(t, Config{Action: "log", JSONFields: []string{"password"}})
	body := []byte(`{"card":"4111111111111111","password":"x","mail":"a@example.com"}`)
	out, finds := scanSplit(t, cc, true, body, 10, 30)
	if !bytes.Equal(out, body) {
		t.Fatalf("log action changed the body: %s", out)
	}
	if len(finds) != 3 {
		t.Fatalf("findings: %v", finds)
	}
}

func TestPerKindActions(t *testing.T) {
	cc := mustCompile(t, Config{Action: "redact", Actions: map[string]string{"email": "log"}})
	body := []byte(`card 4111111111111111 mail a@example.com`)
	out, _ := scanSplit(t, cc, false, body)
	if string(out) != `card ************1111 mail a@example.com` {
		t.Fatalf("got %s", out)
	}
}

// TestBlockLoopMatchesScalar runs the detector examples and a mixed body
// through both scan loops.
func TestBlockLoopMatchesScalar(t *testing.T) {
	cc := mustCompile(t, Config{JSONFields: []string{"password"}})
	bodies := [][]byte{mixedJSON(256<<10, 3)}
	for _, tc := range detectorCases {
		for _, b := range straddleBodies(tc.in) {
			bodies = append(bodies, b)
		}
	}
	for i, body := range bodies {
		fast, ref := harness{}, harness{scalar: true}
		for _, cuts := range [][]int{nil, {len(body) / 3}, {7, 8, 9, 15, 16, 17}} {
			if cuts != nil && cuts[len(cuts)-1] > len(body) {
				continue
			}
			o1, f1 := fast.scan(t, cc, true, body, cuts...)
			o2, f2 := ref.scan(t, cc, true, body, cuts...)
			if !slices.Equal(f1, f2) || !bytes.Equal(o1, o2) {
				t.Fatalf("body %d cuts %v: block loop %v, scalar loop %v", i, cuts, f1, f2)
			}
		}
	}
}
