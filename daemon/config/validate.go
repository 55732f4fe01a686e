package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sealgate/sealgate/appliance/anomaly"
	"github.com/sealgate/sealgate/appliance/dlp"
	"github.com/sealgate/sealgate/appliance/policy"
	"github.com/sealgate/sealgate/appliance/sealing"
	"github.com/sealgate/sealgate/appliance/validate"
	"github.com/sealgate/sealgate/crypto/cpu"
)

type fieldError struct {
	path string
	msg  string
}

type validator struct{ errs []fieldError }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, fieldError{path: path, msg: fmt.Sprintf(format, args...)})
}

// nameRE bounds names used as metric labels and in logs.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

func (c *Config) validate() []fieldError {
	v := &validator{}
	d := c.Daemon
	if !filepath.IsAbs(d.StateDir) {
		v.add("daemon.state_dir", "must be an absolute path, got %q", d.StateDir)
	}
	if !filepath.IsAbs(d.AdminSocket) {
		v.add("daemon.admin_socket", "must be an absolute path, got %q", d.AdminSocket)
	}
	if d.MetricsListen != "" {
		if _, err := netip.ParseAddrPort(d.MetricsListen); err != nil {
			v.add("daemon.metrics_listen", "want IP:port such as 127.0.0.1:9464, got %q", d.MetricsListen)
		}
	}
	if !filepath.IsAbs(d.BPFFS) {
		v.add("daemon.bpffs", "must be an absolute path, got %q", d.BPFFS)
	}
	switch d.AccessLog {
	case "stdout", "off":
	default:
		v.add("daemon.access_log", "want stdout or off, got %q", d.AccessLog)
	}
	switch d.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.add("daemon.log_level", "want debug, info, warn or error, got %q", d.LogLevel)
	}
	if _, err := cpu.ParseAEAD(c.Crypto.AEAD); err != nil {
		v.add("crypto.aead", "%v", err)
	}
	if c.Limits.MaxHeaderBytes != 0 && (c.Limits.MaxHeaderBytes < 1024 || c.Limits.MaxHeaderBytes > 1<<20) {
		v.add("limits.max_header_bytes", "must be between 1KiB and 1MiB, got %d", c.Limits.MaxHeaderBytes)
	}

	if len(c.Listeners) == 0 {
		v.add("listener", "at least one [[listener]] is required")
	}
	listeners := make(map[string]bool)
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listener[%d]", i)
		switch {
		case !nameRE.MatchString(l.Name):
			v.add(p+".name", "want 1-63 letters, digits, '_', '.', '-', got %q", l.Name)
		case listeners[l.Name]:
			v.add(p+".name", "listener %q is defined twice", l.Name)
		}
		listeners[l.Name] = true
		if _, err := netip.ParseAddrPort(l.Listen); err != nil {
			v.add(p+".listen", "want IP:port such as 127.0.0.1:8443 or [::]:8443, got %q", l.Listen)
		}
		for j, s := range l.Steer {
			sp := fmt.Sprintf("%s.steer[%d]", p, j)
			if _, err := netip.ParsePrefix(s.Prefix); err != nil {
				v.add(sp+".prefix", "want a CIDR prefix such as 0.0.0.0/0 or 2001:db8::/32, got %q", s.Prefix)
			}
			if s.Proto != "" && s.Proto != "tcp" && s.Proto != "udp" {
				v.add(sp+".proto", "want tcp or udp, got %q", s.Proto)
			}
			if len(s.Ports) == 0 {
				v.add(sp+".ports", "at least one port is required")
			}
			for _, port := range s.Ports {
				if port == 0 {
					v.add(sp+".ports", "port 0 is not a port")
				}
			}
		}
		v.tls(p+".tls", l.TLS)
	}

	routes := make(map[string]bool)
	patterns := make(map[string]*http.ServeMux)
	for i, r := range c.Routes {
		p := fmt.Sprintf("route[%d]", i)
		switch {
		case !nameRE.MatchString(r.Name):
			v.add(p+".name", "want 1-63 letters, digits, '_', '.', '-', got %q", r.Name)
		case routes[r.Name]:
			v.add(p+".name", "route %q is defined twice", r.Name)
		}
		routes[r.Name] = true
		if !listeners[r.Listener] {
			v.add(p+".listener", "no [[listener]] is named %q", r.Listener)
		}
		if r.Match == "" {
			v.add(p+".match", "required: a ServeMux pattern such as \"api.example.com/\" or \"/api/\"")
		} else {
			mux := patterns[r.Listener]
			if mux == nil {
				mux = http.NewServeMux()
				patterns[r.Listener] = mux
			}
			if err := tryPattern(mux, r.Match); err != nil {
				v.add(p+".match", "%v", err)
			}
		}
		if u, err := url.Parse(r.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(p+".upstream", "want http://host:port or https://host:port, got %q", r.Upstream)
		}
		if r.UpstreamCA != "" {
			v.file(p+".upstream_ca", r.UpstreamCA)
		}
		switch r.Seal {
		case "off", "optional", "required":
		default:
			v.add(p+".seal", "want off, optional or required, got %q", r.Seal)
		}
		v.ext(p, policy.Validate(r.Name, r.Config))
		if _, err := dlp.New(r.Name, r.DLP, dlp.Deps{}); err != nil {
			v.ext(p, err)
		}
		if _, err := validate.New(r.Name, r.Validate, validate.Deps{}); err != nil {
			v.ext(p, err)
		}
		switch r.WAF.Mode {
		case "", "off", "detect", "block":
		default:
			v.add(p+".waf.mode", "want off, detect or block, got %q", r.WAF.Mode)
		}
		if r.WAF.Paranoia < 0 || r.WAF.Paranoia > 4 {
			v.add(p+".waf.paranoia", "want 1 to 4, got %d", r.WAF.Paranoia)
		}
	}
	var so sealing.Options
	v.ext("", c.Seal.Apply("seal", &so))
	if det, err := anomaly.New(c.Anomaly, anomaly.Deps{Blocker: noBlocker{}}); err != nil {
		v.ext("", err)
	} else {
		det.Close()
	}
	if c.Audit.Path != "" && !filepath.IsAbs(c.Audit.Path) {
		v.add("audit.path", "must be an absolute path, got %q", c.Audit.Path)
	}

	ifaces := make(map[string]bool)
	for i, it := range c.Interfaces {
		p := fmt.Sprintf("interface[%d]", i)
		if it.Name == "" || len(it.Name) > 15 {
			v.add(p+".name", "want an interface name of 1-15 characters, got %q", it.Name)
		} else if ifaces[it.Name] {
			v.add(p+".name", "interface %q is listed twice", it.Name)
		}
		ifaces[it.Name] = true
		switch it.Mode {
		case "auto", "native", "generic":
		default:
			v.add(p+".mode", "want auto, native or generic, got %q", it.Mode)
		}
		if it.SynBurst < it.SynRate {
			v.add(p+".syn_burst", "must be at least syn_rate (%d), got %d", it.SynRate, it.SynBurst)
		}
	}
	return v.errs
}

func (v *validator) tls(p string, t ListenerTLS) {
	if len(t.Certs) == 0 {
		v.add(p+".certs", "at least one { cert, key } pair is required")
	}
	for j, c := range t.Certs {
		cp := fmt.Sprintf("%s.certs[%d]", p, j)
		okCert, okKey := v.file(cp+".cert", c.Cert), v.file(cp+".key", c.Key)
		if okCert && okKey {
			if _, err := tls.LoadX509KeyPair(c.Cert, c.Key); err != nil {
				v.add(cp, "certificate and key do not load: %v", err)
			}
		}
	}
	switch t.MinVersion {
	case "1.2", "1.3":
	default:
		v.add(p+".min_version", "want \"1.2\" or \"1.3\" (older versions are refused), got %q", t.MinVersion)
	}
	if t.ClientCA != "" {
		v.file(p+".client_ca", t.ClientCA)
	}
	switch t.ClientAuth {
	case "", "require", "optional":
	default:
		v.add(p+".client_auth", "want require or optional, got %q", t.ClientAuth)
	}
	if t.ClientAuth != "" && t.ClientCA == "" {
		v.add(p+".client_auth", "needs client_ca")
	}
}

// file checks that path names a readable regular file.
func (v *validator) file(field, path string) bool {
	if path == "" {
		v.add(field, "required")
		return false
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.add(field, "file %q does not exist", path)
		return false
	case err != nil:
		v.add(field, "cannot read %q: %v", path, errors.Unwrap(err))
		return false
	case st.IsDir():
		v.add(field, "%q is a directory, want a file", path)
		return false
	}
	return true
}

func tryPattern(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return nil
}

// TLSVersion maps "1.2"/"1.3" to crypto/tls constants.
func TLSVersion(s string) uint16 {
	if s == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// ext records an error from a subsystem's own validation. Those name their
// field as "route[NAME].x.y: msg", "x.y: msg" (relative to the route) or a
// top-level "table.key: msg"; it becomes a field path with the route's index
// so the error gets its line.
func (v *validator) ext(routePath string, err error) {
	if err == nil {
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		field, msg, ok := strings.Cut(line, ": ")
		if !ok || strings.ContainsAny(field, " \t") {
			v.add(routePath, "%s", line)
			continue
		}
		if strings.HasPrefix(field, "route[") {
			if i := strings.Index(field, "]."); i > 0 {
				field = field[i+2:]
			}
		}
		if routePath != "" {
			field = routePath + "." + field
		}
		v.add(field, "%s", msg)
	}
}

// noBlocker lets anomaly settings be validated without a daemon.
type noBlocker struct{}

func (noBlocker) Block(netip.Prefix, time.Duration, string, string) error { return nil }
