// Package cpu detects the CPU features that matter for sealgate's symmetric
// cryptography and derives from them, once, the preferred AEAD order for the
// sealing protocol and the TLS 1.2 cipher-suite order for the engine.
//
// AES-GCM is preferred when the CPU has AES and carry-less multiplication in
// hardware (AES-NI + PCLMULQDQ on amd64, AES + PMULL on arm64); without them
// ChaCha20-Poly1305 is faster and constant-time, so it goes first. The
// package knows nothing of HTTP or config files.
package cpu

import (
	"crypto/tls"
	"fmt"
	"runtime"
	"sort"

	"github.com/klauspost/cpuid/v2"
)

// AEAD names an authenticated cipher as the config and the sealing protocol
// spell it.
type AEAD string

// The AEADs sealgate uses.
const (
	AES128GCM        AEAD = "aes-128-gcm"
	AES256GCM        AEAD = "aes-256-gcm"
	ChaCha20Poly1305 AEAD = "chacha20-poly1305"
)

// Auto is the `[crypto] aead` value that lets the CPU decide.
const Auto = "auto"

// Features is the set of CPU features sealgate reports and decides on.
type Features struct {
	Arch       string
	AESNI      bool // amd64 AES-NI
	PCLMULQDQ  bool // amd64 carry-less multiply
	VAES       bool
	VPCLMULQDQ bool
	AVX2       bool
	AVX512F    bool
	SHANI      bool
	ARMAES     bool // arm64 AES instructions
	ARMPMULL   bool // arm64 polynomial multiply
	ARMSHA2    bool
}

// Detect reads the features of the CPU this process runs on.
func Detect() Features {
	c := cpuid.CPU
	return Features{
		Arch:       runtime.GOARCH,
		AESNI:      c.Supports(cpuid.AESNI),
		PCLMULQDQ:  c.Supports(cpuid.CLMUL),
		VAES:       c.Supports(cpuid.VAES),
		VPCLMULQDQ: c.Supports(cpuid.VPCLMULQDQ),
		AVX2:       c.Supports(cpuid.AVX2),
		AVX512F:    c.Supports(cpuid.AVX512F),
		SHANI:      c.Supports(cpuid.SHA),
		ARMAES:     c.Supports(cpuid.AESARM),
		ARMPMULL:   c.Supports(cpuid.PMULL),
		ARMSHA2:    c.Supports(cpuid.SHA2),
	}
}

// HardwareAESGCM reports whether both halves of AES-GCM (the block cipher and
// the GHASH carry-less multiply) run in hardware.
func (f Features) HardwareAESGCM() bool {
	return (f.AESNI && f.PCLMULQDQ) || (f.ARMAES && f.ARMPMULL)
}

// Map returns the features by their reported names, for status and metrics.
func (f Features) Map() map[string]bool {
	return map[string]bool{
		"aesni":      f.AESNI,
		"pclmulqdq":  f.PCLMULQDQ,
		"vaes":       f.VAES,
		"vpclmulqdq": f.VPCLMULQDQ,
		"avx2":       f.AVX2,
		"avx512f":    f.AVX512F,
		"sha_ni":     f.SHANI,
		"arm_aes":    f.ARMAES,
		"arm_pmull":  f.ARMPMULL,
		"arm_sha2":   f.ARMSHA2,
	}
}

// Names returns the feature names of Map in a stable order.
func (f Features) Names() []string {
	m := f.Map()
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Profile is the decision taken once at start-up: the features seen, what the
// operator forced, and the resulting orders.
type Profile struct {
	Features  Features
	Forced    AEAD   // empty when the CPU decided
	AEADOrder []AEAD // most preferred first
	// TLS12Suites is the TLS 1.2 cipher-suite order for tls.Config.CipherSuites.
	// TLS 1.3 suites are ordered by crypto/tls itself from the same hardware
	// check, so they are not configurable.
	TLS12Suites []uint16
}

// ParseAEAD validates a `[crypto] aead` value.
func ParseAEAD(s string) (AEAD, error) {
	switch AEAD(s) {
	case AES128GCM, AES256GCM, ChaCha20Poly1305:
		return AEAD(s), nil
	}
	if s == Auto || s == "" {
		return "", nil
	}
	return "", fmt.Errorf("unknown AEAD %q (want auto, aes-128-gcm, aes-256-gcm or chacha20-poly1305)", s)
}

// NewProfile derives the orders from f, honouring force when it names an AEAD
// ("auto" or "" lets the CPU decide).
func NewProfile(f Features, force string) (Profile, error) {
	forced, err := ParseAEAD(force)
	if err != nil {
		return Profile{}, err
	}
	p := Profile{Features: f, Forced: forced}
	aesFirst := f.HardwareAESGCM()
	switch forced {
	case AES128GCM:
		p.AEADOrder = []AEAD{AES128GCM, AES256GCM, ChaCha20Poly1305}
		aesFirst = true
	case AES256GCM:
		p.AEADOrder = []AEAD{AES256GCM, AES128GCM, ChaCha20Poly1305}
		aesFirst = true
	case ChaCha20Poly1305:
		p.AEADOrder = []AEAD{ChaCha20Poly1305, AES128GCM, AES256GCM}
		aesFirst = false
	default:
		if aesFirst {
			p.AEADOrder = []AEAD{AES128GCM, AES256GCM, ChaCha20Poly1305}
		} else {
			p.AEADOrder = []AEAD{ChaCha20Poly1305, AES128GCM, AES256GCM}
		}
	}
	p.TLS12Suites = tls12Suites(aesFirst, forced == AES256GCM)
	return p, nil
}

// tls12Suites lists only forward-secret AEAD suites, ECDSA and RSA variants of
// each, in the order the CPU favours.
func tls12Suites(aesFirst, aes256First bool) []uint16 {
	aes128 := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	aes256 := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
	chacha := []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}
	var out []uint16
	switch {
	case aesFirst && aes256First:
		out = append(append(append(out, aes256...), aes128...), chacha...)
	case aesFirst:
		out = append(append(append(out, aes128...), aes256...), chacha...)
	default:
		out = append(append(append(out, chacha...), aes128...), aes256...)
	}
	return out
}

// Names returns the AEAD order as strings.
func (p Profile) Names() []string {
	out := make([]string, len(p.AEADOrder))
	for i, a := range p.AEADOrder {
		out[i] = string(a)
	}
	return out
}

// TLS12SuiteNames returns the TLS 1.2 suite order by IANA name.
func (p Profile) TLS12SuiteNames() []string {
	out := make([]string, len(p.TLS12Suites))
	for i, s := range p.TLS12Suites {
		out[i] = tls.CipherSuiteName(s)
	}
	return out
}
