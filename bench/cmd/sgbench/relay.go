package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/valyala/fasthttp"
)

// cmdRelay serves a reference point for the floor comparison (bench/run.sh
// floor): how much a Go process spends per request before any of the
// engine's work.
//
//   - bytes: TLS termination, then the client's bytes to one upstream
//     connection and the upstream's bytes back, copied as they come: no
//     HTTP at all (an L4 relay, like nginx's stream module).
//   - fasthttp: fasthttp's server and HostClient with their defaults, the
//     request forwarded as parsed and nothing else (no header edits, routes,
//     ids, metrics or limits).
//
// Neither is a proxy anyone should run: they bound from above what the
// engine could reach on the same runtime and libraries.
func cmdRelay(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:18460", "address to serve TLS on")
	upstream := fs.String("upstream", "127.0.0.1:18080", "plain-HTTP upstream host:port")
	certFile := fs.String("cert", "", "certificate (PEM)")
	keyFile := fs.String("key", "", "private key (PEM)")
	mode := fs.String("mode", "bytes", "bytes | fasthttp")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *mode != "bytes" && *mode != "fasthttp" {
		return fmt.Errorf("-mode %q: want bytes or fasthttp", *mode)
	}
	kp, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS13}
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", *listen)
	if err != nil {
		return err
	}
	if *mode == "bytes" {
		return relayBytes(tls.NewListener(ln, tc), *upstream)
	}
	return relayFasthttp(tls.NewListener(ln, tc), *upstream)
}

func relayBytes(ln net.Listener, upstream string) error {
	var d net.Dialer
	d.SetMultipathTCP(false)
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			u, err := d.Dial("tcp", upstream)
			if err != nil {
				return
			}
			defer u.Close()
			var wg sync.WaitGroup
			wg.Go(func() {
				io.Copy(c, u)
				c.Close()
			})
			io.Copy(u, c)
			u.Close()
			wg.Wait()
		}()
	}
}

func relayFasthttp(ln net.Listener, upstream string) error {
	hc := &fasthttp.HostClient{
		Addr:                     upstream,
		StreamResponseBody:       true,
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
	}
	s := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.Request.URI().SetScheme("http")
			if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.Error("bad gateway", fasthttp.StatusBadGateway)
			}
		},
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReduceMemoryUsage:     true,
	}
	err := s.Serve(ln)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
