package appliance

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// buildTLS loads a listener's certificates and CA and returns its tls.Config.
// Certificates are chosen by SNI by crypto/tls (the first that matches the
// ClientHello, the first overall as fallback).
func buildTLS(name string, t TLSSpec, suites []uint16) (*tls.Config, error) {
	if len(t.Certs) == 0 {
		return nil, fmt.Errorf("listener %q: no certificate configured", name)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: suites,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if t.MinVersion != 0 {
		if t.MinVersion < tls.VersionTLS12 {
			return nil, fmt.Errorf("listener %q: TLS versions below 1.2 are not supported", name)
		}
		cfg.MinVersion = t.MinVersion
	}
	for i, c := range t.Certs {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("listener %q: certificate %d (%s): %w", name, i, c.Cert, err)
		}
		cfg.Certificates = append(cfg.Certificates, pair)
	}
	if t.ClientCA != "" {
		pem, err := os.ReadFile(t.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("listener %q: client CA: %w", name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("listener %q: client CA %s: no PEM certificate found", name, t.ClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		if t.ClientAuthOptional {
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return cfg, nil
}

// ticketKeys holds the TLS session ticket keys shared by every listener and
// every config generation, so a reload keeps resumption working. The newest
// key encrypts; the last three decrypt.
type ticketKeys struct {
	mu      sync.Mutex
	keys    [][32]byte
	configs map[*tls.Config]struct{}
}

const keptTicketKeys = 3

func newTicketKeys() *ticketKeys {
	t := &ticketKeys{configs: make(map[*tls.Config]struct{})}
	t.rotate()
	return t
}

// rotate adds a fresh key, drops the oldest beyond three and updates every
// registered config.
func (t *ticketKeys) rotate() {
	var k [32]byte
	rand.Read(k[:])
	t.mu.Lock()
	defer t.mu.Unlock()
	t.keys = append([][32]byte{k}, t.keys...)
	if len(t.keys) > keptTicketKeys {
		t.keys = t.keys[:keptTicketKeys]
	}
	for c := range t.configs {
		c.SetSessionTicketKeys(t.keys)
	}
}

// use registers configs (replacing the previous set) and gives them the keys.
func (t *ticketKeys) use(configs []*tls.Config) {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.configs)
	for _, c := range configs {
		c.SetSessionTicketKeys(t.keys)
		t.configs[c] = struct{}{}
	}
}

func (t *ticketKeys) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}

func (t *ticketKeys) run(every time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			t.rotate()
		case <-stop:
			return
		}
	}
}

// cipherSuiteNames holds every suite crypto/tls knows, built once:
// tls.CipherSuiteName builds its lists on each call.
var cipherSuiteNames = func() map[uint16]string {
	m := make(map[uint16]string)
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		m[s.ID] = s.Name
	}
	return m
}()

// cipherSuiteName is tls.CipherSuiteName without the per-call allocation.
func cipherSuiteName(id uint16) string {
	if n, ok := cipherSuiteNames[id]; ok {
		return n
	}
	return tls.CipherSuiteName(id)
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "1.3"
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS11:
		return "1.1"
	case tls.VersionTLS10:
		return "1.0"
	}
	return "unknown"
}
