package systemd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// maxExposure is the highest `systemd-analyze security` score the unit may reach.
const maxExposure = 2.0

// installedBinary is the ExecStart path in the shipped unit; `make install` rewrites it for
// other PREFIX values, so it must appear exactly once.
const installedBinary = "/usr/local/bin/sealgate"

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?)`)

// parseExposure extracts the overall exposure from `systemd-analyze security` output.
func parseExposure(out string) (float64, error) {
	m := exposureRE.FindAllStringSubmatch(out, -1)
	if len(m) != 1 {
		return 0, fmt.Errorf("want one \"Overall exposure level\" line, found %d in:\n%s", len(m), out)
	}
	return strconv.ParseFloat(m[0][1], 64)
}

func TestParseExposure(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    float64
		wantErr bool
	}{
		{name: "ok", out: "✓ UMask=  ...\n\n→ Overall exposure level for sealgate.service: 1.7 OK 🙂\n", want: 1.7},
		{name: "unsafe", out: "→ Overall exposure level for x.service: 9.6 UNSAFE 😨", want: 9.6},
		{name: "integer", out: "→ Overall exposure level for x.service: 2 OK", want: 2},
		{name: "missing", out: "Failed to load unit\n", wantErr: true},
		{name: "two units", out: "Overall exposure level for a.service: 1.0 OK\nOverall exposure level for b.service: 3.0 MEDIUM", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseExposure(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseExposure error = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("parseExposure = %v, want %v", got, tt.want)
			}
		})
	}
}

// writeUnit writes text as dir/sealgate.service with ExecStart pointing at an executable
// stub in dir, so that verify checks the unit rather than whether sealgate is installed.
func writeUnit(t *testing.T, dir, text string) string {
	t.Helper()
	bin := filepath.Join(dir, "bin", "sealgate")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sealgate.service")
	text = strings.ReplaceAll(text, installedBinary, bin)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSecurityExposure(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	tests := []struct {
		name string
		unit string
		// wantOK: exposure at most maxExposure; otherwise above it.
		wantOK bool
	}{
		{name: "shipped unit", unit: Unit, wantOK: true},
		// Proves the check bites: the same command on an unhardened unit must exceed the limit.
		{name: "unhardened unit", unit: "[Service]\nExecStart=/usr/local/bin/sealgate run\n", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeUnit(t, t.TempDir(), tt.unit)
			cmd := exec.Command(analyze, "security", "--offline=yes", "--no-pager", path)
			cmd.Env = systemdEnv()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("systemd-analyze security --offline=yes: %v\n%s", err, out)
			}
			got, err := parseExposure(string(out))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("exposure %.1f", got)
			if ok := got <= maxExposure; ok != tt.wantOK {
				failing := regexp.MustCompile(`(?m)^✗.*$`).FindAllString(string(out), -1)
				t.Errorf("exposure %.1f, want ≤ %.1f: %v; failing checks:\n%s", got, maxExposure, tt.wantOK, strings.Join(failing, "\n"))
			}
		})
	}
}

func TestVerify(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	tests := []struct {
		name    string
		from    string // replaced in the shipped unit by to; "" keeps it unchanged
		to      string
		wantErr string // "" means verify must be silent and succeed
	}{
		{name: "shipped unit"},
		{name: "unknown key", from: "UMask=0077\n", to: "UMask=0077\nProtectEverything=yes\n", wantErr: "Unknown key"},
		{name: "bad service type", from: "Type=notify\n", to: "Type=notfy\n", wantErr: "service type"},
		{name: "missing reload binary", from: "ExecReload=/bin/kill", to: "ExecReload=/nonexistent/kill", wantErr: "/nonexistent/kill"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := Unit
			if tt.from != "" {
				if !strings.Contains(text, tt.from) {
					t.Fatalf("sealgate.service no longer contains %q; update this test", tt.from)
				}
				text = strings.Replace(text, tt.from, tt.to, 1)
			}
			dir := t.TempDir()
			path := writeUnit(t, dir, text)
			// --recursive-errors=no: judge this unit, not the host's targets it orders after.
			cmd := exec.Command(analyze, "verify", "--recursive-errors=no", "--man=no", path)
			cmd.Env = systemdEnv()
			cmd.Dir = dir
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("running systemd-analyze verify: %v", err)
			}
			if tt.wantErr == "" {
				if err != nil || out.Len() > 0 {
					t.Fatalf("systemd-analyze verify sealgate.service: %v\n%s", err, out.String())
				}
				return
			}
			if err == nil && out.Len() == 0 {
				t.Fatalf("verify accepted a unit with %s", tt.name)
			}
			if !strings.Contains(out.String(), tt.wantErr) {
				t.Errorf("verify output lacks %q:\n%s", tt.wantErr, out.String())
			}
		})
	}
}

// wantCaps is what the daemon needs; see the unit's comments and caps_linux_test.go.
var wantCaps = []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_PERFMON"}

// unitCaps returns the sorted capability names of a space-separated unit value.
func unitCaps(v string) []string {
	caps := strings.Fields(v)
	slices.Sort(caps)
	return caps
}

func TestUnitContract(t *testing.T) {
	u := shippedUnit(t)
	exact := []struct{ key, want string }{
		{"Type", "notify"},
		{"NotifyAccess", "main"},
		{"WatchdogSec", "30s"},
		{"ExecStart", installedBinary + " run --config /etc/sealgate/sealgate.toml"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Restart", "on-failure"},
		{"User", "sealgate"},
		{"Group", "sealgate"},
		{"RuntimeDirectory", "sealgate"},
		{"StateDirectory", "sealgate"},
		{"StateDirectoryMode", "0700"},
		{"ConfigurationDirectory", "sealgate"},
		{"FileDescriptorStoreMax", "64"},
		{"NoNewPrivileges", "yes"},
		{"UMask", "0077"},
		{"LimitNOFILE", "1048576"},
		{"ProtectSystem", "strict"},
		{"ProtectKernelTunables", "yes"},
		{"PrivateDevices", "yes"},
		{"SystemCallArchitectures", "native"},
		{"SystemCallErrorNumber", "EPERM"},
		{"MemoryDenyWriteExecute", "yes"},
	}
	for _, tt := range exact {
		t.Run(tt.key, func(t *testing.T) {
			if got := u.last("Service", tt.key); got != tt.want {
				t.Errorf("%s=%q, want %q", tt.key, got, tt.want)
			}
		})
	}
	t.Run("one installed binary path", func(t *testing.T) {
		if n := strings.Count(Unit, installedBinary); n != 1 {
			t.Errorf("%s appears %d times; make install rewrites exactly one ExecStart", installedBinary, n)
		}
	})
	t.Run("capabilities", func(t *testing.T) {
		for _, key := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
			if got := unitCaps(u.last("Service", key)); !slices.Equal(got, wantCaps) {
				t.Errorf("%s = %v, want %v", key, got, wantCaps)
			}
		}
	})
	t.Run("bpffs writable", func(t *testing.T) {
		if rw := u.all("Service", "ReadWritePaths"); !slices.Contains(rw, "-/sys/fs/bpf/sealgate") {
			t.Errorf("ReadWritePaths = %v, want -/sys/fs/bpf/sealgate (pins live there; ProtectKernelTunables makes /sys read-only)", rw)
		}
	})
	t.Run("proc sys readable", func(t *testing.T) {
		// Go reads /proc/sys/net/core/somaxconn for every listen() backlog.
		if v := u.last("Service", "ProcSubset"); v == "pid" {
			t.Error("ProcSubset=pid hides /proc/sys/net/core/somaxconn: Go listeners fall back to a backlog of 128")
		}
	})
	t.Run("address families", func(t *testing.T) {
		got := strings.Fields(u.last("Service", "RestrictAddressFamilies"))
		for _, af := range []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} {
			if !slices.Contains(got, af) {
				t.Errorf("RestrictAddressFamilies lacks %s (admin socket, listeners, netlink)", af)
			}
		}
	})
	t.Run("bpf syscall allowed", func(t *testing.T) {
		// Assignments apply in order: bpf must be (re-)added after @privileged is removed.
		lastDeny, lastBPF := -1, -1
		for i, v := range u.all("Service", "SystemCallFilter") {
			fields := strings.Fields(strings.TrimPrefix(v, "~"))
			switch {
			case strings.HasPrefix(v, "~") && slices.Contains(fields, "@privileged"):
				lastDeny = i
			case !strings.HasPrefix(v, "~") && slices.Contains(fields, "bpf"):
				lastBPF = i
			case strings.HasPrefix(v, "~") && slices.Contains(fields, "bpf"):
				lastDeny = i
			}
		}
		if lastBPF < 0 || lastBPF < lastDeny {
			t.Errorf("SystemCallFilter removes bpf after allowing it (allow at %d, deny at %d)", lastBPF, lastDeny)
		}
	})
	t.Run("tmpfiles before start", func(t *testing.T) {
		if pre := u.all("Service", "ExecStartPre"); !slices.Contains(pre, "-+/usr/bin/systemd-tmpfiles --create sealgate.conf") {
			t.Errorf("ExecStartPre = %v, want the tmpfiles call that recreates the pin directory", pre)
		}
	})
}

func TestParseUnit(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    unitFile
		wantErr bool
	}{
		{name: "repeated keys", text: "[Service]\nA=1\n# c\nA=2\n", want: unitFile{{"Service", "A", "1", 2}, {"Service", "A", "2", 4}}},
		{name: "continuation", text: "[Service]\nA=x \\\n  y\n", want: unitFile{{"Service", "A", "x  y", 2}}},
		{name: "key outside section", text: "A=1\n", wantErr: true},
		{name: "no equals", text: "[Service]\nA\n", wantErr: true},
		{name: "bad header", text: "[Service\n", wantErr: true},
		{name: "dangling continuation", text: "[Service]\nA=1\\\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseUnit(tt.text)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseUnit error = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !slices.Equal(got, tt.want) {
				t.Errorf("parseUnit = %+v, want %+v", got, tt.want)
			}
		})
	}
}
