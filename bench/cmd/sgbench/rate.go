package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// cmdRate sends requests at a fixed rate (open loop) over keep-alive
// HTTP/1.1 connections and reports latency from each request's scheduled
// start, so a stalled proxy cannot hide its queue (no coordinated omission).
func cmdRate(args []string) error {
	fs := flag.NewFlagSet("rate", flag.ContinueOnError)
	url := fs.String("url", "", "target URL (http or https)")
	ca := fs.String("ca", "", "CA certificate (PEM) for https")
	rate := fs.Float64("rate", 1000, "requests per second")
	dur := fs.Duration("duration", 5*time.Second, "measured duration")
	warm := fs.Duration("warmup", time.Second, "unmeasured lead-in at the same rate")
	conns := fs.Int("conns", 64, "connections")
	prefix := fs.String("prefix", "", "prefix of each output line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *rate <= 0 || *conns <= 0 {
		return fmt.Errorf("-url, a positive -rate and -conns are required")
	}
	tr := h1Transport(nil, *conns)
	if *ca != "" {
		tc, err := clientTLS(*ca)
		if err != nil {
			return err
		}
		tr.TLSClientConfig = tc
	}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	total := int(*rate * (warm.Seconds() + dur.Seconds()))
	skip := int(*rate * warm.Seconds())
	interval := time.Duration(float64(time.Second) / *rate)

	type job struct {
		i   int
		due time.Time
	}
	jobs := make(chan job, total)
	lat := make([]time.Duration, 0, total-skip)
	var mu sync.Mutex
	errs := 0
	var wg sync.WaitGroup
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				resp, err := hc.Get(*url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				d := time.Since(j.due)
				if j.i < skip {
					continue
				}
				mu.Lock()
				if err != nil {
					errs++
				}
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	begin := time.Now()
	measuredFrom := begin.Add(time.Duration(skip) * interval)
	for i := range total {
		t := begin.Add(time.Duration(i) * interval)
		if w := time.Until(t); w > 0 {
			time.Sleep(w)
		}
		jobs <- job{i, t}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(measuredFrom)
	out := append([]Measurement{{"rps", float64(len(lat)) / elapsed.Seconds()}}, latencyMeasurements(lat)...)
	out = append(out, Measurement{"errors", float64(errs)})
	return writeMeasurements(os.Stdout, *prefix, out)
}
