package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestMain lets the test binary double as the helper processes some tests
// start: a peer under another uid, a client inside a network namespace.
func TestMain(m *testing.M) {
	if sock := os.Getenv("SEALGATE_ADMIN_PEER_SOCKET"); sock != "" {
		adminPeer(sock)
		os.Exit(0)
	}
	if url := os.Getenv("SEALGATE_LOOP_URL"); url != "" {
		clientLoop(url)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// privileged skips a test that needs root, unless CI asked for the
// privileged tests, where a skip would hide a failure.
func privileged(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("SEALGATE_PRIVILEGED_TESTS") == "1" {
			t.Fatal("SEALGATE_PRIVILEGED_TESTS=1 but not running as root")
		}
		t.Skip("needs root (eBPF, network namespaces); run as root or with SEALGATE_PRIVILEGED_TESTS=1 in CI")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("SEALGATE_PRIVILEGED_TESTS") == "1" {
				t.Fatalf("%s not installed", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
}

// clientLoop runs inside the client namespace (see TestMain).
func clientLoop(url string) {
	pem, _ := os.ReadFile(os.Getenv("SEALGATE_LOOP_CA"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	dur, _ := time.ParseDuration(os.Getenv("SEALGATE_LOOP_FOR"))
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ok, errs := 0, 0
	var firstErr error
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	for ctx.Err() == nil {
		stage := "dial"
		trace := &httptrace.ClientTrace{
			ConnectDone:          func(string, string, error) { stage = "tls" },
			TLSHandshakeDone:     func(tls.ConnectionState, error) { stage = "request" },
			WroteRequest:         func(httptrace.WroteRequestInfo) { stage = "response" },
			GotFirstResponseByte: func() { stage = "body" },
		}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url, nil)
		resp, err := c.Do(req)
		if err != nil {
			err = fmt.Errorf("during %s: %w", stage, err)
		}
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if err != nil {
			errs++
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", time.Now().UTC().Format("15:04:05.000000"), err)
			}
			continue
		}
		ok++
	}
	fmt.Printf("ok=%d errors=%d first_error=%v\n", ok, errs, firstErr)
}
