package authn

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// MaxJWKSSize bounds a JWKS document read from a file or URL.
const MaxJWKSSize = 1 << 20

// MinRefetchInterval is the least time between two JWKS fetches a token
// with an unknown kid (or a failed source) may cause.
const MinRefetchInterval = 30 * time.Second

// fetchTimeout bounds one JWKS fetch.
const fetchTimeout = 10 * time.Second

// SourceStatus is what `sealgate status` shows about one JWKS source.
type SourceStatus struct {
	Issuer      string    `json:"issuer"`
	Kind        string    `json:"kind"`                  // file | url
	Location    string    `json:"location"`              // path or URL
	Keys        int       `json:"keys"`                  // usable keys held (the last good set)
	Fetches     int       `json:"fetches"`               // load attempts so far
	LastFetch   time.Time `json:"last_fetch,omitzero"`   // last attempt
	LastSuccess time.Time `json:"last_success,omitzero"` // last successful load
	LastError   string    `json:"last_error,omitempty"`  // error of the last attempt, if it failed
}

// keySource holds one issuer's JWKS: loaded from a file or fetched over
// https, refreshed in the background, and re-fetched on demand (at most once
// per MinRefetchInterval) when a token names an unknown kid. A failed fetch
// keeps the last good keys.
type keySource struct {
	issuer, kind, loc string
	client            *http.Client
	now               func() time.Time
	refresh           time.Duration
	log               *slog.Logger

	mu          sync.RWMutex
	keys        []jose.JSONWebKey // public signing keys only
	fingerprint string            // kids and thumbprints of keys
	gen         uint64            // bumped whenever the key set changes
	lastAttempt time.Time
	lastSuccess time.Time
	lastErr     error
	fetches     int

	fetchMu   sync.Mutex // one fetch at a time
	stop      chan struct{}
	done      chan struct{}
	started   bool
	closeOnce sync.Once
}

func newKeySource(s jwtSettings, client *http.Client, now func() time.Time, log *slog.Logger) *keySource {
	ks := &keySource{
		issuer: s.Issuer, client: client, now: now, refresh: s.refresh, log: log,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if s.JWKSFile != "" {
		ks.kind, ks.loc = "file", s.JWKSFile
	} else {
		ks.kind, ks.loc = "url", s.JWKSURL
	}
	return ks
}

// start runs the refresher: an immediate load unless one happened already,
// then one every refresh interval (every MinRefetchInterval while failing).
func (ks *keySource) start() {
	ks.started = true
	go func() {
		defer close(ks.done)
		var err error
		if !ks.loadIfStale(context.Background()) {
			err = ks.status().err()
		}
		for {
			wait := ks.refresh
			if err != nil {
				wait = min(wait, MinRefetchInterval)
			}
			t := time.NewTimer(wait)
			select {
			case <-ks.stop:
				t.Stop()
				return
			case <-t.C:
			}
			err = ks.load(context.Background())
		}
	}()
}

// close stops the refresher and waits for it; it may be called repeatedly.
func (ks *keySource) close() {
	ks.closeOnce.Do(func() {
		close(ks.stop)
		if ks.started {
			<-ks.done
		}
	})
}

// loadIfStale loads unless an attempt was made within MinRefetchInterval; it
// reports whether keys are available afterwards.
func (ks *keySource) loadIfStale(ctx context.Context) bool {
	ks.fetchMu.Lock()
	ks.mu.RLock()
	fresh := !ks.lastAttempt.IsZero() && ks.now().Sub(ks.lastAttempt) < MinRefetchInterval
	ks.mu.RUnlock()
	if !fresh {
		ks.loadLocked(ctx)
	}
	ks.fetchMu.Unlock()
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return len(ks.keys) > 0
}

func (ks *keySource) load(ctx context.Context) error {
	ks.fetchMu.Lock()
	defer ks.fetchMu.Unlock()
	return ks.loadLocked(ctx)
}

func (ks *keySource) loadLocked(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	keys, err := ks.read(ctx)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.lastAttempt = ks.now()
	ks.fetches++
	if err != nil {
		err = fmt.Errorf("loading jwks from %s: %w", ks.loc, err)
		ks.lastErr = err
		ks.log.Warn("jwks refresh failed; keeping the last good keys", "issuer", ks.issuer, "source", ks.loc, "keys", len(ks.keys), "err", err)
		return err
	}
	if fp := fingerprint(keys); fp != ks.fingerprint {
		ks.fingerprint = fp
		ks.gen++ // verified tokens in the cache are checked again
	}
	ks.keys, ks.lastErr, ks.lastSuccess = keys, nil, ks.lastAttempt
	ks.log.Debug("jwks loaded", "issuer", ks.issuer, "source", ks.loc, "keys", len(keys))
	return nil
}

func (ks *keySource) read(ctx context.Context) ([]jose.JSONWebKey, error) {
	var body []byte
	if ks.kind == "file" {
		f, err := os.Open(ks.loc)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		body, err = io.ReadAll(io.LimitReader(f, MaxJWKSSize+1))
		if err != nil {
			return nil, err
		}
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.loc, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		resp, err := ks.client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("status %s", resp.Status)
		}
		body, err = io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
		if err != nil {
			return nil, err
		}
	}
	if len(body) > MaxJWKSSize {
		return nil, fmt.Errorf("document larger than %d bytes", MaxJWKSSize)
	}
	return ParseJWKS(body)
}

// ParseJWKS parses a JWKS document and returns its public signing keys.
// Keys that are not for signatures (use "enc"), symmetric keys, and keys of
// types the JOSE library does not know are skipped; private keys are reduced
// to their public halves. It fails when no usable key remains.
func ParseJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	var out []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		if k.Use == "enc" || !k.Valid() {
			continue
		}
		if _, symmetric := k.Key.([]byte); symmetric {
			continue
		}
		if !k.IsPublic() {
			k = k.Public()
			if !k.Valid() {
				continue
			}
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errors.New("no usable public signing keys in the JWKS document")
	}
	return out, nil
}

// fingerprint identifies a key set by its kids and RFC 7638 thumbprints.
func fingerprint(keys []jose.JSONWebKey) string {
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		tp, _ := k.Thumbprint(crypto.SHA256)
		parts = append(parts, k.KeyID+"="+string(tp)+"/"+k.Algorithm)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// generation changes whenever the key set does.
func (ks *keySource) generation() uint64 {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.gen
}

// lookup returns the keys that may have signed a token with kid and alg.
func (ks *keySource) lookup(kid string, alg jose.SignatureAlgorithm) []jose.JSONWebKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	var out []jose.JSONWebKey
	for _, k := range ks.keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			continue
		}
		out = append(out, k)
	}
	return out
}

type sourceState struct {
	SourceStatus
	e error
}

func (s sourceState) err() error { return s.e }

func (ks *keySource) status() sourceState {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	st := sourceState{SourceStatus: SourceStatus{
		Issuer: ks.issuer, Kind: ks.kind, Location: ks.loc, Keys: len(ks.keys),
		Fetches: ks.fetches, LastFetch: ks.lastAttempt, LastSuccess: ks.lastSuccess,
	}, e: ks.lastErr}
	if ks.lastErr != nil {
		st.LastError = ks.lastErr.Error()
	}
	return st
}
