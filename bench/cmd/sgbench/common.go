package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"
)

// clientTLS trusts only the benchmark certificate and offers what every
// peer's OpenSSL-based load generator offers: TLS 1.3 with X25519 (OpenSSL
// 3.0 has no hybrid post-quantum group, so Go's default would be unfair).
func clientTLS(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading -ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-ca %s: no PEM certificate", caFile)
	}
	return &tls.Config{
		RootCAs:          pool,
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
	}, nil
}

// h1Transport is a keep-alive HTTP/1.1 transport with at most conns
// connections.
func h1Transport(tc *tls.Config, conns int) *http.Transport {
	return &http.Transport{
		TLSClientConfig:     tc,
		MaxConnsPerHost:     conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // no h2
	}
}

// percentile returns the q-quantile (0..1) of sorted, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// latencyMeasurements summarises latencies as p50/p99/p99.9 in milliseconds.
func latencyMeasurements(lat []time.Duration) []Measurement {
	slices.Sort(lat)
	return []Measurement{
		{"p50_ms", ms(percentile(lat, 0.50))},
		{"p99_ms", ms(percentile(lat, 0.99))},
		{"p999_ms", ms(percentile(lat, 0.999))},
	}
}

// exitUnavailable is the exit status for errUnavailable.
const exitUnavailable = 3
