package sealing

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/crypto/seal"
)

// Config is the `[seal]` table of the config file.
//
//	[seal]
//	key_rotation     = "24h"   # a new key generation this often; "0s" disables scheduled rotation
//	key_grace        = "2h"    # a superseded generation keeps working this long, then gets 422
//	ticket_lifetime  = "1h"    # how long a session lasts before the client renews it
//	kems             = ["x25519", "p256", "mlkem768-x25519"]
//	max_sessions     = 100000  # replay windows held in memory
//	max_header_bytes = "64KiB" # largest inner header section
type Config struct {
	KeyRotation    string   `toml:"key_rotation"`
	KeyGrace       string   `toml:"key_grace"`
	TicketLifetime string   `toml:"ticket_lifetime"`
	KEMs           []string `toml:"kems"`
	MaxSessions    int      `toml:"max_sessions"`
	MaxHeaderBytes string   `toml:"max_header_bytes"`
}

// Apply validates c and copies it into o; errors name the field under
// prefix (e.g. "seal").
func (c Config) Apply(prefix string, o *Options) error {
	field := func(name string) string { return prefix + "." + name }
	dur := func(name, v string, def time.Duration, allowZero bool) (time.Duration, error) {
		if v == "" {
			return def, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("%s: %q is not a duration like \"24h\"", field(name), v)
		}
		if d < 0 || (d == 0 && !allowZero) {
			return 0, fmt.Errorf("%s: %q must be positive", field(name), v)
		}
		return d, nil
	}
	var err error
	if o.KeyRotation, err = dur("key_rotation", c.KeyRotation, 24*time.Hour, true); err != nil {
		return err
	}
	if o.TicketLifetime, err = dur("ticket_lifetime", c.TicketLifetime, time.Hour, false); err != nil {
		return err
	}
	if o.TicketLifetime < time.Minute || o.TicketLifetime > 7*24*time.Hour {
		return fmt.Errorf("%s: %s must be between 1m and 168h", field("ticket_lifetime"), o.TicketLifetime)
	}
	if o.KeyGrace, err = dur("key_grace", c.KeyGrace, 2*o.TicketLifetime, false); err != nil {
		return err
	}
	if o.KeyGrace < o.TicketLifetime {
		return fmt.Errorf("%s: %s is shorter than ticket_lifetime %s, so rotation would cut live sessions", field("key_grace"), o.KeyGrace, o.TicketLifetime)
	}
	if o.KeyRotation != 0 && o.KeyRotation < time.Minute {
		return fmt.Errorf("%s: %s is shorter than 1m", field("key_rotation"), o.KeyRotation)
	}
	o.KEMs = nil
	for i, k := range c.KEMs {
		if _, err := seal.ParseKEM(k); err != nil {
			return fmt.Errorf("%s[%d]: %w", field("kems"), i, err)
		}
		o.KEMs = append(o.KEMs, k)
	}
	if c.MaxSessions < 0 {
		return fmt.Errorf("%s: %d must not be negative", field("max_sessions"), c.MaxSessions)
	}
	o.MaxSessions = c.MaxSessions
	if c.MaxHeaderBytes != "" {
		n, err := parseSize(c.MaxHeaderBytes)
		if err != nil || n < 1024 || n > 1<<20 {
			return fmt.Errorf("%s: %q must be a size between 1KiB and 1MiB", field("max_header_bytes"), c.MaxHeaderBytes)
		}
		o.MaxHeaderBytes = int(n)
	}
	return nil
}

// parseSize parses "64KiB", "1MiB", "512" (bytes).
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
