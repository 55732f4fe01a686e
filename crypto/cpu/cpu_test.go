package cpu

import (
	"crypto/tls"
	"slices"
	"testing"
)

func TestProfileOrder(t *testing.T) {
	aes := Features{Arch: "amd64", AESNI: true, PCLMULQDQ: true}
	armAES := Features{Arch: "arm64", ARMAES: true, ARMPMULL: true}
	noAES := Features{Arch: "amd64"}
	halfAES := Features{Arch: "amd64", AESNI: true} // no carry-less multiply: GHASH is slow
	tests := []struct {
		name      string
		f         Features
		force     string
		wantFirst AEAD
		wantSuite uint16
	}{
		{"auto with AES-NI", aes, "auto", AES128GCM, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{"auto on arm64 with AES", armAES, "", AES128GCM, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{"auto without AES", noAES, "auto", ChaCha20Poly1305, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{"auto with AES but no CLMUL", halfAES, "auto", ChaCha20Poly1305, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{"forced chacha on AES CPU", aes, "chacha20-poly1305", ChaCha20Poly1305, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{"forced aes-128 without AES", noAES, "aes-128-gcm", AES128GCM, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{"forced aes-256", noAES, "aes-256-gcm", AES256GCM, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewProfile(tt.f, tt.force)
			if err != nil {
				t.Fatal(err)
			}
			if p.AEADOrder[0] != tt.wantFirst {
				t.Errorf("AEAD order %v, want %s first", p.AEADOrder, tt.wantFirst)
			}
			if len(p.AEADOrder) != 3 {
				t.Errorf("AEAD order %v should list all three AEADs", p.AEADOrder)
			}
			if p.TLS12Suites[0] != tt.wantSuite {
				t.Errorf("TLS 1.2 order starts with %s, want %s", tls.CipherSuiteName(p.TLS12Suites[0]), tls.CipherSuiteName(tt.wantSuite))
			}
			for _, s := range p.TLS12Suites {
				if slices.ContainsFunc(tls.InsecureCipherSuites(), func(c *tls.CipherSuite) bool { return c.ID == s }) {
					t.Errorf("insecure suite %s in order", tls.CipherSuiteName(s))
				}
			}
		})
	}
}

func TestParseAEADRejectsUnknown(t *testing.T) {
	if _, err := NewProfile(Features{}, "aes-512-gcm"); err == nil {
		t.Fatal("unknown AEAD accepted")
	}
}

func TestDetectReportsArch(t *testing.T) {
	f := Detect()
	if f.Arch == "" {
		t.Fatal("no architecture")
	}
	if len(f.Names()) != len(f.Map()) {
		t.Fatal("Names and Map disagree")
	}
}
