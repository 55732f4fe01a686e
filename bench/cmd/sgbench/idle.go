package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

// cmdIdle opens n TLS connections to addr, makes one keep-alive request on
// each so the proxy holds a complete client and upstream state, leaves them
// idle, and reports the proportional set size (PSS, so nginx's master and
// worker do not count shared pages twice) of the proxy's processes before
// and with the connections open.
func cmdIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	addr := fs.String("addr", "", "proxy address host:port")
	ca := fs.String("ca", "", "CA certificate (PEM)")
	path := fs.String("path", "/json", "request path")
	n := fs.Int("n", 10000, "connections")
	par := fs.Int("parallel", 32, "connections opened at once")
	pidList := fs.String("pids", "", "comma-separated PIDs of the proxy's processes")
	settle := fs.Duration("settle", 2*time.Second, "wait before reading memory")
	prefix := fs.String("prefix", "", "prefix of each output line")
	h2 := fs.Bool("h2", false, "h2 connections (one stream each) instead of HTTP/1.1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var pids []int
	for _, p := range strings.Split(*pidList, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("-pids %q: %w", *pidList, err)
		}
		pids = append(pids, pid)
	}
	tc, err := clientTLS(*ca)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", *addr, err)
	}
	tc.ServerName = host
	open := openIdle
	if *h2 {
		tc.NextProtos = []string{"h2"}
		open = openIdleH2
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the open-file limit: %w", err)
	}
	lim.Cur = min(uint64(*n)+1024, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising the open-file limit to %d: %w", lim.Cur, err)
	}
	before, err := pss(pids)
	if err != nil {
		return err
	}
	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: " + *addr + "\r\nUser-Agent: sgbench-idle\r\n\r\n")
	conns := make([]net.Conn, *n)
	work := make(chan int)
	errc := make(chan error, *par)
	var wg sync.WaitGroup
	for range *par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := open(*addr, tc, req)
				if err != nil {
					errc <- fmt.Errorf("connection %d: %w", i, err)
					for range work {
					}
					return
				}
				conns[i] = c
			}
		}()
	}
	for i := range *n {
		work <- i
	}
	close(work)
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	select {
	case err := <-errc:
		return err
	default:
	}
	time.Sleep(*settle)
	after, err := pss(pids)
	if err != nil {
		return err
	}
	return writeMeasurements(os.Stdout, *prefix, []Measurement{
		{"rss_mib", float64(after) / (1 << 20)},
		{"rss_base_mib", float64(before) / (1 << 20)},
		{"kib_per_conn", float64(after-before) / 1024 / float64(*n)},
		{"conns", float64(*n)},
	})
}

func openIdle(addr string, tc *tls.Config, req []byte) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, tc)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// openIdleH2 opens an h2 connection and completes one GET on it through
// x/net's HTTP/2 client (path taken from the HTTP/1.1 request line req).
func openIdleH2(addr string, tc *tls.Config, req []byte) (net.Conn, error) {
	path := strings.Fields(string(req))[1]
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, tc)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fail := func(err error) (net.Conn, error) {
		c.Close()
		return nil, err
	}
	if err := c.Handshake(); err != nil {
		return fail(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		return fail(fmt.Errorf("ALPN %q, want h2", p))
	}
	cc, err := (&http2.Transport{}).NewClientConn(c)
	if err != nil {
		return fail(err)
	}
	r, err := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		return fail(err)
	}
	r.Header.Set("User-Agent", "sgbench-idle")
	resp, err := cc.RoundTrip(r)
	if err != nil {
		return fail(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("status %d", resp.StatusCode))
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// pss sums the proportional set size of pids, in bytes.
func pss(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
		if err != nil {
			return 0, fmt.Errorf("reading memory of pid %d: %w", pid, err)
		}
		v, err := smapsField(data, "Pss:")
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		total += v
	}
	return total, nil
}

// smapsField returns a "Name:   123 kB" field of smaps_rollup in bytes.
func smapsField(data []byte, name string) (int64, error) {
	for line := range bytes.Lines(data) {
		f := strings.Fields(string(line))
		if len(f) == 3 && f[0] == name && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s %q: %w", name, f[1], err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s field in smaps_rollup", name)
}
