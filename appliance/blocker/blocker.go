// Package blocker is the engine's view of the source blocklist: policy stages
// escalate abusive sources through the Blocker interface, and the daemon backs
// it with the XDP guard's map when the guard is active, with the user-space
// List otherwise (or in addition, so the engine refuses a blocked source even
// on interfaces without the guard).
package blocker

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Entry is one blocked prefix.
type Entry struct {
	Prefix  netip.Prefix `json:"prefix"`
	Expires time.Time    `json:"expires,omitzero"` // zero: never
	Reason  string       `json:"reason"`           // why it is here: "manual", "ratelimit:orders", "alert:auth_failures"
	Source  string       `json:"source"`           // who added it: admin, ratelimit, anomaly
}

// Blocker blocks source prefixes for a time.
type Blocker interface {
	// Block adds or refreshes prefix for ttl (0: no expiry).
	Block(prefix netip.Prefix, ttl time.Duration, reason, source string) error
}

// List is a user-space blocklist with expiry, safe for concurrent use.
type List struct {
	mu      sync.RWMutex
	entries map[netip.Prefix]Entry
	now     func() time.Time
}

// NewList returns an empty list. now may be nil (time.Now).
func NewList(now func() time.Time) *List {
	if now == nil {
		now = time.Now
	}
	return &List{entries: make(map[netip.Prefix]Entry), now: now}
}

// Block implements Blocker.
func (l *List) Block(prefix netip.Prefix, ttl time.Duration, reason, source string) error {
	e := Entry{Prefix: prefix.Masked(), Reason: reason, Source: source}
	if ttl > 0 {
		e.Expires = l.now().Add(ttl)
	}
	l.mu.Lock()
	l.entries[e.Prefix] = e
	l.mu.Unlock()
	return nil
}

// Delete removes prefix and reports whether it was present.
func (l *List) Delete(prefix netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.entries[prefix.Masked()]
	delete(l.entries, prefix.Masked())
	return ok
}

// Blocked reports whether addr falls in a live entry, and that entry.
func (l *List) Blocked(addr netip.Addr) (Entry, bool) {
	addr = addr.Unmap()
	now := l.now()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if len(l.entries) == 0 {
		return Entry{}, false
	}
	for p, e := range l.entries {
		if p.Contains(addr) && (e.Expires.IsZero() || now.Before(e.Expires)) {
			return e, true
		}
	}
	return Entry{}, false
}

// Entries returns the live entries, expired ones pruned, sorted by prefix.
func (l *List) Entries() []Entry {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Entry, 0, len(l.entries))
	for p, e := range l.entries {
		if !e.Expires.IsZero() && !now.Before(e.Expires) {
			delete(l.entries, p)
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return out
}
