package systemd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/sealgate/sealgate/daemon/config"
)

// designConfig mirrors the configuration keys documented in DESIGN.md ("Config"). It is
// decoded strictly, so a key in sealgate.toml that the contract does not document fails.
// TestDefaultConfigPassesDaemonCheck runs the daemon's own parser on the same file.
type designConfig struct {
	Daemon struct {
		StateDir      string `toml:"state_dir"`
		AdminSocket   string `toml:"admin_socket"`
		AdminGroup    string `toml:"admin_group"`
		MetricsListen string `toml:"metrics_listen"`
		BPFFS         string `toml:"bpffs"`
		RequireEBPF   bool   `toml:"require_ebpf"`
	} `toml:"daemon"`
	Crypto struct {
		AEAD string `toml:"aead"`
	} `toml:"crypto"`
	Listener []struct {
		Name   string `toml:"name"`
		Listen string `toml:"listen"`
		Steer  []struct {
			Prefix string   `toml:"prefix"`
			Ports  []uint16 `toml:"ports"`
		} `toml:"steer"`
		TLS struct {
			Certs []struct {
				Cert string `toml:"cert"`
				Key  string `toml:"key"`
			} `toml:"certs"`
			MinVersion string `toml:"min_version"`
			ClientCA   string `toml:"client_ca"`
		} `toml:"tls"`
	} `toml:"listener"`
	Route []struct {
		Name     string `toml:"name"`
		Listener string `toml:"listener"`
		Match    string `toml:"match"`
		Upstream string `toml:"upstream"`
		Seal     string `toml:"seal"`
		MaxBody  string `toml:"max_body"`
	} `toml:"route"`
	Interface []struct {
		Name     string `toml:"name"`
		Mode     string `toml:"mode"`
		SynRate  uint32 `toml:"syn_rate"`
		SynBurst uint32 `toml:"syn_burst"`
	} `toml:"interface"`
}

func decodeStrict(text string) (designConfig, error) {
	var c designConfig
	dec := toml.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	err := dec.Decode(&c)
	return c, err
}

func TestDefaultConfigDecodesStrictly(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		wantErr bool
	}{
		{name: "shipped", text: DefaultConfig},
		{name: "misspelt key is refused", text: strings.Replace(DefaultConfig, "admin_socket", "admin_sokcet", 1), wantErr: true},
		{name: "commented interface block uncommented", text: uncommentInterface(t, DefaultConfig)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeStrict(tt.text)
			if (err != nil) != tt.wantErr {
				t.Fatalf("decode error = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

// uncommentInterface turns the commented [[interface]] example into live TOML, so the
// example an operator enables is checked too.
func uncommentInterface(t *testing.T, text string) string {
	t.Helper()
	i := strings.Index(text, "# [[interface]]")
	if i < 0 {
		t.Fatal("sealgate.toml lost its commented [[interface]] example")
	}
	var b strings.Builder
	b.WriteString(text[:i])
	for line := range strings.Lines(text[i:]) {
		b.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "#"), " "))
	}
	return b.String()
}

// TestDefaultConfigMatchesUnit checks that the config, the unit and tmpfiles.d agree on
// every path and name one of them hands to another.
func TestDefaultConfigMatchesUnit(t *testing.T) {
	c, err := decodeStrict(DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	u := shippedUnit(t)
	tmp, err := parseTmpfiles(Tmpfiles)
	if err != nil {
		t.Fatal(err)
	}
	user := u.last("Service", "User")
	configFile := strings.Fields(u.last("Service", "ExecStart"))[3]

	t.Run("state_dir is StateDirectory", func(t *testing.T) {
		if want := "/var/lib/" + u.last("Service", "StateDirectory"); c.Daemon.StateDir != want {
			t.Errorf("state_dir = %q, want %q", c.Daemon.StateDir, want)
		}
		if l := tmpfilesEntry(t, tmp, c.Daemon.StateDir); l.mode != 0o700 || l.user != user {
			t.Errorf("tmpfiles %s: %o %s, want 0700 %s", l.path, l.mode, l.user, user)
		}
	})
	t.Run("admin_socket in RuntimeDirectory", func(t *testing.T) {
		if want := "/run/" + u.last("Service", "RuntimeDirectory") + "/admin.sock"; c.Daemon.AdminSocket != want {
			t.Errorf("admin_socket = %q, want %q (the CLI's default path)", c.Daemon.AdminSocket, want)
		}
	})
	t.Run("admin_group is the unit group", func(t *testing.T) {
		if g := u.last("Service", "Group"); c.Daemon.AdminGroup != g {
			t.Errorf("admin_group = %q, want %q", c.Daemon.AdminGroup, g)
		}
	})
	t.Run("bpffs writable and pin directory owned", func(t *testing.T) {
		if pins := path.Join(c.Daemon.BPFFS, "sealgate"); !slices.Contains(u.all("Service", "ReadWritePaths"), "-"+pins) {
			t.Errorf("pin directory %q is not in ReadWritePaths", pins)
		}
		if l := tmpfilesEntry(t, tmp, c.Daemon.BPFFS); l.mode&0o001 == 0 {
			t.Errorf("tmpfiles leaves %s without search permission for the daemon (mode %o)", l.path, l.mode)
		}
		if l := tmpfilesEntry(t, tmp, path.Join(c.Daemon.BPFFS, "sealgate")); l.typ != "d" || l.user != user {
			t.Errorf("tmpfiles pin directory %+v, want a d line owned by %s", l, user)
		}
	})
	t.Run("config file in ConfigurationDirectory", func(t *testing.T) {
		if dir := "/etc/" + u.last("Service", "ConfigurationDirectory"); path.Dir(configFile) != dir {
			t.Errorf("ExecStart reads %s outside ConfigurationDirectory %s", configFile, dir)
		}
		if l := tmpfilesEntry(t, tmp, configFile); l.mode != 0o640 || l.user != "root" || l.group != u.last("Service", "Group") {
			t.Errorf("tmpfiles %s: %o %s:%s, want 0640 root:%s", l.path, l.mode, l.user, l.group, u.last("Service", "Group"))
		}
	})
}

// TestDefaultConfigValues checks the defaults an operator starts from.
func TestDefaultConfigValues(t *testing.T) {
	c, err := decodeStrict(DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listener) != 1 || len(c.Route) != 1 {
		t.Fatalf("want one listener and one route, got %d and %d", len(c.Listener), len(c.Route))
	}
	l, r := c.Listener[0], c.Route[0]
	tests := []struct {
		name string
		ok   bool
		got  any
	}{
		{"listener listens on 0.0.0.0:8443", l.Listen == "0.0.0.0:8443", l.Listen},
		{"listener steers port 443", len(l.Steer) > 0 && slices.Equal(l.Steer[0].Ports, []uint16{443}), l.Steer},
		{"steer prefixes parse", steerPrefixesParse(l.Steer), l.Steer},
		{"certs under /etc/sealgate", certsUnder(l.TLS.Certs, "/etc/sealgate/"), l.TLS.Certs},
		{"min_version", slices.Contains([]string{"1.2", "1.3"}, l.TLS.MinVersion), l.TLS.MinVersion},
		{"route uses the listener", r.Listener == l.Name, r.Listener},
		{"route upstream", r.Upstream == "http://127.0.0.1:8080" && validUpstream(r.Upstream), r.Upstream},
		{"route name", r.Name != "", r.Name},
		{"seal", slices.Contains([]string{"off", "optional", "required"}, r.Seal), r.Seal},
		{"max_body", r.MaxBody == "1MiB", r.MaxBody},
		{"aead", slices.Contains([]string{"auto", "aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"}, c.Crypto.AEAD), c.Crypto.AEAD},
		{"ebpf optional by default", !c.Daemon.RequireEBPF, c.Daemon.RequireEBPF},
		{"no interface attached by default", len(c.Interface) == 0, c.Interface},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok {
				t.Errorf("unexpected value %+v", tt.got)
			}
		})
	}
}

func steerPrefixesParse(steer []struct {
	Prefix string   `toml:"prefix"`
	Ports  []uint16 `toml:"ports"`
}) bool {
	for _, s := range steer {
		if _, err := netip.ParsePrefix(s.Prefix); err != nil {
			return false
		}
	}
	return len(steer) > 0
}

func certsUnder(certs []struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}, dir string) bool {
	for _, c := range certs {
		if !strings.HasPrefix(c.Cert, dir) || !strings.HasPrefix(c.Key, dir) {
			return false
		}
	}
	return len(certs) > 0
}

func validUpstream(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// TestDefaultConfigMarksEdits checks that every value an operator must change carries an
// "EDIT:" comment right above it, so the file says what to touch before the first start.
func TestDefaultConfigMarksEdits(t *testing.T) {
	for _, key := range []string{"certs", "match", "upstream"} {
		t.Run(key, func(t *testing.T) {
			var comment []string
			for line := range strings.Lines(DefaultConfig) {
				trimmed := strings.TrimSpace(line)
				if strings.HasPrefix(trimmed, "#") {
					comment = append(comment, trimmed)
					continue
				}
				if strings.HasPrefix(trimmed, key+" ") || strings.HasPrefix(trimmed, key+"=") {
					if !strings.Contains(strings.Join(comment, "\n"), "EDIT:") {
						t.Errorf("%s has no EDIT: comment above it", key)
					}
					return
				}
				comment = nil
			}
			t.Errorf("sealgate.toml has no %s key", key)
		})
	}
}

// TestDefaultConfigPassesDaemonCheck feeds sealgate.toml to the daemon's own parser
// (what `sealgate check-config` and `sealgate run` use). As shipped, the only errors must
// be the certificate and key the operator has to provide; with those present it is valid.
func TestDefaultConfigPassesDaemonCheck(t *testing.T) {
	dir := t.TempDir()
	writeSelfSigned(t, filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key"))
	tests := []struct {
		name       string
		text       string
		wantFields []string // fields named by the errors, in order; nil means valid
	}{
		{name: "as shipped", text: DefaultConfig, wantFields: []string{"listener[0].tls.certs[0].cert", "listener[0].tls.certs[0].key"}},
		{name: "with the operator's certificate", text: strings.ReplaceAll(DefaultConfig, "/etc/sealgate/api.", dir+"/api.")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse("sealgate.toml", []byte(tt.text))
			if tt.wantFields == nil {
				if err != nil {
					t.Fatalf("daemon config check: %v", err)
				}
				if c.Daemon.AdminSocket != config.DefaultAdminSocket || c.Daemon.StateDir != config.DefaultStateDir || c.Daemon.BPFFS != config.DefaultBPFFS {
					t.Errorf("daemon paths %q %q %q differ from the daemon's defaults", c.Daemon.AdminSocket, c.Daemon.StateDir, c.Daemon.BPFFS)
				}
				return
			}
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want config.Errors naming %v, got %v", tt.wantFields, err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
			}
			if !slices.Equal(got, tt.wantFields) {
				t.Errorf("errors name %v, want %v:\n%v", got, tt.wantFields, err)
			}
		})
	}
}

// writeSelfSigned writes a throwaway ECDSA P-256 certificate and key in PEM.
func writeSelfSigned(t *testing.T, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "api.example.com"},
		DNSNames:     []string{"api.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}
