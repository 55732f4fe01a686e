// Command sgprofile serves the sealgate engine (package appliance) the way
// the daemon builds it — one TLS listener, one route to an upstream, real
// Prometheus metrics, optional JSON access log — and writes CPU and
// allocation profiles of the load it sees, for bench/run.sh profile.
//
//	sgprofile -listen 127.0.0.1:18446 -upstream http://127.0.0.1:18080 \
//	    -cert cert.pem -key key.pem -duration 10s -cpuprofile cpu.pprof -allocprofile allocs.pprof
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/sealgate/sealgate/appliance"
	"github.com/sealgate/sealgate/appliance/metrics"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "sgprofile: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:18446", "TLS listen address")
	upstream := flag.String("upstream", "http://127.0.0.1:18080", "upstream URL")
	cert := flag.String("cert", "cert.pem", "certificate (PEM)")
	key := flag.String("key", "key.pem", "key (PEM)")
	accessLog := flag.Bool("access-log", false, "write the JSON access log (to /dev/null)")
	wait := flag.Duration("wait", 0, "serve this long before profiling starts")
	dur := flag.Duration("duration", 10*time.Second, "profile this long, then serve on until SIGTERM")
	cpuOut := flag.String("cpuprofile", "", "CPU profile output")
	allocOut := flag.String("allocprofile", "", "allocation profile output")
	heapOut := flag.String("heapprofile", "", "in-use heap profile output, written at the end of -duration with the stack and heap sizes on stderr")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var access *slog.Logger
	if *accessLog {
		access = appliance.NewAccessLogger(io.Discard, nil) // as the daemon writes it
	}
	e := appliance.New(appliance.Options{Logger: logger, AccessLog: access, Metrics: metrics.New()})
	spec := appliance.Spec{
		Listeners: []appliance.ListenerSpec{{Name: "bench", TLS: appliance.TLSSpec{
			Certs:      []appliance.CertFiles{{Cert: *cert, Key: *key}},
			MinVersion: tls.VersionTLS13,
		}}},
		Routes:    []appliance.RouteSpec{{Name: "bench", Listener: "bench", Match: "/", Upstream: *upstream, Seal: appliance.SealOptional}},
		AccessLog: *accessLog,
	}
	if err := e.Apply(spec); err != nil {
		return fmt.Errorf("applying the spec: %w", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if err := e.Serve("bench", ln); err != nil {
		return err
	}
	defer e.Shutdown(context.Background())
	fmt.Fprintf(os.Stderr, "sgprofile: serving %s (GOMAXPROCS=%d)\n", *listen, runtime.GOMAXPROCS(0))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	select {
	case <-time.After(*wait):
	case <-sig:
		return nil
	}
	if *cpuOut != "" {
		f, err := os.Create(*cpuOut)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
	}
	stopped := false
	select {
	case <-time.After(*dur):
	case <-sig:
		stopped = true
	}
	pprof.StopCPUProfile()
	if *allocOut != "" {
		f, err := os.Create(*allocOut)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
	}
	if *heapOut != "" {
		if err := writeHeap(*heapOut); err != nil {
			return err
		}
	}
	if !stopped {
		<-sig
	}
	return nil
}

// writeHeap writes the in-use heap profile and reports where the process's
// memory is: goroutine stacks, heap objects, and the goroutine count.
func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(os.Stderr, "sgprofile: goroutines %d, stacks in use %d KiB, heap in use %d KiB, heap objects %d, GC cycles %d\n",
		runtime.NumGoroutine(), ms.StackInuse>>10, ms.HeapInuse>>10, ms.HeapObjects, ms.NumGC)
	return nil
}
