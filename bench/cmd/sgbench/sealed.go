package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/sealgate/sealgate/client"
)

// cmdSealed drives closed-loop sealed requests through the client SDK's
// Transport (over HTTP/2, as the SDK is used) and reports requests/s and
// latency. It exits with status 3 and the reason on stderr when the target
// does not offer the sealing endpoint.
func cmdSealed(args []string) error {
	fs := flag.NewFlagSet("sealed", flag.ContinueOnError)
	url := fs.String("url", "", "target URL on the appliance")
	ca := fs.String("ca", "", "CA certificate (PEM)")
	dur := fs.Duration("duration", 5*time.Second, "measured duration")
	workers := fs.Int("c", 64, "concurrent requests")
	prefix := fs.String("prefix", "", "prefix of each output line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tc, err := clientTLS(*ca)
	if err != nil {
		return err
	}
	base := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 8, DisableCompression: true}
	hc := &http.Client{Transport: client.New(base), Timeout: 10 * time.Second}
	// One request first: it fetches the key configuration and opens the
	// session, and tells an appliance without sealing from a slow one.
	if err := get(hc, *url); err != nil {
		fmt.Fprintf(os.Stderr, "sealed requests: %v\n", err)
		os.Exit(exitUnavailable)
	}
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	stop := time.Now().Add(*dur)
	begin := time.Now()
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for time.Now().Before(stop) {
				t := time.Now()
				if err := get(hc, *url); err != nil {
					bad++
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	out := append([]Measurement{{"rps", float64(len(lat)) / elapsed.Seconds()}}, latencyMeasurements(lat)...)
	out = append(out, Measurement{"errors", float64(errs)})
	return writeMeasurements(os.Stdout, *prefix, out)
}

func get(hc *http.Client, url string) error {
	resp, err := hc.Get(url)
	if err != nil {
		var pe *client.ProblemError
		if errors.As(err, &pe) {
			return pe
		}
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
