package ratelimit

import (
	"hash/maphash"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Result is the outcome of one Allow call.
type Result struct {
	// Allowed is false when the request must be refused with 429.
	Allowed bool
	// Remaining is the number of whole tokens left after this request.
	Remaining int
	// RetryAfter is how long until one token is available (zero if allowed).
	RetryAfter time.Duration
	// Reset is how long until the bucket is full again.
	Reset time.Duration
	// Escalate is true on the refusal that crossed the escalation threshold.
	Escalate bool
}

// Stats describes the key table.
type Stats struct {
	Keys      int    `json:"keys"`      // buckets held now
	Capacity  int    `json:"capacity"`  // most buckets ever held (≤ max_keys)
	Evictions uint64 `json:"evictions"` // buckets dropped to make room
}

// Limiter is a set of token buckets, one per key, held in a table of fixed
// capacity. It is safe for concurrent use.
type Limiter struct {
	s      settings
	now    func() time.Time
	base   time.Time // monotonic origin for bucket timestamps
	seed   maphash.Seed
	shards []shard
	mask   uint64
	policy string // RateLimit-Policy header value
	name   string // policy name in RateLimit headers
}

// New validates cfg and returns its limiter. now may be nil (time.Now).
func New(cfg Config, now func() time.Time) (*Limiter, error) {
	s, err := cfg.parse()
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	nShards := 1
	if s.maxKeys >= 1024 {
		nShards = 16
	}
	per := s.maxKeys / nShards
	l := &Limiter{
		s: s, now: now, base: now(), seed: maphash.MakeSeed(),
		shards: make([]shard, nShards), mask: uint64(nShards - 1), name: "default",
	}
	for i := range l.shards {
		l.shards[i].init(per)
	}
	window := max(1, int(math.Ceil(float64(s.burst)/s.perSec)))
	l.policy = `"` + l.name + `";q=` + strconv.Itoa(s.burst) + ";w=" + strconv.Itoa(window)
	return l, nil
}

// KeyKind returns "identity" or "client_ip".
func (l *Limiter) KeyKind() string { return l.s.key }

// Escalates reports whether escalation is configured, and its block TTL.
func (l *Limiter) Escalates() (bool, time.Duration) { return l.s.escalate, l.s.blockTTL }

// EscalationWindow returns the configured refusal count and window.
func (l *Limiter) EscalationWindow() (after int, within time.Duration) {
	return l.s.after, l.s.within
}

// Allow takes one token from key's bucket.
func (l *Limiter) Allow(key string) Result {
	h := maphash.String(l.seed, key)
	sh := &l.shards[(h>>56)&l.mask]
	now := int64(l.now().Sub(l.base))
	sh.mu.Lock()
	e := sh.get(h, now, float64(l.s.burst))
	res := l.take(e, now)
	sh.mu.Unlock()
	return res
}

// take applies the token bucket to e; the shard lock is held.
func (l *Limiter) take(e *entry, now int64) Result {
	burst := float64(l.s.burst)
	if elapsed := now - e.last; elapsed > 0 {
		e.tokens = min(burst, e.tokens+float64(elapsed)/1e9*l.s.perSec)
		e.last = now
	}
	var res Result
	if e.tokens >= 1 {
		e.tokens--
		res.Allowed = true
	} else {
		res.RetryAfter = seconds((1 - e.tokens) / l.s.perSec)
		if l.s.escalate {
			if now-e.strikeStart > int64(l.s.within) || e.strikes == 0 {
				e.strikeStart, e.strikes = now, 0
			}
			e.strikes++
			if int(e.strikes) >= l.s.after {
				res.Escalate = true
				e.strikes = 0
			}
		}
	}
	res.Remaining = int(e.tokens)
	res.Reset = seconds((burst - e.tokens) / l.s.perSec)
	return res
}

func seconds(s float64) time.Duration { return time.Duration(s * 1e9) }

// SetHeaders writes the RateLimit-Policy and RateLimit fields of the IETF
// httpapi ratelimit-headers draft, and Retry-After on a refusal.
func (l *Limiter) SetHeaders(h http.Header, res Result) {
	h.Set("RateLimit-Policy", l.policy)
	h.Set("RateLimit", `"`+l.name+`";r=`+strconv.Itoa(res.Remaining)+";t="+strconv.Itoa(ceilSeconds(res.Reset)))
	if !res.Allowed {
		h.Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(res.RetryAfter))))
	}
}

func ceilSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

// Stats returns the key table's size, capacity and evictions so far.
func (l *Limiter) Stats() Stats {
	var st Stats
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		st.Keys += len(sh.index)
		st.Capacity += sh.capacity
		st.Evictions += sh.evictions
		sh.mu.Unlock()
	}
	return st
}

// shard is one lock's worth of the key table: a map from key hash to a slot
// in entries, and two intrusive LRU lists over the slots. New keys enter the
// probation list; a key seen again moves to the protected list, which holds
// at most 4/5 of the capacity. Eviction takes the probation list's oldest
// first, so a flood of one-off keys churns probation and leaves the buckets
// of returning clients (including the throttled ones) alone. Keys are held as
// 64-bit hashes under a per-process random seed, so a slot has a fixed size
// whatever the key.
type shard struct {
	mu        sync.Mutex
	index     map[uint64]int32
	entries   []entry
	capacity  int
	protCap   int
	prob      list
	prot      list
	evictions uint64
}

type entry struct {
	hash        uint64
	tokens      float64
	last        int64 // ns since Limiter.base
	strikeStart int64
	strikes     uint32
	protected   bool
	prev, next  int32
}

type list struct {
	head, tail int32
	n          int
}

const none int32 = -1

func (s *shard) init(capacity int) {
	s.capacity = capacity
	s.protCap = capacity * 4 / 5
	s.index = make(map[uint64]int32, min(capacity, 64))
	s.entries = make([]entry, 0, min(capacity, 64))
	s.prob = list{head: none, tail: none}
	s.prot = list{head: none, tail: none}
}

// get returns the entry for h, creating it with a full bucket (evicting if
// the shard is full) or refreshing its recency.
func (s *shard) get(h uint64, now int64, burst float64) *entry {
	if i, ok := s.index[h]; ok {
		e := &s.entries[i]
		if e.protected {
			s.unlink(&s.prot, i)
			s.pushFront(&s.prot, i)
		} else if s.protCap > 0 {
			s.unlink(&s.prob, i)
			e.protected = true
			s.pushFront(&s.prot, i)
			if s.prot.n > s.protCap {
				t := s.prot.tail
				s.unlink(&s.prot, t)
				s.entries[t].protected = false
				s.pushFront(&s.prob, t)
			}
		} else {
			s.unlink(&s.prob, i)
			s.pushFront(&s.prob, i)
		}
		return e
	}
	var i int32
	if len(s.index) < s.capacity {
		s.entries = append(s.entries, entry{})
		i = int32(len(s.entries) - 1)
	} else {
		from := &s.prob
		if from.n == 0 {
			from = &s.prot
		}
		i = from.tail
		s.unlink(from, i)
		delete(s.index, s.entries[i].hash)
		s.evictions++
	}
	s.entries[i] = entry{hash: h, tokens: burst, last: now, prev: none, next: none}
	s.index[h] = i
	s.pushFront(&s.prob, i)
	return &s.entries[i]
}

func (s *shard) unlink(l *list, i int32) {
	e := &s.entries[i]
	if e.prev != none {
		s.entries[e.prev].next = e.next
	} else {
		l.head = e.next
	}
	if e.next != none {
		s.entries[e.next].prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = none, none
	l.n--
}

func (s *shard) pushFront(l *list, i int32) {
	e := &s.entries[i]
	e.prev, e.next = none, l.head
	if l.head != none {
		s.entries[l.head].prev = i
	} else {
		l.tail = i
	}
	l.head = i
	l.n++
}
