package dlp

import (
	"fmt"
	"mime"
	"slices"
	"strconv"
	"strings"
)

// Config is a route's DLP policy, decoded from the [route.dlp] table. The zero
// Config turns DLP off for the route.
type Config struct {
	// Detectors names the pattern detectors to run: card, ssn, iban, email,
	// phone, secret. Omitted means all; an empty list means none (only
	// JSONFields apply).
	Detectors []string `toml:"detectors"`
	// Action is the default action for every kind: log, redact (default) or
	// block.
	Action string `toml:"action"`
	// Actions overrides Action per kind (the detector names and "field").
	Actions map[string]string `toml:"actions"`
	// JSONFields lists JSON object keys (ASCII case-insensitive) whose values
	// are flagged as kind "field" whatever they look like.
	JSONFields []string `toml:"json_fields"`
	// ContentTypes lists the media types scanned: "type/subtype", "type/*" or
	// "application/*+json". Responses of other types pass unscanned; a
	// response without Content-Type is scanned.
	ContentTypes []string `toml:"content_types"`
	// Compressed says what to do with a Content-Encoding: "decode" (default:
	// gzip, br, deflate are decompressed, scanned and sent identity-encoded;
	// any other encoding is refused) or "refuse" (502).
	Compressed string `toml:"compressed"`
	// MaxBlockBuffer is how much of a response is held back when some kind's
	// action is block, so it can still be replaced by a 502 ("1MiB" default).
	MaxBlockBuffer string `toml:"max_block_buffer"`
}

// IsZero reports whether c is the zero Config, which means DLP off.
func (c Config) IsZero() bool {
	return c.Detectors == nil && c.Action == "" && len(c.Actions) == 0 && len(c.JSONFields) == 0 &&
		len(c.ContentTypes) == 0 && c.Compressed == "" && c.MaxBlockBuffer == ""
}

// DefaultContentTypes are the media types scanned when content_types is not
// set: everything textual an API sends.
var DefaultContentTypes = []string{
	"application/json", "application/*+json", "application/x-ndjson", "application/xml",
	"application/*+xml", "application/x-www-form-urlencoded", "application/javascript",
	"application/graphql-response+json", "text/*",
}

const (
	defaultMaxBlockBuffer = 1 << 20
	minMaxBlockBuffer     = 1 << 10
	maxMaxBlockBuffer     = 64 << 20
	maxFieldName          = 64
)

// compiled is a validated Config in the form the scanner uses.
type compiled struct {
	enabled   [numKinds]bool
	action    [numKinds]Action
	anyBlock  bool
	anyRedact bool
	fields    []string // lower-cased
	fieldLens uint64   // bit n-1 set: a field name is n bytes long
	types     []mediaPattern
	decode    bool
	maxBlock  int
}

type mediaPattern struct {
	typ, sub string // sub may be "*" or "*+json"
}

func (c Config) compile() (*compiled, error) {
	cc := &compiled{decode: true, maxBlock: defaultMaxBlockBuffer}
	def := ActionRedact
	if c.Action != "" {
		a, ok := actionByName(c.Action)
		if !ok {
			return nil, fmt.Errorf("dlp.action: %q is not one of log, redact, block", c.Action)
		}
		def = a
	}
	for k := range cc.action {
		cc.action[k] = def
	}
	if c.Detectors == nil {
		for k := 0; k < numDetectors; k++ {
			cc.enabled[k] = true
		}
	}
	for i, name := range c.Detectors {
		k, ok := kindByName(name)
		if !ok || k == KindField {
			return nil, fmt.Errorf("dlp.detectors[%d]: %q is not one of card, ssn, iban, email, phone, secret", i, name)
		}
		if cc.enabled[k] {
			return nil, fmt.Errorf("dlp.detectors[%d]: %q is listed twice", i, name)
		}
		cc.enabled[k] = true
	}
	keys := make([]string, 0, len(c.Actions))
	for k := range c.Actions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, name := range keys {
		k, ok := kindByName(name)
		if !ok {
			return nil, fmt.Errorf("dlp.actions.%s: unknown kind (use card, ssn, iban, email, phone, secret, field)", name)
		}
		a, ok := actionByName(c.Actions[name])
		if !ok {
			return nil, fmt.Errorf("dlp.actions.%s: %q is not one of log, redact, block", name, c.Actions[name])
		}
		cc.action[k] = a
	}
	for i, f := range c.JSONFields {
		if f == "" || len(f) > maxFieldName {
			return nil, fmt.Errorf("dlp.json_fields[%d]: must be 1 to %d bytes long", i, maxFieldName)
		}
		lf := asciiLower(f)
		if slices.Contains(cc.fields, lf) {
			return nil, fmt.Errorf("dlp.json_fields[%d]: %q is listed twice", i, f)
		}
		cc.fields = append(cc.fields, lf)
		cc.fieldLens |= 1 << uint(len(lf)-1)
	}
	cc.enabled[KindField] = len(cc.fields) > 0
	types := c.ContentTypes
	if types == nil {
		types = DefaultContentTypes
	}
	for i, t := range types {
		p, err := parseMediaPattern(t)
		if err != nil {
			return nil, fmt.Errorf("dlp.content_types[%d]: %w", i, err)
		}
		cc.types = append(cc.types, p)
	}
	switch c.Compressed {
	case "", "decode":
	case "refuse":
		cc.decode = false
	default:
		return nil, fmt.Errorf("dlp.compressed: %q is not one of decode, refuse", c.Compressed)
	}
	if c.MaxBlockBuffer != "" {
		n, err := ParseSize(c.MaxBlockBuffer)
		if err != nil {
			return nil, fmt.Errorf("dlp.max_block_buffer: %w", err)
		}
		if n < minMaxBlockBuffer || n > maxMaxBlockBuffer {
			return nil, fmt.Errorf("dlp.max_block_buffer: %s is outside 1KiB to 64MiB", c.MaxBlockBuffer)
		}
		cc.maxBlock = int(n)
	}
	any := false
	for k := range cc.enabled {
		if !cc.enabled[k] {
			continue
		}
		any = true
		switch cc.action[k] {
		case ActionBlock:
			cc.anyBlock = true
		case ActionRedact:
			cc.anyRedact = true
		}
	}
	if !any {
		return nil, fmt.Errorf("dlp: no detector enabled and no json_fields (remove the dlp table to turn DLP off)")
	}
	return cc, nil
}

func parseMediaPattern(s string) (mediaPattern, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	typ, sub, ok := strings.Cut(t, "/")
	if !ok || typ == "" || sub == "" || strings.ContainsAny(t, " ;,") || (typ == "*" && sub != "*") {
		return mediaPattern{}, fmt.Errorf("%q is not a media type pattern like application/json, text/* or application/*+json", s)
	}
	if strings.Contains(sub, "*") && sub != "*" && !strings.HasPrefix(sub, "*+") {
		return mediaPattern{}, fmt.Errorf("%q: a wildcard subtype is * or *+suffix", s)
	}
	return mediaPattern{typ, sub}, nil
}

func (p mediaPattern) match(typ, sub string) bool {
	if p.typ != "*" && p.typ != typ {
		return false
	}
	switch {
	case p.sub == "*":
		return true
	case strings.HasPrefix(p.sub, "*+"):
		return strings.HasSuffix(sub, p.sub[1:])
	}
	return p.sub == sub
}

// scanType reports whether a response with Content-Type ct is scanned and
// whether it is JSON (number-aware masking and json_fields).
func (cc *compiled) scanType(ct string) (scan, isJSON bool) {
	if strings.TrimSpace(ct) == "" {
		return true, false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		// An unparsable type is not known to be binary: scan it.
		return true, false
	}
	typ, sub, _ := strings.Cut(mt, "/")
	isJSON = (typ == "application" && (sub == "json" || sub == "x-ndjson" || strings.HasSuffix(sub, "+json")))
	for _, p := range cc.types {
		if p.match(typ, sub) {
			return true, isJSON
		}
	}
	return false, false
}

// ParseSize parses a byte size such as "1MiB", "512KiB", "64kB", "1GB" or a
// plain number of bytes.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is not a size like 1MiB, 512KiB or 4096", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	mult := map[string]int64{"": 1, "b": 1, "kb": 1e3, "kib": 1 << 10, "k": 1 << 10, "mb": 1e6, "mib": 1 << 20, "m": 1 << 20,
		"gb": 1e9, "gib": 1 << 30, "g": 1 << 30}[strings.ToLower(strings.TrimSpace(t[i:]))]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unknown unit (use B, KiB, MiB, GiB, kB, MB, GB)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q: too large", s)
	}
	return n * mult, nil
}

// asciiLower lower-cases A-Z only, as the JSON tracker compares keys.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c | 0x20
		}
	}
	return string(b)
}
