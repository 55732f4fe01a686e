// Package config reads sealgate's TOML configuration: strictly decoded (an
// unknown key is an error naming its line), then validated with messages that
// name the field and the bad value, as "file:line: field: message".
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/sealgate/sealgate/appliance/anomaly"
	"github.com/sealgate/sealgate/appliance/audit"
	"github.com/sealgate/sealgate/appliance/dlp"
	"github.com/sealgate/sealgate/appliance/policy"
	"github.com/sealgate/sealgate/appliance/sealing"
	"github.com/sealgate/sealgate/appliance/validate"
	"github.com/sealgate/sealgate/appliance/waf"
)

// Defaults for the [daemon] table.
const (
	DefaultPath        = "/etc/sealgate/sealgate.toml"
	DefaultStateDir    = "/var/lib/sealgate"
	DefaultAdminSocket = "/run/sealgate/admin.sock"
	DefaultAdminGroup  = "sealgate"
	DefaultBPFFS       = "/sys/fs/bpf"
)

// Config is the whole file.
type Config struct {
	Daemon     Daemon         `toml:"daemon"`
	Crypto     Crypto         `toml:"crypto"`
	Limits     Limits         `toml:"limits"`
	Listeners  []Listener     `toml:"listener"`
	Routes     []Route        `toml:"route"`
	Interfaces []Interface    `toml:"interface"`
	Seal       sealing.Config `toml:"seal"`
	Audit      audit.Config   `toml:"audit"`
	Anomaly    anomaly.Config `toml:"anomaly"`

	// Path is the file it was read from; SHA256 its content's hash.
	Path   string `toml:"-"`
	SHA256 string `toml:"-"`
}

// Daemon is the [daemon] table.
type Daemon struct {
	StateDir    string `toml:"state_dir"`
	AdminSocket string `toml:"admin_socket"`
	AdminGroup  string `toml:"admin_group"`
	// ReadGroup, when set, owns the admin socket instead of AdminGroup, so
	// its members (monitoring) can connect and read; admins then need to be
	// in it too (or root).
	ReadGroup     string `toml:"read_group"`
	MetricsListen string `toml:"metrics_listen"`
	BPFFS         string `toml:"bpffs"`
	RequireEBPF   bool   `toml:"require_ebpf"`
	// AccessLog: "stdout" (default, one JSON line per request) or "off".
	AccessLog string `toml:"access_log"`
	// LogLevel: debug | info (default) | warn | error.
	LogLevel string `toml:"log_level"`
}

// Crypto is the [crypto] table.
type Crypto struct {
	AEAD string `toml:"aead"`
}

// Limits is the [limits] table: protocol limits and timeouts for all listeners.
type Limits struct {
	MaxHeaderBytes    Size     `toml:"max_header_bytes"`
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	IdleTimeout       Duration `toml:"idle_timeout"`
	ShutdownTimeout   Duration `toml:"shutdown_timeout"`
	DialTimeout       Duration `toml:"dial_timeout"`
	UpstreamTimeout   Duration `toml:"upstream_timeout"`
	TicketRotation    Duration `toml:"ticket_rotation"`
	// HTTP1FastPath serves HTTP/1.1 requests of routes without active stages
	// on the fast path (default true); false: net/http serves every request.
	HTTP1FastPath *bool `toml:"http1_fast_path"`
	// HTTP2FastPath serves h2 with the engine's own HTTP/2 server (default
	// true); false: net/http's HTTP/2 server does.
	HTTP2FastPath *bool `toml:"http2_fast_path"`
}

// Listener is one [[listener]].
type Listener struct {
	Name   string      `toml:"name"`
	Listen string      `toml:"listen"`
	Steer  []Steer     `toml:"steer"`
	TLS    ListenerTLS `toml:"tls"`
}

// Steer is one entry of a listener's steer list.
type Steer struct {
	Prefix string   `toml:"prefix"`
	Ports  []uint16 `toml:"ports"`
	Proto  string   `toml:"proto"` // tcp (default) or udp
}

// ListenerTLS is [listener.tls].
type ListenerTLS struct {
	Certs      []CertPair `toml:"certs"`
	MinVersion string     `toml:"min_version"`
	ClientCA   string     `toml:"client_ca"`
	// ClientAuth: "require" (default when client_ca is set) or "optional".
	ClientAuth string `toml:"client_auth"`
}

// CertPair is a certificate chain and key, PEM files.
type CertPair struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// Route is one [[route]].
type Route struct {
	Name               string   `toml:"name"`
	Listener           string   `toml:"listener"`
	Match              string   `toml:"match"`
	Upstream           string   `toml:"upstream"`
	UpstreamCA         string   `toml:"upstream_ca"`
	UpstreamServerName string   `toml:"upstream_server_name"`
	Seal               string   `toml:"seal"`
	MaxBody            Size     `toml:"max_body"`
	UpstreamTimeout    Duration `toml:"upstream_timeout"`

	// Policy: [route.auth], [[route.authz.rule]], [route.rate_limit].
	policy.Config
	DLP      dlp.Config      `toml:"dlp"`
	Validate validate.Config `toml:"validate"`
	WAF      waf.Config      `toml:"waf"`
}

// Interface is one [[interface]]: the XDP guard on a host interface.
type Interface struct {
	Name     string `toml:"name"`
	Mode     string `toml:"mode"`
	SynRate  uint32 `toml:"syn_rate"`
	SynBurst uint32 `toml:"syn_burst"`
}

// Error is a configuration error located in the file.
type Error struct {
	File  string
	Line  int    // 0 when unknown
	Field string // e.g. route[1].upstream
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every error found in one file, in line order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates data; name is used in error messages.
func Parse(name string, data []byte) (*Config, error) {
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(name, err)
	}
	sum := sha256.Sum256(data)
	c.Path, c.SHA256 = name, hex.EncodeToString(sum[:])
	c.applyDefaults()
	c.resolvePaths(filepath.Dir(name))
	if errs := c.validate(); len(errs) > 0 {
		lines := keyLines(data)
		out := make(Errors, len(errs))
		for i, fe := range errs {
			out[i] = &Error{File: name, Line: lineFor(lines, fe.path), Field: fe.path, Msg: fe.msg}
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
		return nil, out
	}
	return &c, nil
}

func decodeError(name string, err error) error {
	var sme *toml.StrictMissingError
	if errors.As(err, &sme) {
		out := make(Errors, 0, len(sme.Errors))
		for _, de := range sme.Errors {
			line, _ := de.Position()
			out = append(out, &Error{File: name, Line: line, Msg: fmt.Sprintf("unknown key %q", strings.Join(de.Key(), "."))})
		}
		return out
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		field := strings.Join(de.Key(), ".")
		return Errors{{File: name, Line: line, Field: field, Msg: msg}}
	}
	return Errors{{File: name, Msg: err.Error()}}
}

func (c *Config) applyDefaults() {
	d := &c.Daemon
	if d.StateDir == "" {
		d.StateDir = DefaultStateDir
	}
	if d.AdminSocket == "" {
		d.AdminSocket = DefaultAdminSocket
	}
	if d.AdminGroup == "" {
		d.AdminGroup = DefaultAdminGroup
	}
	if d.BPFFS == "" {
		d.BPFFS = DefaultBPFFS
	}
	if d.AccessLog == "" {
		d.AccessLog = "stdout"
	}
	if d.LogLevel == "" {
		d.LogLevel = "info"
	}
	if c.Crypto.AEAD == "" {
		c.Crypto.AEAD = "auto"
	}
	for i := range c.Listeners {
		if c.Listeners[i].TLS.MinVersion == "" {
			c.Listeners[i].TLS.MinVersion = "1.2"
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Seal == "" {
			r.Seal = "optional"
		}
		if r.Listener == "" && len(c.Listeners) == 1 {
			r.Listener = c.Listeners[0].Name
		}
	}
	for i := range c.Interfaces {
		it := &c.Interfaces[i]
		if it.Mode == "" {
			it.Mode = "auto"
		}
		if it.SynRate == 0 {
			it.SynRate = 200
		}
		if it.SynBurst == 0 {
			it.SynBurst = 2 * it.SynRate
		}
	}
}

// resolvePaths makes relative file names relative to the config file's
// directory, so a config and its certificates can move together.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.Listeners {
		t := &c.Listeners[i].TLS
		for j := range t.Certs {
			abs(&t.Certs[j].Cert)
			abs(&t.Certs[j].Key)
		}
		abs(&t.ClientCA)
	}
	for i := range c.Routes {
		abs(&c.Routes[i].UpstreamCA)
	}
}
