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
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sealgate/sealgate/appliance/demoapi"
	"github.com/sealgate/sealgate/bpf"
	"github.com/sealgate/sealgate/daemon/config"
)

// DemoOptions configure `sealgate demo`.
type DemoOptions struct {
	Dir    string // state: certificate, keys, config, admin socket, log
	Listen string // engine address, default 127.0.0.1:8443
	Out    io.Writer
	Binary string // how to call sealgate in the printed commands
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

[[listener]]
name   = "demo"
listen = "%[2]s"
%[4]s
[listener.tls]
certs = [{ cert = "%[1]s/demo.crt", key = "%[1]s/demo.key" }]

[[route]]
name     = "demo-api"
listener = "demo"
match    = "/"
upstream = "http://%[3]s"
seal     = "optional"
max_body = "1MiB"
`

// Demo runs sealgate on an embedded default configuration in front of the
// built-in demo API until ctx ends or Ctrl-C.
func Demo(ctx context.Context, o DemoOptions) error {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8443"
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

	steerLine, steerNote := "", ""
	if why := demoSteerBlocker(); why != "" {
		steerNote = "port 443 steering off: " + why
	} else {
		steerLine = `steer  = [{ prefix = "127.0.0.1/32", ports = [443] }]`
		steerNote = "steering 127.0.0.1:443 into the engine with eBPF sk_lookup (nothing else listens there)"
		defer demoCleanupEBPF(dir)
	}
	cfgPath := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(demoConfig, dir, o.Listen, up.Addr(), steerLine)), 0o600); err != nil {
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
			printDemoBanner(o.Out, o.Binary, dir, d.Addr("demo"), logPath, steerNote, steerLine != "")
		},
	})
	if err != nil {
		return err
	}
	err = d.Run(ctx)
	fmt.Fprintln(o.Out, "sealgate demo stopped.")
	return err
}

func printDemoBanner(w io.Writer, bin, dir, addr, logPath, steerNote string, steered bool) {
	if w == nil {
		return
	}
	tryPort443 := ""
	if steered {
		tryPort443 = "  curl -k https://127.0.0.1/api/customers        (port 443, steered by eBPF)\n"
	}
	sock := filepath.Join(dir, "admin.sock")
	fmt.Fprintf(w, `sealgate demo is running.
  engine      https://%[2]s  (TLS, self-signed certificate %[3]s/demo.crt)
  upstream    the built-in demo customer API on loopback
  admin       %[4]s
  logs        %[5]s
  %[7]s

Try:
  curl -k https://%[2]s/api/customers
%[8]s  curl --cacert %[3]s/demo.crt https://localhost:%[6]s/api/customers/c-1002
  %[1]s status --socket %[4]s
  %[1]s stats --socket %[4]s
  curl -s --unix-socket %[4]s http://sealgate/metrics | grep sealgate_requests_total
  tail -f %[5]s

Press Ctrl-C to stop.
`, bin, addr, dir, sock, logPath, portOf(addr), steerNote, tryPort443)
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "8443"
	}
	return p
}

var errUsage = errors.New("usage")

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
