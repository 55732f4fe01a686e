package daemon

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpki"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// sealgateBinary builds cmd/sealgate once for the end-to-end tests.
func sealgateBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sealgate-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "sealgate")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/sealgate").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// vethPair is a client namespace joined to this namespace by a veth pair.
type vethPair struct {
	ns, hostIf     string
	hostIP, peerIP string
}

func newVethPair(t *testing.T) *vethPair {
	t.Helper()
	n := os.Getpid()%200 + 20
	v := &vethPair{
		ns:     fmt.Sprintf("sgc%d", os.Getpid()),
		hostIf: fmt.Sprintf("sgh%d", os.Getpid()%100000),
		hostIP: fmt.Sprintf("10.251.%d.1", n),
		peerIP: fmt.Sprintf("10.251.%d.2", n),
	}
	peer := "sgp" + strconv.Itoa(os.Getpid()%100000)
	run(t, "ip", "netns", "add", v.ns)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", v.hostIf).Run()
		exec.Command("ip", "netns", "del", v.ns).Run()
	})
	run(t, "ip", "link", "add", v.hostIf, "type", "veth", "peer", "name", peer)
	run(t, "ip", "link", "set", peer, "netns", v.ns)
	run(t, "ip", "addr", "add", v.hostIP+"/30", "dev", v.hostIf)
	run(t, "ip", "link", "set", v.hostIf, "up")
	run(t, "ip", "-n", v.ns, "addr", "add", v.peerIP+"/30", "dev", peer)
	run(t, "ip", "-n", v.ns, "link", "set", peer, "up")
	run(t, "ip", "-n", v.ns, "link", "set", "lo", "up")
	return v
}

const e2eConfig = `[daemon]
state_dir    = "%[1]s/state"
admin_socket = "%[1]s/admin.sock"
admin_group  = ""
bpffs        = "%[1]s/bpffs"
access_log   = "off"
require_ebpf = true

[limits]
shutdown_timeout = "5s"

[[listener]]
name   = "api"
listen = "127.0.0.1:0"
steer  = [{ prefix = "%[2]s/32", ports = [443] }]
[listener.tls]
certs = [{ cert = "%[3]s", key = "%[4]s" }]

[[route]]
name     = "api"
match    = "/"
upstream = "%[5]s"

[[interface]]
name = "%[6]s"
mode = "auto"
`

type e2e struct {
	t      *testing.T
	dir    string
	cfg    string
	ca     *testpki.CA
	v      *vethPair
	bin    string
	caFile string
}

func newE2E(t *testing.T) *e2e {
	privileged(t)
	e := &e2e{t: t, bin: sealgateBinary(t), v: newVethPair(t), ca: testpki.NewCA(t, "e2e")}
	e.caFile = e.ca.CertPEM
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s from %s", r.URL.Path, r.Header.Get("X-Forwarded-For"))
	}))
	t.Cleanup(up.Close)
	e.dir = t.TempDir()
	cert, key := e.ca.Leaf(t, "api", e.v.hostIP)
	e.cfg = filepath.Join(e.dir, "sealgate.toml")
	os.WriteFile(e.cfg, []byte(fmt.Sprintf(e2eConfig, e.dir, e.v.hostIP, cert, key, up.URL, e.v.hostIf)), 0o600)
	t.Cleanup(func() {
		exec.Command(e.bin, "run", "--cleanup", "--config", e.cfg).Run()
		unmount(filepath.Join(e.dir, "bpffs"))
	})
	return e
}

// start runs a daemon process and waits until its admin socket answers.
func (e *e2e) start(tag string) *exec.Cmd {
	e.t.Helper()
	logf, _ := os.Create(filepath.Join(e.dir, tag+".log"))
	cmd := exec.Command(e.bin, "run", "--config", e.cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		logf.Close()
	})
	for i := 0; i < 300; i++ {
		var st Status
		if NewClient(filepath.Join(e.dir, "admin.sock")).Do("GET", "/v1/status", nil, &st) == nil && st.PID == cmd.Process.Pid {
			return cmd
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(e.dir, tag+".log"))
	e.t.Fatalf("daemon %s did not come up:\n%s", tag, b)
	return nil
}

func (e *e2e) cli(args ...string) string {
	e.t.Helper()
	out, err := exec.Command(e.bin, append(args, "--socket", filepath.Join(e.dir, "admin.sock"))...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("sealgate %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// curl runs curl in the client namespace against port 443 of the host side.
func (e *e2e) curl(path string) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", e.v.ns, "curl", "-sS", "--connect-timeout", "2", "-m", "5",
		"--cacert", e.caFile, "https://"+e.v.hostIP+path).CombinedOutput()
	return string(out), err
}

func (e *e2e) guardDrops(reason string) float64 {
	e.t.Helper()
	var st Stats
	if err := NewClient(filepath.Join(e.dir, "admin.sock")).Do("GET", "/v1/stats", nil, &st); err != nil {
		e.t.Fatal(err)
	}
	total := 0.0
	for _, s := range st.Metrics["sealgate_guard_packets_total"] {
		if s.Labels["reason"] == reason && s.Labels["interface"] == e.v.hostIf {
			total += s.Value
		}
	}
	return total
}

func TestE2ESteeredPortAndXDPBlock(t *testing.T) {
	privileged(t, "curl")
	e := newE2E(t)
	e.start("a")
	out, err := e.curl("/hello")
	if err != nil || !strings.Contains(out, "upstream saw /hello from "+e.v.peerIP) {
		t.Fatalf("client through steered port 443: %v: %s", err, out)
	}
	status := e.cli("status")
	for _, want := range []string{"steering   on", e.v.hostIP + "/32 port 443 -> api: socket registered", e.v.hostIf + ": attached"} {
		if !strings.Contains(status, want) {
			t.Fatalf("status lacks %q:\n%s", want, status)
		}
	}
	before := e.guardDrops("blocklist")
	e.cli("block", "add", e.v.peerIP, "--ttl", "3s")
	if out, err := e.curl("/blocked"); err == nil {
		t.Fatalf("blocked client still got through: %s", out)
	}
	if after := e.guardDrops("blocklist"); after <= before {
		t.Fatalf("no XDP blocklist drops counted (%v → %v)", before, after)
	}
	stats := e.cli("stats")
	if !regexp.MustCompile(`steer_steered_total\s+-\s+[1-9]`).MatchString(stats) {
		t.Errorf("steered connections not counted:\n%s", stats)
	}
	time.Sleep(3500 * time.Millisecond)
	if out, err := e.curl("/again"); err != nil || !strings.Contains(out, "/again") {
		t.Fatalf("after the TTL the client is still blocked: %v %s", err, out)
	}
	// The guard at runtime: detach, then attach in generic mode.
	if out := e.cli("detach", e.v.hostIf); !strings.Contains(out, "guard detached from "+e.v.hostIf) {
		t.Fatalf("detach: %s", out)
	}
	if out := e.cli("attach", e.v.hostIf, "--mode", "generic"); !strings.Contains(out, "guard attached to "+e.v.hostIf+" (generic mode") {
		t.Fatalf("attach: %s", out)
	}
	if status := e.cli("status"); !strings.Contains(status, e.v.hostIf+": attached (generic)") {
		t.Fatalf("status after attach:\n%s", status)
	}
}

func TestE2ERestartRefusesNothing(t *testing.T) {
	privileged(t)
	e := newE2E(t)
	first := e.start("first")
	// A client in the other namespace opens a new connection per request.
	loop := exec.Command("ip", "netns", "exec", e.v.ns, os.Args[0], "-test.run=^$")
	loop.Env = append(os.Environ(), "SEALGATE_LOOP_URL=https://"+e.v.hostIP+"/loop", "SEALGATE_LOOP_CA="+e.caFile, "SEALGATE_LOOP_FOR=5s")
	var loopOut bytes.Buffer
	loop.Stdout, loop.Stderr = &loopOut, &loopOut
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	second := e.start("second") // takes the sockets over; the first drains and exits
	done := make(chan error, 1)
	go func() { done <- first.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("first daemon exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("first daemon did not exit after handing over")
	}
	loop.Wait()
	m := regexp.MustCompile(`ok=(\d+) errors=(\d+)`).FindStringSubmatch(loopOut.String())
	if m == nil {
		t.Fatalf("client loop output:\n%s", loopOut.String())
	}
	ok, _ := strconv.Atoi(m[1])
	if m[2] != "0" || ok < 20 {
		a, _ := os.ReadFile(filepath.Join(e.dir, "first.log"))
		b, _ := os.ReadFile(filepath.Join(e.dir, "second.log"))
		t.Fatalf("across the restart: %s ok, %s errors (want 0 errors)\n%s\nfirst daemon:\n%s\nsecond daemon:\n%s", m[1], m[2], loopOut.String(), a, b)
	}
	var st Status
	if err := NewClient(filepath.Join(e.dir, "admin.sock")).Do("GET", "/v1/status", nil, &st); err != nil || st.PID != second.Process.Pid {
		t.Fatalf("after restart: status from pid %d (%v), want %d", st.PID, err, second.Process.Pid)
	}
	t.Logf("restart under load: %d requests, 0 errors", ok)
}
