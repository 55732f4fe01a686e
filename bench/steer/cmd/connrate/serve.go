package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sealgate/sealgate/bpf"
)

// Protocol: the client sends one request line, the server answers one line and closes. statsRequest
// instead returns the steering counters as JSON, so load can check that the steered path steered.
const (
	request      = "PING\n"
	response     = "PONG\n"
	statsRequest = "STATS\n"
	dest         = "connrate"
)

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "192.0.2.1:8080", "address of the listener (the engine's own address)")
	steer := fs.String("steer", "192.0.2.1:443", "address:port steered into the listener with sk_lookup")
	bpffs := fs.String("bpffs", "", "private bpffs mount point (mounted if absent)")
	_ = fs.Parse(args)
	if *bpffs == "" {
		return errors.New("-bpffs is required (a private directory, not /sys/fs/bpf)")
	}
	steerAP, err := netip.ParseAddrPort(*steer)
	if err != nil {
		return fmt.Errorf("-steer: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)) // the bpf package adds component=steering

	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // MPTCP sockets cannot enter a SOCKMAP
	ln, err := lc.Listen(context.Background(), "tcp4", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	defer ln.Close()

	opts := bpf.Options{BPFFS: *bpffs, Logger: log}
	s, err := bpf.OpenSteering(opts)
	if err != nil {
		return fmt.Errorf("opening steering: %w", err)
	}
	defer func() {
		_ = s.Close()
		if err := bpf.Cleanup(opts); err != nil {
			log.Warn("removing pinned steering state", "err", err)
		}
	}()
	binding := bpf.Binding{Prefix: netip.PrefixFrom(steerAP.Addr(), steerAP.Addr().BitLen()), Port: steerAP.Port(), Dest: dest}
	if err := s.SetBindings([]bpf.Binding{binding}); err != nil {
		return fmt.Errorf("setting bindings: %w", err)
	}
	if err := s.RegisterSocket(dest, ln.(*net.TCPListener)); err != nil {
		return fmt.Errorf("registering the listener: %w", err)
	}

	go acceptLoop(ln, s, log)
	fmt.Printf("ready listen=%s steer=%s\n", ln.Addr(), steerAP)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

func acceptLoop(ln net.Listener, s *bpf.Steering, log *slog.Logger) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: back off instead of spinning
			continue
		}
		go handle(c, s)
	}
}

func handle(c net.Conn, s *bpf.Steering) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	if err != nil {
		return
	}
	switch line {
	case request:
		if _, err := c.Write([]byte(response)); err != nil {
			return
		}
		// Wait for the client to close (it resets the connection), so the server keeps no TIME_WAIT.
		var b [1]byte
		_, _ = c.Read(b[:])
	case statsRequest:
		st, err := s.Stats()
		if err != nil {
			_, _ = fmt.Fprintf(c, "{\"error\":%q}\n", err.Error())
			return
		}
		_ = json.NewEncoder(c).Encode(st)
	}
}
