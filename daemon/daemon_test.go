package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sealgate/sealgate/daemon/config"
	"github.com/sealgate/sealgate/internal/testpki"
)

// testDaemon runs a daemon on a config file in a temp dir.
type testDaemon struct {
	d       *Daemon
	dir     string
	cfgPath string
	ca      *testpki.CA
	cancel  context.CancelFunc
	done    chan error
	logs    *syncBuffer
}

type syncBuffer = testutil.SyncBuffer

const testConfig = `[daemon]
state_dir = "%[1]s/state"
admin_socket = "%[1]s/admin.sock"
admin_group = "sealgate-test-admins"
bpffs = "%[1]s/bpffs"
%[4]s
[audit]
path = "%[1]s/audit.log"

[[listener]]
name = "api"
listen = "127.0.0.1:0"
[listener.tls]
certs = [{ cert = "%[2]s", key = "%[3]s" }]

[[route]]
name = "api"
match = "/"
upstream = "%[5]s"

[[route]]
name = "dead"
match = "/dead/"
upstream = "http://127.0.0.1:1"
`

func writeConfig(t *testing.T, dir, cert, key, upstream, extra string) string {
	t.Helper()
	p := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(testConfig, dir, cert, key, extra, upstream)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startDaemon(t *testing.T, upstream http.Handler, signals bool) *testDaemon {
	t.Helper()
	return startDaemonWith(t, upstream, signals, "")
}

// startDaemonWith adds extra lines to the [daemon] table.
func startDaemonWith(t *testing.T, upstream http.Handler, signals bool, extra string) *testDaemon {
	t.Helper()
	if upstream == nil {
		upstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "upstream ok") })
	}
	up := httptest.NewServer(upstream)
	t.Cleanup(up.Close)
	dir, err := os.MkdirTemp("", "sgd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmount(filepath.Join(dir, "bpffs"))
		os.RemoveAll(dir)
	})
	os.Chmod(dir, 0o755)
	ca := testpki.NewCA(t, "test")
	cert, key := ca.Leaf(t, "localhost", "localhost", "127.0.0.1")
	td := &testDaemon{dir: dir, ca: ca, done: make(chan error, 1), logs: &syncBuffer{}}
	td.cfgPath = writeConfig(t, dir, cert, key, up.URL, extra)
	d, err := New(Options{Load: func() (*config.Config, error) { return config.Load(td.cfgPath) }, Stdout: td.logs, Signals: signals})
	if err != nil {
		t.Fatal(err)
	}
	td.d = d
	ctx, cancel := context.WithCancel(context.Background())
	td.cancel = cancel
	go func() { td.done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-td.done:
		case <-time.After(10 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	waitFor(t, func() bool {
		if d.Addr("api") == "" {
			return false
		}
		c, err := net.Dial("unix", filepath.Join(dir, "admin.sock"))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return td
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("condition not reached in 5s")
}

func (td *testDaemon) client(h2 bool) *http.Client {
	tc := &tls.Config{RootCAs: td.ca.Pool, ServerName: "localhost"}
	if !h2 {
		tc.NextProtos = []string{"http/1.1"}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: h2}, Timeout: 10 * time.Second}
}

func (td *testDaemon) get(t *testing.T, c *http.Client, path string) *http.Response {
	t.Helper()
	resp, err := c.Get("https://" + td.d.Addr("api") + path)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func (td *testDaemon) cli(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = Main(append(args[:1:1], append([]string{"--socket", filepath.Join(td.dir, "admin.sock")}, args[1:]...)...), &o, &e)
	return o.String(), e.String(), code
}

func TestReloadRefusesBrokenConfig(t *testing.T) {
	td := startDaemon(t, nil, false)
	c := td.client(false)
	if r := td.get(t, c, "/x"); r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	good, _ := os.ReadFile(td.cfgPath)
	os.WriteFile(td.cfgPath, append(good, []byte("\n[[route]]\nname = \"broken\"\nmatch = \"/b/\"\nupstream = \"gopher://nope\"\n")...), 0o600)
	out, errOut, code := td.cli("reload")
	if code != 1 || !strings.Contains(errOut, "route[2].upstream") {
		t.Fatalf("reload of a broken config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if r := td.get(t, c, "/x"); r.StatusCode != 200 {
		t.Fatalf("after a refused reload: status %d", r.StatusCode)
	}
	st := td.d.Status()
	if st.Reload.OK || !strings.Contains(st.Reload.Error, "route[2].upstream") {
		t.Fatalf("status does not show the refused reload: %+v", st.Reload)
	}
	out, _, _ = td.cli("status")
	if !strings.Contains(out, "REFUSED") {
		t.Fatalf("sealgate status does not show the refusal:\n%s", out)
	}
	os.WriteFile(td.cfgPath, good, 0o600)
	if _, errOut, code := td.cli("reload"); code != 0 {
		t.Fatalf("good reload failed: %s", errOut)
	}
	if st := td.d.Status(); !st.Reload.OK {
		t.Fatalf("status after good reload: %+v", st.Reload)
	}
}

func TestCertificateRotationOnSIGHUP(t *testing.T) {
	td := startDaemon(t, nil, true)
	h2 := td.client(true)
	first := td.get(t, h2, "/x").TLS.PeerCertificates[0].SerialNumber
	// Replace the certificate files in place, as certbot would.
	cfg := td.d.Config()
	newCert, newKey := td.ca.Leaf(t, "localhost", "localhost", "127.0.0.1")
	for _, p := range [][2]string{{newCert, cfg.Listeners[0].TLS.Certs[0].Cert}, {newKey, cfg.Listeners[0].TLS.Certs[0].Key}} {
		b, _ := os.ReadFile(p[0])
		os.WriteFile(p[1], b, 0o600)
	}
	before := td.d.Status().Reload.Count
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, func() bool { return td.d.Status().Reload.Count > before })
	if r := td.get(t, h2, "/x"); r.StatusCode != 200 || r.TLS.PeerCertificates[0].SerialNumber.Cmp(first) != 0 {
		t.Fatal("the open h2 connection broke or changed certificate across the reload")
	}
	if fresh := td.get(t, td.client(true), "/x").TLS.PeerCertificates[0].SerialNumber; fresh.Cmp(first) == 0 {
		t.Fatal("a new connection still sees the old certificate")
	}
}

func TestNotifyAndDrain(t *testing.T) {
	dir, _ := os.MkdirTemp("", "sgn")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "notify.sock")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pc.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	var td *testDaemon
	expect := func(prefix string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.HasPrefix(m, prefix) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q on $NOTIFY_SOCKET; logs:\n%s", prefix, td.logs.String())
			}
		}
	}
	release, started := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	})
	td = startDaemon(t, slow, false)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	expect("READY=1")
	got := make(chan string, 1)
	go func() {
		resp, err := td.client(false).Get("https://" + td.d.Addr("api") + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	td.cancel() // as SIGTERM does
	expect("STOPPING=1")
	time.Sleep(100 * time.Millisecond)
	close(release) // the deferred close sees it closed
	if s := <-got; s != "finished" {
		t.Fatalf("in-flight request during drain got %q", s)
	}
	select {
	case err := <-td.done:
		if err != nil {
			t.Fatal(err)
		}
		td.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not exit after draining")
	}
}

func TestMetricsExposition(t *testing.T) {
	td := startDaemon(t, nil, false)
	td.get(t, td.client(false), "/x")
	if r := td.get(t, td.client(true), "/dead/x"); r.StatusCode != 502 {
		t.Fatalf("dead upstream: %d", r.StatusCode)
	}
	var raw []byte
	if err := NewClient(filepath.Join(td.dir, "admin.sock")).Do("GET", "/metrics", nil, &raw); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	for _, name := range []string{"sealgate_build_info", "sealgate_cpu_feature", "sealgate_requests_total",
		"sealgate_request_duration_seconds", "sealgate_tls_handshakes_total", "sealgate_upstream_errors_total"} {
		if fams[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}
	if !regexp.MustCompile(`sealgate_upstream_errors_total\{reason="unreachable",route="dead"\} 1`).Match(raw) {
		t.Errorf("upstream error not counted:\n%s", grep(raw, "upstream_errors"))
	}
	if !regexp.MustCompile(`sealgate_requests_total\{code="200",listener="api",route="api"\} 1`).Match(raw) {
		t.Errorf("request not counted:\n%s", grep(raw, "requests_total"))
	}
	out, _, code := td.cli("stats")
	if code != 0 || !strings.Contains(out, "requests_total") || !strings.Contains(out, "code=502,listener=api,route=dead") {
		t.Fatalf("sealgate stats:\n%s", out)
	}
	out, _, code = td.cli("stats", "--json")
	if code != 0 || !strings.Contains(out, `"sealgate_requests_total"`) {
		t.Fatalf("sealgate stats --json:\n%s", out)
	}
}

func grep(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestStatusCLI(t *testing.T) {
	td := startDaemon(t, nil, false)
	out, errOut, code := td.cli("status")
	if code != 0 || !strings.Contains(out, "aead order") || !strings.Contains(out, td.d.Addr("api")) {
		t.Fatalf("status: %d %s %s", code, out, errOut)
	}
	out, _, _ = td.cli("status", "--json")
	for _, k := range []string{`"version"`, `"uptime_s"`, `"config_sha256"`, `"aead_order"`, `"listeners"`, `"steering"`, `"interfaces"`} {
		if !strings.Contains(out, k) {
			t.Errorf("status --json lacks %s", k)
		}
	}
	var e bytes.Buffer
	if code := Main([]string{"status", "--socket", "/nonexistent/admin.sock"}, io.Discard, &e); code != 1 || !strings.Contains(e.String(), "is the daemon running?") {
		t.Fatalf("status on a missing socket: exit %d, %q", code, e.String())
	}
}

func TestAdminSocketPermissions(t *testing.T) {
	td := startDaemon(t, nil, false)
	sock := filepath.Join(td.dir, "admin.sock")
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o660 {
		t.Fatalf("admin socket mode %o, want 660", st.Mode().Perm())
	}
	privileged(t)
	// A peer in the socket's group but neither root nor in admin_group.
	if err := os.Chown(sock, 0, 65534); err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory is private to root: run a copy.
	exe := filepath.Join(td.dir, "peer.test")
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "SEALGATE_ADMIN_PEER_SOCKET="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("peer: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "status=200 reload=403 block=403") {
		t.Fatalf("unprivileged peer got:\n%s", out)
	}
	// Root is admin.
	if err := NewClient(sock).Do("POST", "/v1/reload", nil, nil); err != nil {
		t.Fatalf("root reload: %v", err)
	}
}

// adminPeer runs in a child process under another uid (see TestMain).
func adminPeer(sock string) {
	hc := NewClient(sock).hc
	code := func(method, path string) int {
		req, _ := http.NewRequest(method, "http://sealgate"+path, strings.NewReader(`{"prefix":"192.0.2.1"}`))
		resp, err := hc.Do(req)
		if err != nil {
			fmt.Println("peer:", err)
			os.Exit(1)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	fmt.Printf("status=%d reload=%d block=%d\n", code("GET", "/v1/status"), code("POST", "/v1/reload"), code("POST", "/v1/blocklist"))
}

func TestCheckConfigCLI(t *testing.T) {
	var o, e bytes.Buffer
	if code := Main([]string{"check-config", "config/testdata/unknown-key.toml"}, &o, &e); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(e.String(), "config/testdata/unknown-key.toml:11: unknown key \"route.upstrem_timeout\"") {
		t.Fatalf("stderr %q", e.String())
	}
	o.Reset()
	e.Reset()
	if code := Main([]string{"check-config", "config/testdata/valid-minimal.toml"}, &o, &e); code != 0 || !strings.Contains(o.String(), "ok") {
		t.Fatalf("valid config: exit %d %s %s", code, o.String(), e.String())
	}
	if code := Main([]string{"check-config", "--help"}, &o, &e); code != 0 || !strings.Contains(e.String(), "usage: sealgate check-config FILE") {
		t.Fatalf("--help: %d %q", code, e.String())
	}
}

func TestBlocklistCLI(t *testing.T) {
	td := startDaemon(t, nil, false)
	if out, errOut, code := td.cli("block", "add", "192.0.2.0/24", "--ttl", "10m"); code != 0 || !strings.Contains(out, "blocked 192.0.2.0/24 for 10m0s") {
		t.Fatalf("block add: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := td.cli("block", "add", "not-an-ip"); code != 1 || !strings.Contains(errOut, "want an address or CIDR prefix") {
		t.Fatalf("bad prefix: %d %q", code, errOut)
	}
	out, _, _ := td.cli("block", "list")
	if !strings.Contains(out, "192.0.2.0/24") || !strings.Contains(out, "manual") {
		t.Fatalf("block list:\n%s", out)
	}
	if _, errOut, code := td.cli("block", "del", "192.0.2.0/24"); code != 0 {
		t.Fatalf("block del: %s", errOut)
	}
	if _, errOut, code := td.cli("block", "del", "192.0.2.0/24"); code != 1 || !strings.Contains(errOut, "not on the blocklist") {
		t.Fatalf("second del: %q", errOut)
	}
}

// TestDemo walks the demo as the banner tells a newcomer to: DLP redaction
// and log-only, 401/200/403/429, a sealed request, and an enumeration loop
// alerted and blocked.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Demo(ctx, DemoOptions{Dir: dir, Listen: "127.0.0.1:0", LogListen: "127.0.0.1:0", Out: out, Binary: "sealgate"})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var addr, logAddr string
	waitFor(t, func() bool {
		m := regexp.MustCompile(`engine\s+https://(\S+)`).FindStringSubmatch(out.String())
		l := regexp.MustCompile(`log-only\s+https://(\S+)`).FindStringSubmatch(out.String())
		if m != nil && l != nil {
			addr, logAddr = m[1], l[1]
			return true
		}
		return false
	})
	if !strings.Contains(out.String(), "status --socket "+filepath.Join(dir, "admin.sock")) {
		t.Errorf("banner does not say how to read status:\n%s", out.String())
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	token := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name+".token"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	get := func(base, path, tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+base+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	alice := token("alice")

	// DLP: redacted on the main listener, intact (but counted) on log-only.
	code, body := get(addr, "/api/customers", "")
	if code != 200 || strings.Contains(body, "4111 1111 1111 1111") || strings.Contains(body, "123-45-6789") || !strings.Contains(body, "1111") {
		t.Fatalf("list through DLP redact: %d %.300s", code, body)
	}
	if !json.Valid([]byte(body)) {
		t.Fatal("redacted list is not valid JSON")
	}
	code, body = get(logAddr, "/api/customers", "")
	if code != 200 || !strings.Contains(body, "4111 1111 1111 1111") {
		t.Fatalf("list through DLP log-only: %d %.300s", code, body)
	}

	// Access control: 401, 200 own record, 403 someone else's, 429 after a burst.
	if code, _ := get(addr, "/api/customers/c-1001", ""); code != 401 {
		t.Fatalf("no token: %d, want 401", code)
	}
	if code, body := get(addr, "/api/customers/c-1001", alice); code != 200 || !strings.Contains(body, `"c-1001"`) {
		t.Fatalf("own record: %d %s", code, body)
	}
	if code, _ := get(addr, "/api/customers/c-1002", alice); code != 403 {
		t.Fatalf("other's record: %d, want 403", code)
	}
	saw429 := false
	for i := 0; i < 15 && !saw429; i++ {
		code, _ := get(addr, "/api/customers/c-1001", alice)
		saw429 = code == 429
	}
	if !saw429 {
		t.Fatal("no 429 after a burst")
	}

	// A sealed request with the client SDK.
	var sout, serr bytes.Buffer
	if code := Main([]string{"curl", "-k", "--show-wire", "https://" + addr + "/api/customers"}, &sout, &serr); code != 0 || !strings.Contains(sout.String(), `"c-1020"`) {
		t.Fatalf("sealgate curl: exit %d: %s %s", code, sout.String(), serr.String())
	}
	// What an observer between client and appliance sees: no customer data,
	// not even the path.
	wire := serr.String()
	if !strings.Contains(wire, "/.well-known/sealgate/gateway") || !strings.Contains(sout.String(), "Lovelace") {
		t.Fatalf("--show-wire did not show the sealed exchange:\n%.2000s", wire)
	}
	for _, secret := range []string{"Lovelace", "c-1020", "/api/customers", "example.com"} {
		if strings.Contains(wire, secret) {
			t.Fatalf("the wire shows %q in the clear", secret)
		}
	}

	// The access log names the subject and never carries the token (lines
	// reach the file within the log writer's gathering time).
	var logs []byte
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		logs, _ = os.ReadFile(filepath.Join(dir, "sealgate.log"))
		if strings.Contains(string(logs), `"subject":"c-1001"`) || time.Now().After(deadline) {
			break
		}
	}
	if !strings.Contains(string(logs), `"subject":"c-1001"`) || strings.Contains(string(logs), alice[:40]) {
		t.Fatalf("access log: subject missing or token leaked")
	}

	// Enumeration: Bob walks the ids; after 30 distinct records he is blocked.
	bob := token("bob")
	blocked := false
	for i := 1001; i <= 1040 && !blocked; i++ {
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s/api/customers/c-%d", addr, i), nil)
		req.Header.Set("Authorization", "Bearer "+bob)
		resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}).Do(req)
		if err != nil {
			blocked = true
			break
		}
		resp.Body.Close()
		time.Sleep(210 * time.Millisecond) // under the rate limit
	}
	if !blocked {
		t.Fatal("an enumeration loop over 40 records was never blocked")
	}
	var bl bytes.Buffer
	Main([]string{"block", "list", "--socket", filepath.Join(dir, "admin.sock")}, &bl, io.Discard)
	if !strings.Contains(bl.String(), "127.0.0.1/32") || !strings.Contains(bl.String(), "alert:enumeration") {
		t.Fatalf("block list does not show the enumeration block:\n%s", bl.String())
	}
	audit, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	if !strings.Contains(string(audit), "enumeration") {
		t.Fatalf("audit log has no enumeration alert:\n%s", audit)
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			var o, e bytes.Buffer
			if code := Main([]string{c.name, "--help"}, &o, &e); code != 0 {
				t.Fatalf("exit %d", code)
			}
			if !strings.Contains(e.String(), "usage: sealgate "+c.name) {
				t.Fatalf("--help printed %q", e.String())
			}
		})
	}
	var o, e bytes.Buffer
	if code := Main([]string{"frobnicate"}, &o, &e); code != 1 || !strings.Contains(e.String(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, e.String())
	}
}

func TestKeysCLI(t *testing.T) {
	td := startDaemon(t, nil, false)
	out, errOut, code := td.cli("keys", "list")
	if code != 0 || !strings.Contains(out, "current") {
		t.Fatalf("keys list: %d %q %q", code, out, errOut)
	}
	out, errOut, code = td.cli("keys", "rotate")
	if code != 0 || !strings.Contains(out, "new sealing key id 2") {
		t.Fatalf("keys rotate: %d %q %q", code, out, errOut)
	}
	out, _, _ = td.cli("keys", "list", "--json")
	if !strings.Contains(out, `"previous"`) || strings.Contains(strings.ToLower(out), "private") {
		t.Fatalf("keys list after rotation:\n%s", out)
	}
	audit, _ := os.ReadFile(filepath.Join(td.dir, "audit.log"))
	if !strings.Contains(string(audit), `"kind":"key_rotate"`) {
		t.Fatalf("key rotation not audited:\n%s", audit)
	}
	var o bytes.Buffer
	if code := Main([]string{"keys", "hash", "test"}, &o, io.Discard); code != 0 || strings.TrimSpace(o.String()) != "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" {
		t.Fatalf("keys hash: %q", o.String())
	}
}

func TestMetricsListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	td := startDaemonWith(t, nil, false, fmt.Sprintf("metrics_listen = %q", addr))
	td.get(t, td.client(false), "/x")
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `sealgate_requests_total{code="200",listener="api",route="api"} 1`) {
		t.Fatalf("metrics_listen: %d\n%s", resp.StatusCode, grep(b, "requests_total"))
	}
	// Metrics only: nothing else of the admin API is exposed there.
	resp, err = http.Post("http://"+addr+"/v1/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("metrics_listen serves the admin API")
	}
}

// TestFastPathSwitches: limits.http1_fast_path and http2_fast_path choose
// the server that takes each connection, as sealgate_connections_total shows.
func TestFastPathSwitches(t *testing.T) {
	for _, tt := range []struct {
		name, extra string
		want        []string
	}{
		{"default", "", []string{`server="http1_fast"} 1`, `server="http2"} 1`}},
		{"off", "[limits]\nhttp1_fast_path = false\nhttp2_fast_path = false\n", []string{`server="http1_full"} 1`, `server="http2_full"} 1`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			td := startDaemonWith(t, nil, false, tt.extra)
			if r := td.get(t, td.client(false), "/x"); r.StatusCode != 200 || r.ProtoMajor != 1 {
				t.Fatalf("HTTP/1.1: %d %s", r.StatusCode, r.Proto)
			}
			if r := td.get(t, td.client(true), "/x"); r.StatusCode != 200 || r.ProtoMajor != 2 {
				t.Fatalf("h2: %d %s", r.StatusCode, r.Proto)
			}
			var raw []byte
			if err := NewClient(filepath.Join(td.dir, "admin.sock")).Do("GET", "/metrics", nil, &raw); err != nil {
				t.Fatal(err)
			}
			got := grep(raw, "sealgate_connections_total{")
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("want %s in\n%s", w, got)
				}
			}
		})
	}
}
