package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Key kinds a route may limit by.
const (
	// KeyIdentity limits per authenticated identity (API key name, JWT issuer
	// and subject, certificate subject), falling back to the client address
	// for requests that carry no identity.
	KeyIdentity = "identity"
	// KeyClientIP limits per client address: IPv4 /32, IPv6 /64.
	KeyClientIP = "client_ip"
)

// DefaultMaxKeys is the key table size when max_keys is not set.
const DefaultMaxKeys = 100000

// Config is a route's [route.rate_limit] table.
type Config struct {
	// Key is what a bucket belongs to: "identity" (default) or "client_ip".
	Key string `toml:"key"`
	// Rate is the sustained rate: "10/s", "600/m", "1000/h" or "5/250ms".
	Rate string `toml:"rate"`
	// Burst is the bucket size: how many requests may arrive at once.
	// Zero means one second's worth of Rate, at least 1.
	Burst int `toml:"burst"`
	// MaxKeys bounds the key table (default 100000). When it is full the
	// least recently seen one-off keys are forgotten first.
	MaxKeys int `toml:"max_keys"`
	// Escalate optionally blocks a source that keeps exceeding the limit.
	Escalate *Escalate `toml:"escalate"`
}

// Escalate is the optional [route.rate_limit.escalate] table: a key refused
// After times within Within gets the client address that tripped it blocked
// for BlockTTL.
type Escalate struct {
	// After is the number of refused (429) requests that escalates.
	After int `toml:"after"`
	// Within is the window the refusals are counted in, e.g. "1m".
	Within string `toml:"within"`
	// BlockTTL is how long the source stays blocked, e.g. "10m".
	BlockTTL string `toml:"block_ttl"`
}

// IsZero reports whether c configures no rate limit.
func (c Config) IsZero() bool {
	return c.Key == "" && c.Rate == "" && c.Burst == 0 && c.MaxKeys == 0 && c.Escalate == nil
}

// Validate checks c; errors name the field under "rate_limit.".
func (c Config) Validate() error {
	_, err := c.parse()
	return err
}

// settings is a validated Config.
type settings struct {
	key      string
	perSec   float64 // tokens per second
	burst    int
	maxKeys  int
	escalate bool
	after    int
	within   time.Duration
	blockTTL time.Duration
}

// parse validates c; error messages name the field under "rate_limit.".
func (c Config) parse() (settings, error) {
	s := settings{key: c.Key, burst: c.Burst, maxKeys: c.MaxKeys}
	switch c.Key {
	case "":
		s.key = KeyIdentity
	case KeyIdentity, KeyClientIP:
	default:
		return s, fmt.Errorf("rate_limit.key: %q is not one of identity, client_ip", c.Key)
	}
	if c.Rate == "" {
		return s, errors.New(`rate_limit.rate: missing (write it as "10/s", "600/m" or "1000/h")`)
	}
	perSec, err := ParseRate(c.Rate)
	if err != nil {
		return s, fmt.Errorf("rate_limit.rate: %w", err)
	}
	s.perSec = perSec
	switch {
	case c.Burst < 0:
		return s, fmt.Errorf("rate_limit.burst: %d is negative", c.Burst)
	case c.Burst == 0:
		s.burst = max(1, int(perSec))
	case c.Burst > 1<<20:
		return s, fmt.Errorf("rate_limit.burst: %d is larger than 1048576", c.Burst)
	}
	switch {
	case c.MaxKeys < 0:
		return s, fmt.Errorf("rate_limit.max_keys: %d is negative", c.MaxKeys)
	case c.MaxKeys == 0:
		s.maxKeys = DefaultMaxKeys
	case c.MaxKeys > 1<<26:
		return s, fmt.Errorf("rate_limit.max_keys: %d is larger than 67108864", c.MaxKeys)
	}
	if e := c.Escalate; e != nil {
		s.escalate = true
		if e.After < 1 {
			return s, fmt.Errorf("rate_limit.escalate.after: %d must be at least 1", e.After)
		}
		s.after = e.After
		if s.within, err = positiveDuration(e.Within); err != nil {
			return s, fmt.Errorf("rate_limit.escalate.within: %w", err)
		}
		if s.blockTTL, err = positiveDuration(e.BlockTTL); err != nil {
			return s, fmt.Errorf("rate_limit.escalate.block_ttl: %w", err)
		}
	}
	return s, nil
}

func positiveDuration(v string) (time.Duration, error) {
	if v == "" {
		return 0, errors.New(`missing (a duration such as "1m")`)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"1m\"", v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be positive", v)
	}
	return d, nil
}

// ParseRate parses "N/unit" into tokens per second. The unit is s, m or h,
// or a Go duration such as 250ms or 10s.
func ParseRate(v string) (float64, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(v), "/")
	if !ok {
		return 0, fmt.Errorf("%q is not of the form N/s, N/m or N/h", v)
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n <= 0 || n > 1e9 {
		return 0, fmt.Errorf("%q: count must be a positive number", v)
	}
	var per time.Duration
	switch unit = strings.TrimSpace(unit); unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		per, err = time.ParseDuration(unit)
		if err != nil || per <= 0 {
			return 0, fmt.Errorf("%q: unit must be s, m, h or a positive duration", v)
		}
	}
	return n / per.Seconds(), nil
}
