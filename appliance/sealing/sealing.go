// Package sealing is the engine's sealing endpoint: it serves the key
// configuration and session opening under /.well-known/sealgate/, and its
// gateway unseals a sealed request into an ordinary *http.Request that takes
// exactly the path a plain request takes, then seals the response back
// record by record. The protocol itself lives in crypto/seal; this package
// owns only the HTTP side, the key schedule and the counters.
package sealing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sealgate/sealgate/appliance/metrics"
	"github.com/sealgate/sealgate/appliance/problem"
	"github.com/sealgate/sealgate/appliance/reqctx"
	"github.com/sealgate/sealgate/crypto/cpu"
	"github.com/sealgate/sealgate/crypto/seal"
)

// Paths the endpoint serves.
const (
	PathPrefix  = "/.well-known/sealgate/"
	PathKeys    = PathPrefix + "keys"
	PathSession = PathPrefix + "session"
	PathGateway = PathPrefix + "gateway"
)

// KeyInfo describes a key generation, never its material.
type KeyInfo = seal.KeyInfo

// Options configure an Endpoint. Zero values take the defaults of Config.
type Options struct {
	// StateDir is the daemon's state directory; keys live in StateDir/seal
	// (0700, files 0600). Empty keeps keys in memory (tests only).
	StateDir string
	// Profile orders the AEADs of the key configuration.
	Profile        cpu.Profile
	KeyRotation    time.Duration
	KeyGrace       time.Duration
	TicketLifetime time.Duration
	KEMs           []string
	MaxSessions    int
	MaxHeaderBytes int
	Metrics        *metrics.Metrics
	Logger         *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MaintainEvery is how often scheduled rotation and expiry run; default
	// one minute.
	MaintainEvery time.Duration
}

// Endpoint is the sealing endpoint. It is safe for concurrent use.
type Endpoint struct {
	srv      *seal.Server
	m        *metrics.Metrics
	log      *slog.Logger
	maxHead  int
	stop     chan struct{}
	done     chan struct{}
	closeErr error
	once     sync.Once
}

// New loads or creates the sealing keys and starts the maintenance loop.
func New(o Options) (*Endpoint, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "sealing")
	cfg := seal.ServerConfig{
		KeyRotation: o.KeyRotation, KeyGrace: o.KeyGrace, TicketLifetime: o.TicketLifetime,
		MaxSessions: o.MaxSessions, Now: o.Now,
	}
	if o.StateDir != "" {
		cfg.Dir = filepath.Join(o.StateDir, "seal")
	}
	for _, name := range o.KEMs {
		k, err := seal.ParseKEM(name)
		if err != nil {
			return nil, fmt.Errorf("sealing: %w", err)
		}
		cfg.KEMs = append(cfg.KEMs, k)
	}
	order := o.Profile.AEADOrder
	if len(order) == 0 {
		p, err := cpu.NewProfile(cpu.Detect(), cpu.Auto)
		if err != nil {
			return nil, fmt.Errorf("sealing: %w", err)
		}
		order = p.AEADOrder
	}
	for _, a := range order {
		id, err := seal.AEADFromCPU(a)
		if err != nil {
			return nil, fmt.Errorf("sealing: %w", err)
		}
		cfg.AEADs = append(cfg.AEADs, id)
	}
	srv, err := seal.NewServer(cfg)
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	e := &Endpoint{srv: srv, m: o.Metrics, log: log, maxHead: o.MaxHeaderBytes,
		stop: make(chan struct{}), done: make(chan struct{})}
	if e.maxHead <= 0 {
		e.maxHead = 64 << 10
	}
	every := o.MaintainEvery
	if every <= 0 {
		every = time.Minute
	}
	cur := e.current()
	log.Info("sealing keys loaded", "key_id", cur.ID, "kems", cur.KEMs, "aead_order", order)
	go e.maintain(every)
	return e, nil
}

func (e *Endpoint) current() KeyInfo {
	for _, k := range e.srv.Keys() {
		if k.State == seal.KeyCurrent {
			return k
		}
	}
	return KeyInfo{}
}

func (e *Endpoint) maintain(every time.Duration) {
	defer close(e.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			before := e.current().ID
			if err := e.srv.Maintain(); err != nil {
				e.log.Error("sealing key maintenance", "err", err)
				continue
			}
			if after := e.current(); after.ID != before {
				e.log.Info("sealing keys rotated on schedule", "key_id", after.ID, "previous_key_id", before)
			}
		}
	}
}

// Rotate makes a new key generation current now (sealgate keys rotate).
func (e *Endpoint) Rotate() (KeyInfo, error) {
	before := e.current().ID
	k, err := e.srv.Rotate()
	if err != nil {
		return KeyInfo{}, fmt.Errorf("rotating sealing keys: %w", err)
	}
	e.log.Info("sealing keys rotated on demand", "key_id", k.ID, "previous_key_id", before)
	return k, nil
}

// Keys lists the key generations: ids, KEMs, state, times; never material.
func (e *Endpoint) Keys() []KeyInfo { return e.srv.Keys() }

// Close stops maintenance and saves the replay windows so that sessions
// survive a restart. It is safe to call more than once.
func (e *Endpoint) Close() error {
	e.once.Do(func() {
		close(e.stop)
		<-e.done
		e.closeErr = e.srv.Close()
	})
	return e.closeErr
}

type sealedKey struct{}

// IsSealed reports whether r arrived sealed: the engine's reqctx flag, or
// (without a reqctx, as in unit tests) the endpoint's own mark.
func IsSealed(r *http.Request) bool {
	if info := reqctx.From(r.Context()); info != nil && info.Sealed {
		return true
	}
	v, _ := r.Context().Value(sealedKey{}).(bool)
	return v
}

// Handler serves /.well-known/sealgate/ and passes every other request to
// next unchanged; unsealed gateway requests reach next too, marked sealed.
func (e *Endpoint) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathKeys:
			e.serveKeys(w, r)
		case PathSession:
			e.serveSession(w, r)
		case PathGateway:
			e.serveGateway(w, r, next)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	problem.Error(w, r, http.StatusMethodNotAllowed, "use "+allow)
}

func (e *Endpoint) serveKeys(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	b := e.srv.KeyConfigs()
	h := w.Header()
	h.Set("Content-Type", seal.MediaTypeKeys)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "max-age=300")
	if r.Method == http.MethodHead {
		return
	}
	w.Write(b)
}

// maxSessionRequest bounds a session request: header, the largest
// encapsulated key (ML-KEM-768+X25519) and the sealed options.
const maxSessionRequest = 4096

func (e *Endpoint) serveSession(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, "POST")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != seal.MediaTypeSession {
		problem.Error(w, r, http.StatusUnsupportedMediaType, "send the session request as "+seal.MediaTypeSession)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSessionRequest+1))
	if err != nil {
		e.reject(w, r, fmt.Errorf("%w: reading session request: %v", seal.ErrMalformed, err))
		return
	}
	if len(body) > maxSessionRequest {
		e.reject(w, r, fmt.Errorf("%w: session request larger than %d bytes", seal.ErrMalformed, maxSessionRequest))
		return
	}
	resp, info, err := e.srv.OpenSession(body)
	if err != nil {
		e.reject(w, r, err)
		return
	}
	if e.m != nil {
		e.m.SealSessions.Inc()
	}
	e.log.Debug("sealed session opened", "key_id", info.KeyID, "kem", info.KEM.String(), "aead", info.AEAD.String())
	h := w.Header()
	h.Set("Content-Type", seal.MediaTypeSessionResponse)
	h.Set("Content-Length", strconv.Itoa(len(resp)))
	h.Set("Cache-Control", "no-store")
	w.Write(resp)
}

// Problem types for sealing errors (PROTOCOL.md, "Errors").
const (
	ProblemKey         = "https://iana.org/assignments/http-problem-types#ohttp-key"
	ProblemMalformed   = "urn:sealgate:problem:seal:malformed"
	ProblemUnsupported = "urn:sealgate:problem:seal:unsupported"
	ProblemDecrypt     = "urn:sealgate:problem:seal:decrypt"
	ProblemReplay      = "urn:sealgate:problem:seal:replay"
	ProblemStale       = "urn:sealgate:problem:seal:stale-session"
	ProblemExpired     = "urn:sealgate:problem:seal:expired-session"
	ProblemCapacity    = "urn:sealgate:problem:seal:capacity"
)

// Reject reasons, the fixed label set of sealgate_seal_rejects_total.
var rejectClasses = []struct {
	err    error
	reason string
	status int
	typ    string
	title  string
}{
	{seal.ErrUnknownKey, "unknown_key", http.StatusUnprocessableEntity, ProblemKey, "key identifier unknown"},
	{seal.ErrRetiredKey, "retired_key", http.StatusUnprocessableEntity, ProblemKey, "key identifier retired"},
	{seal.ErrReplay, "replay", http.StatusBadRequest, ProblemReplay, "replayed sealed message"},
	{seal.ErrStale, "stale", http.StatusBadRequest, ProblemStale, "stale session"},
	{seal.ErrExpired, "expired", http.StatusBadRequest, ProblemExpired, "session expired"},
	{seal.ErrDecrypt, "decrypt", http.StatusBadRequest, ProblemDecrypt, "sealed message failed authentication"},
	{seal.ErrUnsupported, "unsupported", http.StatusBadRequest, ProblemUnsupported, "unsupported sealing parameters"},
	{seal.ErrCapacity, "capacity", http.StatusServiceUnavailable, ProblemCapacity, "too many sealed sessions"},
	{seal.ErrTruncated, "malformed", http.StatusBadRequest, ProblemMalformed, "malformed sealed message"},
	{seal.ErrMalformed, "malformed", http.StatusBadRequest, ProblemMalformed, "malformed sealed message"},
	{seal.ErrMalformedBHTTP, "malformed", http.StatusBadRequest, ProblemMalformed, "malformed sealed message"},
}

// RejectReasons lists every reason label the endpoint counts.
func RejectReasons() []string {
	var out []string
	for _, c := range rejectClasses {
		if !slices.Contains(out, c.reason) {
			out = append(out, c.reason)
		}
	}
	return out
}

func classify(err error) (reason string, status int, typ, title string) {
	for _, c := range rejectClasses {
		if errors.Is(err, c.err) {
			return c.reason, c.status, c.typ, c.title
		}
	}
	return "malformed", http.StatusBadRequest, ProblemMalformed, "malformed sealed message"
}

func (e *Endpoint) countReject(err error) string {
	reason, _, _, _ := classify(err)
	if e.m != nil {
		e.m.SealRejects.WithLabelValues(reason).Inc()
	}
	return reason
}

// reject answers err as problem+json (never sealed: the client could not
// read a sealed answer to a message that failed) and counts it.
func (e *Endpoint) reject(w http.ResponseWriter, r *http.Request, err error) {
	reason := e.countReject(err)
	_, status, typ, title := classify(err)
	e.log.Debug("sealed message refused", "reason", reason, "err", err.Error(), "remote", r.RemoteAddr)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	p := problem.New(status, title, err.Error())
	p.Type = typ
	p.RequestID = r.Header.Get("X-Request-Id")
	problem.Write(w, p)
}

// withSealed marks ctx for IsSealed.
func withSealed(ctx context.Context) context.Context {
	return context.WithValue(ctx, sealedKey{}, true)
}

func problemError(w http.ResponseWriter, r *http.Request, status int, detail string) {
	problem.Error(w, r, status, detail)
}
