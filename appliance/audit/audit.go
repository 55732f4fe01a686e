// Package audit owns the security audit log: one JSON object per line for each
// admin action (reloads, key rotations, attach/detach, blocklist changes) and
// each security event (denials above a threshold, DLP and WAF blocks, alerts).
// It is separate from the access log so it can be kept longer and shipped to a
// SIEM. It never receives secrets: callers pass kinds, names and counts.
//
// Configured at the top level:
//
//	[audit]
//	path = "/var/log/sealgate/audit.log" # "" writes to stderr (the journal)
//
// A line looks like
//
//	{"time":"2026-11-27T09:00:00Z","kind":"block_add","prefix":"203.0.113.66/32","ttl":"1h0m0s","reason":"alert:enumeration","source":"anomaly"}
package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Event kinds written by sealgate. Event accepts any non-empty kind; these
// are the ones the engine and daemon use.
const (
	KindReload           = "reload"
	KindKeyRotate        = "key_rotate"
	KindAttach           = "attach"
	KindDetach           = "detach"
	KindBlockAdd         = "block_add"
	KindBlockDel         = "block_del"
	KindDenialsThreshold = "denials_threshold"
	KindDLPBlock         = "dlp_block"
	KindWAFBlock         = "waf_block"
	KindWAFMatch         = "waf_match" // a WAF match in detect mode: logged, request passed
	KindAlert            = "alert"
)

// Config is the top-level [audit] table.
type Config struct {
	// Path is the audit log file, opened for append with mode 0640 and
	// reopened by Reopen (after logrotate moves it). Empty writes JSON lines
	// to stderr, which systemd's journal captures.
	Path string `toml:"path"`
}

// Log writes audit events. A nil *Log discards events, so stages can hold an
// optional one without checks. It is safe for concurrent use.
type Log struct {
	path   string
	logger *slog.Logger // operational messages about the audit log itself
	out    *switchWriter
	h      slog.Handler
	now    func() time.Time
}

// switchWriter serialises writes and lets Reopen swap the file underneath.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
	f  *os.File // nil when writing to stderr
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// New opens the audit log described by cfg. logger receives operational
// errors (a failed write), never event contents; it may be nil.
func New(cfg Config, logger *slog.Logger) (*Log, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{path: cfg.Path, logger: logger.With("component", "audit"), now: time.Now}
	sw := &switchWriter{w: os.Stderr}
	if cfg.Path != "" {
		if !filepath.IsAbs(cfg.Path) {
			return nil, fmt.Errorf("audit.path: %q must be an absolute path", cfg.Path)
		}
		f, err := openFile(cfg.Path)
		if err != nil {
			return nil, fmt.Errorf("audit.path: %w", err)
		}
		sw.w, sw.f = f, f
	}
	l.out = sw
	l.h = slog.NewJSONHandler(sw, &slog.HandlerOptions{ReplaceAttr: replaceAttr})
	return l, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w (check that the directory exists and is writable by the sealgate user)", err)
	}
	return f, nil
}

// replaceAttr turns slog's record into the audit line format: "time", "kind"
// (the record message) and the attributes; the level is meaningless here.
func replaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		return slog.Attr{}
	case slog.MessageKey:
		a.Key = "kind"
	}
	return a
}

// Event writes one line {"time":..., "kind": kind, attrs...}. Attribute keys
// "time" and "kind" are reserved. Write errors are reported to the logger,
// not to the caller: an audit failure must not fail the request or action
// being audited.
func (l *Log) Event(kind string, attrs ...slog.Attr) {
	if l == nil || kind == "" {
		return
	}
	r := slog.NewRecord(l.now(), slog.LevelInfo, kind, 0)
	r.AddAttrs(attrs...)
	if err := l.h.Handle(context.Background(), r); err != nil {
		l.logger.Error("writing audit event", "kind", kind, "err", err)
	}
}

// Reopen closes and reopens the file at the configured path, for use after
// logrotate has moved it (SIGHUP or a postrotate hook). It is a no-op when
// writing to stderr. On failure the old file stays in use.
func (l *Log) Reopen() error {
	if l == nil || l.path == "" {
		return nil
	}
	f, err := openFile(l.path)
	if err != nil {
		return fmt.Errorf("reopening audit log: %w", err)
	}
	l.out.mu.Lock()
	old := l.out.f
	l.out.w, l.out.f = f, f
	l.out.mu.Unlock()
	if old != nil {
		if err := old.Close(); err != nil {
			l.logger.Warn("closing rotated audit log", "err", err)
		}
	}
	return nil
}

// Close closes the file. Events after Close are reported to the logger and
// dropped.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	if l.out.f == nil {
		return nil
	}
	err := l.out.f.Close()
	l.out.w = closedWriter{}
	l.out.f = nil
	return err
}

type closedWriter struct{}

func (closedWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }
