package systemd

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// daemonDropIn only points the shipped unit at the freshly built daemon.
const daemonDropIn = `[Service]
ExecStart=
ExecStart=/opt/sealgate/sealgate run --config /etc/sealgate/sealgate.toml
`

// daemonStatus is the part of `sealgate status --json` this test reads.
type daemonStatus struct {
	PID      int `json:"pid"`
	Steering struct {
		Enabled  bool   `json:"enabled"`
		Reason   string `json:"reason"`
		Bindings []struct {
			Port   uint16 `json:"port"`
			Socket bool   `json:"socket"`
		} `json:"bindings"`
	} `json:"steering"`
	Guard struct {
		Enabled bool   `json:"enabled"`
		Reason  string `json:"reason"`
	} `json:"guard"`
	Interfaces []struct {
		Name     string `json:"name"`
		Attached bool   `json:"attached"`
		Error    string `json:"error"`
	} `json:"interfaces"`
}

// TestDaemonUnderSystemd runs the real daemon (cmd/sealgate, built here) as the shipped
// unit, on the default config with the operator's edits (a certificate, match "/", an
// interface), in a systemd container. What an operator sees after `systemctl start`:
// steering and the XDP guard on, port 443 answered by the engine over TLS, the blocklist
// usable from the CLI; after `systemctl restart` the same, with the blocklist kept; `stop`
// ends cleanly.
func TestDaemonUnderSystemd(t *testing.T) {
	requireRoot(t, "boots a systemd container with systemd-nspawn")
	requireTool(t, "systemd-nspawn")
	requireTool(t, "curl")
	goTool := requireTool(t, "go")
	if testing.Short() {
		t.Skip("builds the daemon and boots a container; not in -short")
	}

	bin := filepath.Join(scratchDir(t), "sealgate")
	build := exec.Command(goTool, "build", "-o", bin, "github.com/sealgate/sealgate/cmd/sealgate")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the daemon: %v\n%s", err, out)
	}
	certDir := t.TempDir()
	writeSelfSigned(t, filepath.Join(certDir, "api.crt"), filepath.Join(certDir, "api.key"))
	extra := map[string]string{}
	for _, name := range []string{"api.crt", "api.key"} {
		data, err := os.ReadFile(filepath.Join(certDir, name))
		if err != nil {
			t.Fatal(err)
		}
		extra[name] = string(data)
	}
	const match = `match = "api.example.com/"`
	if !strings.Contains(DefaultConfig, match) {
		t.Fatalf("sealgate.toml no longer contains %s; update this test", match)
	}
	cfg := strings.Replace(DefaultConfig, match, `match = "/"`, 1) +
		"\n[[interface]]\nname = \"sg0\"\nmode = \"auto\"\nsyn_rate = 200\nsyn_burst = 400\n"

	ct := bootContainer(t, bootSpec{binary: bin, dropIn: daemonDropIn, config: cfg, extra: extra})
	ct.waitBooted()
	// First boot enables units by preset, so the daemon may already have tried (and failed
	// on the unreadable key, as it should); start over from a clean state.
	_, _ = ct.try("systemctl", "stop", "sealgate")
	_, _ = ct.try("systemctl", "reset-failed", "sealgate")
	// The operator's steps: certificate and key readable by the daemon's group, the uplink.
	ct.run("chgrp", "sealgate", "/etc/sealgate/api.crt", "/etc/sealgate/api.key")
	ct.run("ip", "link", "add", "sg0", "type", "veth", "peer", "name", "sg1")
	ct.run("ip", "link", "set", "sg0", "up")
	ct.run("ip", "link", "set", "sg1", "up")

	ct.run("systemctl", "start", "sealgate")
	ct.waitActive()
	first := ct.daemonServes()
	ct.run("/opt/sealgate/sealgate", "block", "add", "192.0.2.0/24", "--ttl", "10m")

	ct.run("systemctl", "restart", "sealgate")
	ct.waitActive()
	if second := ct.daemonServes(); second.PID == first.PID {
		t.Errorf("restart kept pid %d", first.PID)
	}
	if out := ct.run("/opt/sealgate/sealgate", "block", "list"); !strings.Contains(out, "192.0.2.0/24") {
		t.Errorf("blocklist lost across restart:\n%s", out)
	}

	ct.run("systemctl", "stop", "sealgate")
	if s := ct.show(); s["Result"] != "success" || s["ExecMainStatus"] != "0" {
		t.Errorf("after stop: %v, want Result=success ExecMainStatus=0", s)
	}
}

// daemonServes checks the daemon's status and that port 443 reaches the engine.
func (c *container) daemonServes() daemonStatus {
	c.t.Helper()
	var st daemonStatus
	out := c.run("/opt/sealgate/sealgate", "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("sealgate status --json: %v\n%s", err, out)
	}
	if !st.Steering.Enabled || len(st.Steering.Bindings) == 0 {
		c.t.Errorf("steering off under the unit: %q (bindings %v)", st.Steering.Reason, st.Steering.Bindings)
	}
	for _, b := range st.Steering.Bindings {
		if !b.Socket {
			c.t.Errorf("binding for port %d has no socket", b.Port)
		}
	}
	if !st.Guard.Enabled {
		c.t.Errorf("XDP guard off under the unit: %s", st.Guard.Reason)
	}
	if len(st.Interfaces) != 1 || !st.Interfaces[0].Attached {
		c.t.Errorf("interfaces %+v, want sg0 attached", st.Interfaces)
	}
	// Nothing listens on the upstream port, so the engine itself answers 502 over TLS:
	// proof that a connection to port 443 was steered into it.
	code := c.run("curl", "-sk", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1:443/api/customers")
	if code != "502" {
		c.t.Errorf("https://127.0.0.1:443/ answered %s, want the engine's 502 for a dead upstream", code)
	}
	return st
}
