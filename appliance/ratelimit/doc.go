// Package ratelimit owns the per-route token-bucket rate limiter of the
// policy pipeline: buckets keyed by identity or client address in a bounded,
// sharded key table with segmented-LRU eviction, the 429 response headers of
// the IETF httpapi ratelimit-headers draft, and the escalation signal for a
// source that keeps exceeding its limit. It knows nothing of authentication
// or of the blocklist behind escalation; the policy package wires those.
package ratelimit
