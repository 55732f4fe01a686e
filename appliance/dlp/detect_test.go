package dlp

import (
	"slices"
	"strings"
	"testing"
)

// detectorCase is one example for a detector: want is whether the whole of
// in is found as kind (and nothing else is found).
type detectorCase struct {
	name string
	kind Kind
	in   string
	want bool
}

const pemKey = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naFDrBz9vFqU4yQ8lR1jZ7P1kVYx3rPZ1wQIDAQABAoIBAFj5Y0Zb+6pq0L2v\n-----END RSA PRIVATE KEY-----"

var detectorCases = []detectorCase{
	// Payment cards.
	{"visa", KindCard, "4111111111111111", true},
	{"visa spaced", KindCard, "4111 1111 1111 1111", true},
	{"visa dashed", KindCard, "4111-1111-1111-1111", true},
	{"visa 19", KindCard, "4777777777777777775", true},
	{"mastercard 5x", KindCard, "5555555555554444", true},
	{"mastercard 51", KindCard, "5177777777777771", true},
	{"mastercard 2-series", KindCard, "2223003122003222", true},
	{"mastercard 2720", KindCard, "2720777777777770", true},
	{"amex", KindCard, "378282246310005", true},
	{"amex 34", KindCard, "347777777777777", true},
	{"amex grouped 4-6-5", KindCard, "3782 822463 10005", true},
	{"discover", KindCard, "6011111111111117", true},
	{"discover 19", KindCard, "6011777777777777777", true},
	{"discover 622126", KindCard, "6221267777777777", true},
	{"jcb", KindCard, "3530111333300000", true},
	{"jcb 19", KindCard, "3589777777777777775", true},
	{"diners 14", KindCard, "30569309025904", true},
	{"diners 36", KindCard, "36777777777773", true},
	{"unionpay", KindCard, "6200000000000005", true},
	{"unionpay 19", KindCard, "6277777777777777774", true},
	{"mir", KindCard, "2200777777777779", true},
	{"maestro", KindCard, "6304777777777775", true},
	{"card luhn fails", KindCard, "4111111111111112", false},
	{"card unknown issuer", KindCard, "1234567890123452", false},
	{"card visa 13 legacy", KindCard, "4222222222222", false},
	{"card visa wrong length 17", KindCard, "41111111111111110", false},
	{"card visa 15", KindCard, "4111 1111 1111 111", false},
	{"card double space", KindCard, "4111  1111 1111 1111", false},
	{"card mixed separators", KindCard, "4111-1111 1111-1111", false},
	{"card first group 3", KindCard, "411 1111 1111 11111", false},
	{"card in fraction", KindCard, "0.4111111111111111", false},
	{"card inside word", KindCard, "x4111111111111111", false},
	{"card followed by letter", KindCard, "4111111111111111x", false},
	{"card followed by decimals", KindCard, "4111111111111111.25", false},
	{"card 20 digits", KindCard, "41111111111111111111", false},
	{"epoch millis", KindCard, "1700000000000", false},
	{"isbn 13", KindCard, "9780306406157", false},
	{"ean 13", KindCard, "4006381333931", false},
	{"uuid", KindCard, "550e8400-e29b-41d4-a716-446655440000", false},
	{"usps tracking", KindCard, "9400 1234 4255 6286 7958 1381 70", false},

	// US social security numbers.
	{"ssn", KindSSN, "123-45-6789", true},
	{"ssn 078", KindSSN, "078-05-1121", true},
	{"ssn 899", KindSSN, "899-99-9999", true},
	{"ssn area 000", KindSSN, "000-12-3456", false},
	{"ssn area 666", KindSSN, "666-12-3456", false},
	{"ssn area 900", KindSSN, "900-12-3456", false},
	{"ssn group 00", KindSSN, "123-00-4567", false},
	{"ssn serial 0000", KindSSN, "123-45-0000", false},
	{"ssn undashed", KindSSN, "123456789", false},
	{"ssn long serial", KindSSN, "123-45-67890", false},
	{"ssn in dash run", KindSSN, "1-123-45-6789", false},
	{"ssn followed by dash digit", KindSSN, "123-45-6789-1", false},
	{"iso date", KindSSN, "2024-01-15", false},
	{"us phone style", KindSSN, "555-123-4567", false},

	// IBANs.
	{"iban de", KindIBAN, "DE89370400440532013000", true},
	{"iban de spaced", KindIBAN, "DE89 3704 0044 0532 0130 00", true},
	{"iban gb", KindIBAN, "GB82WEST12345698765432", true},
	{"iban fr", KindIBAN, "FR1420041010050500013M02606", true},
	{"iban nl", KindIBAN, "NL91ABNA0417164300", true},
	{"iban no (shortest)", KindIBAN, "NO9386011117947", true},
	{"iban bad checksum", KindIBAN, "DE89370400440532013001", false},
	{"iban short", KindIBAN, "DE8937040044053201300", false},
	{"iban long", KindIBAN, "DE893704004405320130001", false},
	{"iban unknown country", KindIBAN, "XX89370400440532013000", false},
	{"iban lower case", KindIBAN, "de89370400440532013000", false},
	{"iban irregular spaces", KindIBAN, "DE89 37040044 0532 0130 00", false},

	// E-mail addresses.
	{"email", KindEmail, "john.doe@example.com", true},
	{"email short", KindEmail, "a@b.co", true},
	{"email tag and subdomains", KindEmail, "first+tag@mail.example.co.uk", true},
	{"email digits", KindEmail, "user_42@corp-mail.example.org", true},
	{"retina asset", KindEmail, "logo@2x.png", false},
	{"package version", KindEmail, "pkg@1.2.3", false},
	{"npm scope", KindEmail, "@scope/pkg", false},
	{"single label", KindEmail, "user@localhost", false},
	{"no tld", KindEmail, "john@example", false},
	{"empty label", KindEmail, "john@.com", false},
	{"double dot local", KindEmail, "john..doe@example.com", false},
	{"one letter tld", KindEmail, "a@b.c", false},
	{"mention", KindEmail, "ping @alice please", false},

	// E.164 phone numbers.
	{"phone us", KindPhone, "+14155552671", true},
	{"phone us spaced", KindPhone, "+1 415 555 2671", true},
	{"phone uk spaced", KindPhone, "+44 20 7946 0958", true},
	{"phone uk", KindPhone, "+442079460958", true},
	{"phone de dashed", KindPhone, "+49-30-123456", true},
	{"phone 3-digit code", KindPhone, "+353861234567", true},
	{"phone leading zero", KindPhone, "+0123456789", false},
	{"phone 7 digits", KindPhone, "+4412345", false},
	{"phone 16 digits", KindPhone, "+4412345678901234", false},
	{"phone nanp bad area", KindPhone, "+11234567890", false},
	{"phone nanp short", KindPhone, "+1415555267", false},
	{"phone unassigned code", KindPhone, "+999123456789", false},
	{"exponent", KindPhone, "1e+10", false},
	{"tz offset", KindPhone, "+05:30", false},
	{"signed amount", KindPhone, "+12500000.50", false},

	// Secrets.
	{"aws key id", KindSecret, "AKIAIOSFODNN7EXAMPLE", true},
	{"aws session key id", KindSecret, "ASIAY34FZKBOKMUTVV7A", true},
	{"private key pem", KindSecret, pemKey, true},
	{"private key pem json", KindSecret, strings.ReplaceAll(pemKey, "\n", `\n`), true},
	{"openssh key", KindSecret, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----", true},
	{"jwt", KindSecret, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", true},
	{"github pat classic", KindSecret, "ghp_16C7e42F292c6912E7710c838347Ae178B4a", true},
	{"github oauth", KindSecret, "gho_16C7e42F292c6912E7710c838347Ae178B4a", true},
	{"github fine-grained", KindSecret, "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij", true},
	{"slack bot", KindSecret, "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", true},
	{"stripe live", KindSecret, "sk_live_4eC39HqLyjWDarjtT1zdp7dc", true},
	{"stripe restricted", KindSecret, "rk_live_4eC39HqLyjWDarjtT1zdp7dc", true},
	{"gitlab", KindSecret, "glpat-xxxxxxxxxxxxxxxxxxxx", true},
	{"google api key", KindSecret, "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", true},
	{"aws key id short", KindSecret, "AKIAIOSFODNN7EXAMP", false},
	{"aws key id long", KindSecret, "AKIAIOSFODNN7EXAMPLEX", false},
	{"public key pem", KindSecret, "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----", false},
	{"certificate pem", KindSecret, "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUJ\n-----END CERTIFICATE-----", false},
	{"base64 json cursor", KindSecret, "eyJwYWdlIjoyLCJzaXplIjo1MH0=", false},
	{"two segment non jwt", KindSecret, "eyJhbGciOiJub25lIn0.dGhpcyBpcyBub3QgYSBqd3Q", false},
	{"stripe test key", KindSecret, "sk_test_4eC39HqLyjWDarjtT1zdp7dc", false},
	{"github short", KindSecret, "ghp_short", false},
	{"slack short", KindSecret, "xoxb-123", false},
	{"google key short", KindSecret, "AIzaSyDaGmWKa4JsXZ", false},
}

// contexts embed an example in different surroundings; %s is the example.
var contexts = []struct{ name, pre, post string }{
	{"bare", "", ""},
	{"json string", `{"v":"`, `"}`},
	{"text", "see ", " here."},
	{"json array", `["x", "`, `", 1]`},
}

func TestDetectors(t *testing.T) {
	cc := mustCompile(t, Config{})
	for _, tc := range detectorCases {
		for _, ctx := range contexts {
			t.Run(tc.name+"/"+ctx.name, func(t *testing.T) {
				body := []byte(ctx.pre + tc.in + ctx.post)
				_, finds := scanSplit(t, cc, strings.HasPrefix(ctx.pre, "{") || strings.HasPrefix(ctx.pre, "["), body)
				if !tc.want {
					if len(finds) != 0 {
						t.Fatalf("%q: want no finding, got %v", body, finds)
					}
					return
				}
				if len(finds) != 1 || finds[0].Kind != tc.kind || finds[0].Off != int64(len(ctx.pre)) {
					t.Fatalf("%q: want one %s at %d, got %v", body, tc.kind, len(ctx.pre), finds)
				}
			})
		}
	}
}

func TestDetectorsSwitchable(t *testing.T) {
	for k := Kind(0); k < KindField; k++ {
		t.Run(k.String(), func(t *testing.T) {
			var others []string
			for o := Kind(0); o < KindField; o++ {
				if o != k {
					others = append(others, o.String())
				}
			}
			cc := mustCompile(t, Config{Detectors: others})
			for _, tc := range detectorCases {
				if tc.kind != k || !tc.want {
					continue
				}
				_, finds := scanSplit(t, cc, false, []byte(tc.in))
				for _, f := range finds {
					if f.Kind == k {
						t.Fatalf("%s disabled but found in %q", k, tc.in)
					}
				}
			}
		})
	}
}

func TestCardIssuerTable(t *testing.T) {
	tests := []struct {
		digits string
		want   bool
	}{
		{"4111111111111111", true}, {"5500000000000004", true}, {"2221000000000009", true},
		{"2721000000000004", false}, {"340000000000009", true}, {"350000000000000", false},
		{"6011000000000004", true}, {"6440000000000000", true}, {"3528000000000007", true},
		{"3590000000000000", false}, {"30000000000004", true}, {"1000000000000000", false},
		{"9000000000000000", false}, {"7000000000000000", false},
	}
	for _, tc := range tests {
		t.Run(tc.digits, func(t *testing.T) {
			d := make([]byte, len(tc.digits))
			for i := range tc.digits {
				d[i] = tc.digits[i] - '0'
			}
			if got := cardIssuerOK(d); got != tc.want {
				t.Fatalf("cardIssuerOK(%s) = %v, want %v", tc.digits, got, tc.want)
			}
		})
	}
}

func TestCardPositionInGroups(t *testing.T) {
	cc := mustCompile(t, Config{})
	tests := []struct {
		in   string
		want []rec
	}{
		{"qty 2 4111 1111 1111 1111", []rec{{KindCard, secNone, 6}}},
		{"9400 1234 4255 6286 7958 1381 70", nil},
		{"ref 12-4111-1111-1111-1111", []rec{{KindCard, secNone, 7}}},
		{"1,4111111111111111,x", []rec{{KindCard, secNone, 2}}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, got := scanSplit(t, cc, false, []byte(tc.in))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
