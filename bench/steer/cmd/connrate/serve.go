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
	"sync"
	"syscall"
	"time"

	"github.com/sealgate/sealgate/bpf"
)

// Protocol: the client sends one request line. request gets response, and the client then resets
// the connection. The control lines answer one JSON line: statsRequest the steering counters (so
// load can check that the steered path steered), detachRequest and attachRequest remove the
// sk_lookup program from the namespace and put it back (for the "no sk_lookup program" baseline).
const (
	request       = "PING\n"
	response      = "PONG\n"
	statsRequest  = "STATS\n"
	detachRequest = "DETACH\n"
	attachRequest = "ATTACH\n"
	dest          = "connrate"
)

// steerer holds the steering of the listener, which can be detached and attached again.
type steerer struct {
	mu      sync.Mutex
	opts    bpf.Options
	ln      *net.TCPListener
	binding bpf.Binding
	s       *bpf.Steering // nil while detached
}

// attach loads and attaches the sk_lookup program and steers the binding into the listener.
func (st *steerer) attach() (err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.s != nil {
		return nil
	}
	s, err := bpf.OpenSteering(st.opts)
	if err != nil {
		return fmt.Errorf("opening steering: %w", err)
	}
	defer func() {
		if err != nil {
			_ = s.Close()
			_ = bpf.Cleanup(st.opts)
		}
	}()
	if err := s.SetBindings([]bpf.Binding{st.binding}); err != nil {
		return fmt.Errorf("setting bindings: %w", err)
	}
	if err := s.RegisterSocket(dest, st.ln); err != nil {
		return fmt.Errorf("registering the listener: %w", err)
	}
	st.s = s
	return nil
}

// detach removes the program, its link and maps from the namespace.
func (st *steerer) detach() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.s == nil {
		return nil
	}
	_ = st.s.Close()
	st.s = nil
	if err := bpf.Cleanup(st.opts); err != nil {
		return fmt.Errorf("removing the steering program: %w", err)
	}
	return nil
}

// stats returns the steering counters; they restart from zero after detach and attach.
func (st *steerer) stats() (bpf.SteerStats, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.s == nil {
		return bpf.SteerStats{}, errors.New("steering is detached")
	}
	return st.s.Stats()
}

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

	st := &steerer{
		opts:    bpf.Options{BPFFS: *bpffs, Logger: log},
		ln:      ln.(*net.TCPListener),
		binding: bpf.Binding{Prefix: netip.PrefixFrom(steerAP.Addr(), steerAP.Addr().BitLen()), Port: steerAP.Port(), Dest: dest},
	}
	if err := st.attach(); err != nil {
		return err
	}
	defer func() {
		if err := st.detach(); err != nil {
			log.Warn("removing pinned steering state", "err", err)
		}
	}()

	go acceptLoop(ln, st, log)
	fmt.Printf("ready listen=%s steer=%s\n", ln.Addr(), steerAP)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

func acceptLoop(ln net.Listener, st *steerer, log *slog.Logger) {
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
		go handle(c, st)
	}
}

// controlReply is the answer to a control line.
type controlReply struct {
	Stats *bpf.SteerStats `json:"stats,omitempty"`
	Error string          `json:"error,omitempty"`
}

func handle(c net.Conn, st *steerer) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	if err != nil {
		return
	}
	var reply controlReply
	switch line {
	case request:
		if _, err := c.Write([]byte(response)); err != nil {
			return
		}
		// Wait for the client to close (it resets the connection), so the server keeps no TIME_WAIT.
		var b [1]byte
		_, _ = c.Read(b[:])
		return
	case statsRequest:
		s, err := st.stats()
		if err != nil {
			reply.Error = err.Error()
		} else {
			reply.Stats = &s
		}
	case detachRequest:
		if err := st.detach(); err != nil {
			reply.Error = err.Error()
		}
	case attachRequest:
		if err := st.attach(); err != nil {
			reply.Error = err.Error()
		}
	default:
		reply.Error = fmt.Sprintf("unknown request %q", line)
	}
	_ = json.NewEncoder(c).Encode(reply)
}
