package systemd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// probeDropIn turns the shipped unit into a probe: the test binary in capability-child
// mode replaces the daemon. Everything else (user, capabilities, sandbox, seccomp filter,
// directories, ExecStartPre, notify protocol) is the shipped unit's. WatchdogSec is
// shortened so the test need not wait 30 s to see that pings keep the service alive.
const probeDropIn = `[Service]
Environment='SEALGATE_CAPS_CHILD={"bpffs":"/sys/fs/bpf"}'
ExecStart=
ExecStart=/opt/sealgate/sealgate run --config /etc/sealgate/sealgate.toml
WatchdogSec=3s
`

// TestUnitUnderSystemd boots systemd in a throwaway container (systemd-nspawn: private
// network, volatile root over the host's /usr, a fresh bpffs at PID 1's mode 0700) with
// the shipped unit, sysusers.d and tmpfiles.d files and default config, and runs the
// capability probe as the service. It checks what an operator relies on: the service starts
// as the sealgate user with exactly the unit's capabilities; under the real seccomp filter
// and mount sandbox it loads, attaches, steers and pins; directories get their modes; the
// watchdog is satisfied; restart hands the listening socket back from the fd store; reload
// keeps the process; stop ends cleanly and drops the fd store.
func TestUnitUnderSystemd(t *testing.T) {
	ct := bootContainer(t, bootSpec{binary: childBinary(t), dropIn: probeDropIn, config: DefaultConfig, enable: true})
	unitCapsMask := capMask(t, unitCaps(shippedUnit(t).last("Service", "AmbientCapabilities")))

	ct.waitActive()
	first := ct.report(1)
	if first.UID == 0 || first.CapEff != unitCapsMask || first.ListenFDNames != "" {
		t.Fatalf("first start: uid %d CapEff %s fdnames %q, want a system uid, %s and no stored fds", first.UID, first.CapEff, first.ListenFDNames, unitCapsMask)
	}
	ct.allOK(first)

	modes := []struct{ path, want string }{
		{"/run/sealgate", "750 sealgate:sealgate"},
		{"/run/sealgate/admin.sock", "660 sealgate:sealgate"},
		{"/var/lib/sealgate", "700 sealgate:sealgate"},
		{"/var/lib/sealgate/probe", "600 sealgate:sealgate"},
		{"/etc/sealgate", "750 root:sealgate"},
		{"/etc/sealgate/sealgate.toml", "640 root:sealgate"},
		{"/sys/fs/bpf", "711 root:root"},
		{"/sys/fs/bpf/sealgate", "700 sealgate:sealgate"},
	}
	for _, m := range modes {
		if got := strings.TrimSpace(ct.run("stat", "-c", "%a %U:%G", m.path)); got != m.want {
			t.Errorf("%s: %s, want %s", m.path, got, m.want)
		}
	}

	pid := ct.show()["MainPID"]
	time.Sleep(4 * time.Second) // longer than the probe's WatchdogSec
	if s := ct.show(); s["ActiveState"] != "active" || s["MainPID"] != pid || s["NRestarts"] != "0" {
		t.Fatalf("after one watchdog interval: %v, want the same process still active", s)
	}

	ct.run("systemctl", "restart", "sealgate")
	ct.waitActive()
	second := ct.report(2)
	if second.ListenFDNames != "engine" {
		t.Errorf("after restart LISTEN_FDNAMES=%q, want the stored engine listener back", second.ListenFDNames)
	}
	ct.allOK(second)

	pid = ct.show()["MainPID"]
	ct.run("systemctl", "reload", "sealgate")
	// systemd 252 ends the reload job when kill returns; the probe's RELOADING=1/READY=1 follow.
	if s := ct.waitProp("StatusText", "reloaded"); s["MainPID"] != pid || s["StatusText"] != "reloaded" || s["ActiveState"] != "active" {
		t.Errorf("after reload: %v, want the same process, active, status \"reloaded\"", s)
	}

	ct.run("systemctl", "stop", "sealgate")
	want := map[string]string{"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0", "NFileDescriptorStore": "0"}
	s := ct.show()
	for k, v := range want {
		if s[k] != v {
			t.Errorf("after stop %s=%s, want %s", k, s[k], v)
		}
	}
}

// bootSpec is what a test container runs.
type bootSpec struct {
	binary string            // bound to /opt/sealgate/sealgate
	dropIn string            // sealgate.service.d/test.conf next to the shipped unit
	config string            // /etc/sealgate/sealgate.toml
	extra  map[string]string // more files in /etc/sealgate, name → content (mode 0640)
	enable bool              // start sealgate.service at boot
}

// bootContainer boots systemd in a throwaway container (systemd-nspawn: private network,
// volatile root over the host's /usr, a fresh bpffs at PID 1's mode 0700) with the shipped
// unit, sysusers.d and tmpfiles.d files, and powers it off when the test ends.
func bootContainer(t *testing.T, spec bootSpec) *container {
	t.Helper()
	requireRoot(t, "boots a systemd container with systemd-nspawn")
	nspawn := requireTool(t, "systemd-nspawn")
	nsenter := requireTool(t, "nsenter")
	if testing.Short() {
		t.Skip("boots a container; not in -short")
	}

	work := scratchDir(t)
	files := map[string]string{
		"system/sealgate.service":              Unit,
		"system/sealgate.service.d/test.conf":  spec.dropIn,
		"sysusers/sealgate.conf":               Sysusers,
		"tmpfiles/sealgate.conf":               Tmpfiles,
		"etc-sealgate/sealgate.toml":           spec.config,
		"system/multi-user.target.wants/.keep": "",
	}
	for name, content := range spec.extra {
		files["etc-sealgate/"+name] = content
	}
	for name, content := range files {
		p := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "etc-sealgate/") {
			mode = 0o640 // root-only until tmpfiles hands the config to group sealgate
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	if spec.enable {
		if err := os.Symlink("../sealgate.service", filepath.Join(work, "system/multi-user.target.wants/sealgate.service")); err != nil {
			t.Fatal(err)
		}
	}
	bpffs := mountBPFFS(t, work, 0o700)

	cmd := exec.Command(nspawn,
		"--directory=/", "--volatile=yes", "--private-network", "--boot", "--register=no", "--keep-unit",
		"--console=passive", "--capability=CAP_BPF,CAP_PERFMON", "--system-call-filter=bpf",
		"--machine=sealgate-test-"+strconv.Itoa(os.Getpid()),
		"--bind-ro="+spec.binary+":/opt/sealgate/sealgate",
		"--bind="+filepath.Join(work, "system")+":/etc/systemd/system",
		"--bind-ro="+filepath.Join(work, "sysusers")+":/etc/sysusers.d",
		"--bind-ro="+filepath.Join(work, "tmpfiles")+":/etc/tmpfiles.d",
		"--bind="+filepath.Join(work, "etc-sealgate")+":/etc/sealgate",
		"--bind="+bpffs+":/sys/fs/bpf",
		// Arguments for the container's systemd: no first-boot prompts, and no 2-minute wait
		// for a network that a private network namespace never brings online.
		"systemd.firstboot=off", "systemd.mask=systemd-networkd-wait-online.service")
	var console bytes.Buffer
	cmd.Stdout, cmd.Stderr = &console, &console
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting systemd-nspawn: %v", err)
	}
	t.Cleanup(func() {
		// SIGTERM asks nspawn to power the container off; SIGKILL if it does not.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		kill := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
		defer kill.Stop()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("systemd-nspawn output:\n%s", console.String())
		}
	})
	return &container{t: t, nsenter: nsenter, pid: containerInit(t, cmd.Process.Pid)}
}

// containerInit waits for systemd-nspawn's child, the container's PID 1.
func containerInit(t *testing.T, nspawnPID int) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", nspawnPID, nspawnPID))
		for _, f := range strings.Fields(string(data)) {
			comm, _ := os.ReadFile("/proc/" + f + "/comm")
			if strings.TrimSpace(string(comm)) == "systemd" {
				pid, err := strconv.Atoi(f)
				if err == nil {
					return pid
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("the container's systemd did not start within a minute")
	return 0
}

// container runs commands inside the booted container.
type container struct {
	t       *testing.T
	nsenter string
	pid     int
}

func (c *container) run(args ...string) string {
	c.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.t.Fatalf("%s: %v\n%s\njournal:\n%s", strings.Join(args, " "), err, out, c.journal())
	}
	return out
}

func (c *container) try(args ...string) (string, error) {
	cmd := exec.Command(c.nsenter, append([]string{"-t", strconv.Itoa(c.pid), "-a"}, args...)...)
	cmd.Env = systemdEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *container) journal() string {
	status, _ := c.try("systemctl", "status", "--no-pager", "-l", "sealgate")
	out, _ := c.try("journalctl", "-u", "sealgate", "--no-pager", "-o", "short-monotonic")
	return status + "\n" + out
}

// waitActive waits for sealgate.service to become active; failed is fatal at once.
func (c *container) waitActive() {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		out, _ := c.try("systemctl", "is-active", "sealgate")
		switch strings.TrimSpace(out) {
		case "active":
			return
		case "failed":
			c.t.Fatalf("sealgate.service failed:\n%s", c.journal())
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.t.Fatalf("sealgate.service not active within 2 minutes:\n%s", c.journal())
}

// show returns properties of sealgate.service.
func (c *container) show() map[string]string {
	c.t.Helper()
	out := c.run("systemctl", "show", "sealgate", "-p", "ActiveState", "-p", "Result", "-p", "MainPID",
		"-p", "NRestarts", "-p", "StatusText", "-p", "ExecMainStatus", "-p", "NFileDescriptorStore")
	props := map[string]string{}
	for line := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			props[k] = v
		}
	}
	return props
}

// waitProp polls sealgate.service until property key has value want (at most 10 s) and
// returns the properties last seen.
func (c *container) waitProp(key, want string) map[string]string {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := c.show()
		if s[key] == want || time.Now().After(deadline) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitBooted waits until the container's boot has created the sealgate account.
func (c *container) waitBooted() {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, err := c.try("getent", "group", "sealgate"); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatal("systemd-sysusers did not create the sealgate group within a minute of boot")
}

// report returns the probe report of the n-th start of the service, from the journal.
func (c *container) report(n int) childReport {
	c.t.Helper()
	out := c.run("journalctl", "-u", "sealgate", "--no-pager", "-o", "cat")
	var reports []childReport
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(line, `{"cap_eff"`) {
			continue
		}
		var r childReport
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			c.t.Fatalf("probe report %q: %v", line, err)
		}
		reports = append(reports, r)
	}
	if len(reports) != n {
		c.t.Fatalf("found %d probe reports, want %d:\n%s", len(reports), n, out)
	}
	return reports[n-1]
}

// allOK fails the test for every probe operation that did not succeed.
func (c *container) allOK(r childReport) {
	c.t.Helper()
	if len(r.Results) != len(childOps)+len(serviceOps) {
		c.t.Errorf("probe ran %d operations, want %d", len(r.Results), len(childOps)+len(serviceOps))
	}
	for _, res := range r.Results {
		if res.Err != "" || res.Skipped != "" {
			c.t.Errorf("under the unit, %s: err=%q skipped=%q", res.Op, res.Err, res.Skipped)
		}
	}
}
