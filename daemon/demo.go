package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sealgate/sealgate/appliance/demoapi"
	"github.com/sealgate/sealgate/appliance/demoauth"
	"github.com/sealgate/sealgate/bpf"
	"github.com/sealgate/sealgate/daemon/config"
)

// DemoOptions configure `sealgate demo`.
type DemoOptions struct {
	Dir    string // state: certificate, keys, config, admin socket, log
	Listen string // engine address, default 127.0.0.1:8443
	// LogListen is the DLP log-only listener, default 127.0.0.1:8444.
	LogListen string
	Out       io.Writer
	Binary    string // how to call sealgate in the printed commands
}

// EnsureSelfSigned makes (or reuses, while valid for a day more) a
// self-signed ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1.
func EnsureSelfSigned(certPath, keyPath string) error {
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && pair.Leaf != nil &&
		time.Now().Add(24*time.Hour).Before(pair.Leaf.NotAfter) {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"sealgate demo"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

const demoConfig = `# sealgate demo configuration, written by 'sealgate demo'. Edit it and run
# 'sealgate reload --socket %[1]s/admin.sock' to see a reload.
[daemon]
state_dir    = "%[1]s/state"
admin_socket = "%[1]s/admin.sock"
admin_group  = ""
access_log   = "stdout"
bpffs        = "%[1]s/bpffs"

[audit]
path = "%[1]s/audit.log"

# A client reading 30 distinct records within a minute is a leak in
# progress: alert, and block its address for 2 minutes.
[anomaly]
window      = "1m"
enumeration = 30
auth_failures = 20
cooldown    = "2m"
block       = { enumeration = "2m" }

[[listener]]
name   = "demo"
listen = "%[2]s"
%[4]s
[listener.tls]
certs = [{ cert = "%[1]s/demo.crt", key = "%[1]s/demo.key" }]

[[listener]]
name   = "demo-log"
listen = "%[5]s"
[listener.tls]
certs = [{ cert = "%[1]s/demo.crt", key = "%[1]s/demo.key" }]

# The customer list is public here, but leaves with card numbers, national
# ids and other findings redacted.
[[route]]
name     = "customer-list"
listener = "demo"
match    = "GET /api/customers"
upstream = "http://%[3]s"
seal     = "optional"
[route.dlp]
action = "redact"

# Everything else needs a token: a customer may read only their own record.
[[route]]
name     = "customers"
listener = "demo"
match    = "/"
upstream = "http://%[3]s"
seal     = "optional"
max_body = "1MiB"
[route.auth]
methods = ["jwt"]
forward_headers = { subject = "X-Auth-Subject", scopes = "X-Auth-Scopes" }
[[route.auth.jwt]]
issuer     = "%[6]s"
audience   = ["%[7]s"]
algorithms = ["ES256"]
jwks_file  = "%[1]s/jwks.json"
leeway     = "30s"
[[route.authz.rule]]
match = "GET /api/customers/{id}"
owner = { var = "id", claim = "sub" }
[[route.authz.rule]]
match  = "GET /api/customers"
scopes = ["customers:list"]
[[route.authz.rule]]
match = "POST /api/echo"
[route.rate_limit]
key   = "identity"
rate  = "5/s"
burst = 10
[route.validate]
methods        = ["GET", "POST"]
max_json_depth = 32
[route.waf]
mode = "block"
[route.dlp]
action = "redact"

# The same API with DLP in log-only mode: the data passes, findings are
# counted (sealgate stats) and logged by kind, never by value.
[[route]]
name     = "dlp-log-only"
listener = "demo-log"
match    = "/"
upstream = "http://%[3]s"
[route.dlp]
action = "log"
`

// Demo runs sealgate on an embedded default configuration in front of the
// built-in demo API until ctx ends or Ctrl-C.
func Demo(ctx context.Context, o DemoOptions) error {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8443"
	}
	if o.LogListen == "" {
		o.LogListen = "127.0.0.1:8444"
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo directory: %w", err)
	}
	if err := EnsureSelfSigned(filepath.Join(dir, "demo.crt"), filepath.Join(dir, "demo.key")); err != nil {
		return fmt.Errorf("demo certificate: %w", err)
	}
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo upstream: %w", err)
	}
	upSrv := &http.Server{Handler: demoapi.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go upSrv.Serve(up)
	defer upSrv.Close()

	iss, err := demoauth.New(dir)
	if err != nil {
		return fmt.Errorf("demo token issuer: %w", err)
	}
	for _, u := range []struct{ name, sub string }{{"alice", demoauth.Alice}, {"bob", demoauth.Bob}} {
		tok, err := iss.Token(u.sub, []string{"customers:read"}, 24*time.Hour)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, u.name+".token"), []byte(tok+"\n"), 0o600); err != nil {
			return err
		}
	}
	steerLine, steerNote := "", ""
	if why := demoSteerBlocker(); why != "" {
		steerNote = "port 443 steering off: " + why
	} else {
		steerLine = `steer  = [{ prefix = "127.0.0.1/32", ports = [443] }]`
		steerNote = "steering 127.0.0.1:443 into the engine with eBPF sk_lookup (nothing else listens there)"
	}
	defer demoCleanupEBPF(dir)
	cfgPath := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(demoConfig, dir, o.Listen, up.Addr(), steerLine, o.LogListen, iss.IssuerURL(), iss.Audience())), 0o600); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "sealgate.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	d, err := New(Options{
		Load:    func() (*config.Config, error) { return config.Load(cfgPath) },
		Stdout:  logf,
		Signals: true,
		Banner: func(d *Daemon) {
			printDemoBanner(o.Out, o.Binary, dir, d.Addr("demo"), d.Addr("demo-log"), logPath, steerNote, steerLine != "")
		},
	})
	if err != nil {
		return err
	}
	err = d.Run(ctx)
	fmt.Fprintln(o.Out, "sealgate demo stopped.")
	return err
}

func printDemoBanner(w io.Writer, bin, dir, addr, logAddr, logPath, steerNote string, steered bool) {
	if w == nil {
		return
	}
	sock := filepath.Join(dir, "admin.sock")
	alice := fmt.Sprintf(`-H "Authorization: Bearer $(cat %s/alice.token)"`, dir)
	fmt.Fprintf(w, `sealgate demo is running.
  engine      https://%[2]s  (TLS, self-signed certificate %[3]s/demo.crt)
  log-only    https://%[5]s  (the same API with DLP in log-only mode)
  upstream    the built-in demo customer API on loopback
  admin       %[4]s
  logs        %[6]s (access), %[3]s/audit.log (audit)
  %[7]s

Try (tokens of two demo customers: %[3]s/alice.token is c-1001, %[3]s/bob.token is c-1002):
  curl -k https://%[2]s/api/customers                  cards and national ids redacted by DLP
  curl -k https://%[5]s/api/customers                  log-only route: the data passes, findings are counted
  curl -k https://%[2]s/api/customers/c-1001           401: no token
  curl -k %[8]s https://%[2]s/api/customers/c-1001     200: Alice's own record
  curl -k %[8]s https://%[2]s/api/customers/c-1002     403: Bob's record
  for i in $(seq 12); do curl -sk -o /dev/null -w '%%{http_code} ' %[8]s https://%[2]s/api/customers/c-1001; done; echo     429 after a burst of 10
  %[1]s curl -k --show-wire https://%[2]s/api/customers                  sealed end to end (HPKE + AEAD records)
  %[9]s%[1]s status --socket %[4]s
  %[1]s stats --socket %[4]s
  %[1]s block list --socket %[4]s
  curl -s --unix-socket %[4]s http://sealgate/metrics | grep sealgate_dlp_findings_total

An enumeration loop is a leak in progress: it is alerted and its source blocked for 2 minutes
(undo with: %[1]s block del 127.0.0.1 --socket %[4]s):
  for i in $(seq 1001 1040); do curl -sk -o /dev/null -w '%%{http_code} ' %[8]s https://%[2]s/api/customers/c-$i; sleep 0.25; done; echo

Press Ctrl-C to stop.
`, bin, addr, dir, sock, logAddr, logPath, steerNote, alice, port443Line(steered))
}

func port443Line(steered bool) string {
	if !steered {
		return ""
	}
	return "curl -k https://127.0.0.1/api/customers             port 443, steered into the engine by eBPF\n  "
}

// demoSteerBlocker says why the demo cannot steer 127.0.0.1:443, or "".
func demoSteerBlocker() string {
	if os.Geteuid() != 0 {
		return "needs root (CAP_BPF, CAP_NET_ADMIN); run 'sudo make demo' to see it"
	}
	if err := bpf.ProbeSteering(); err != nil {
		return err.Error()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:443")
	if err != nil {
		return "something already listens on 127.0.0.1:443"
	}
	ln.Close()
	return ""
}

// demoCleanupEBPF removes the demo's pinned state and its private bpffs, so
// nothing of the demo outlives it.
func demoCleanupEBPF(dir string) {
	fs := filepath.Join(dir, "bpffs")
	bpf.Cleanup(bpf.Options{BPFFS: fs})
	unmount(fs)
}
