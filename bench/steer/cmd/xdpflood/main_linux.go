//go:build linux

// Command xdpflood measures the sealgate XDP guard on a veth: it floods minimum-size UDP frames from
// one network namespace into the guarded interface of another and reads the guard's counters, in
// three phases of equal length, repeated for -rounds rounds: no guard (the interface's rx counter,
// for reference), guard passing (source not blocklisted) and guard dropping (source blocklisted).
// bench/steer/run.sh creates the namespaces and the veth pair:
//
//	xdpflood -tx-netns /run/netns/A -tx-if t0 -rx-netns /run/netns/B -rx-if r0 -bpffs DIR
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/bpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func main() {
	var c config
	var src, dst, jsonOut string
	flag.StringVar(&c.txNS, "tx-netns", "", "path of the sender's network namespace (e.g. /run/netns/NAME)")
	flag.StringVar(&c.rxNS, "rx-netns", "", "path of the guarded network namespace")
	flag.StringVar(&c.txIf, "tx-if", "", "sender's veth end (in -tx-netns)")
	flag.StringVar(&c.rxIf, "rx-if", "", "guarded veth end (in -rx-netns)")
	flag.StringVar(&src, "src", "192.0.2.2", "source address of the flood")
	flag.StringVar(&dst, "dst", "192.0.2.1", "destination address of the flood (UDP port 9, no socket)")
	flag.StringVar(&c.bpffs, "bpffs", "", "private bpffs mount point (mounted if absent)")
	flag.StringVar(&c.mode, "mode", bpf.ModeNative, "XDP mode: native, generic or auto")
	flag.DurationVar(&c.duration, "duration", 4*time.Second, "measured time per phase")
	flag.DurationVar(&c.warmup, "warmup", 500*time.Millisecond, "flood time before each measurement")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds of the three phases")
	flag.IntVar(&c.senders, "senders", runtime.NumCPU(), "sending goroutines (one packet socket each)")
	flag.StringVar(&jsonOut, "json", "", "write the figures to this file")
	flag.Parse()
	var err error
	if c.src, err = netip.ParseAddr(src); err == nil {
		c.dst, err = netip.ParseAddr(dst)
	}
	if err == nil && (!c.src.Is4() || !c.dst.Is4()) {
		err = errors.New("-src and -dst must be IPv4 addresses")
	}
	if err == nil && (c.rounds < 1 || c.senders < 1 || c.duration <= 0) {
		err = errors.New("-rounds, -senders and -duration must be positive")
	}
	if err == nil && (c.txNS == "" || c.rxNS == "" || c.txIf == "" || c.rxIf == "" || c.bpffs == "") {
		err = errors.New("-tx-netns, -rx-netns, -tx-if, -rx-if and -bpffs are required")
	}
	if err == nil {
		err = run(c, jsonOut)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xdpflood:", err)
		os.Exit(1)
	}
}

func run(c config, jsonOut string) (err error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)) // the bpf package adds component=guard
	txLink, err := linkIn(c.txNS, c.txIf)
	if err != nil {
		return err
	}
	rxH, rxLink, err := handleIn(c.rxNS, c.rxIf)
	if err != nil {
		return err
	}
	defer rxH.Close()
	frame := udpFrame(txLink.Attrs().HardwareAddr, rxLink.Attrs().HardwareAddr, c.src, c.dst, 40000, 9)
	fds := make([]int, c.senders)
	for i := range fds {
		if fds[i], err = openSender(c.txNS, txLink.Attrs().Index); err != nil {
			return err
		}
		defer unix.Close(fds[i])
	}

	rxPackets := func() (uint64, uint64, error) {
		l, err := rxH.LinkByName(c.rxIf)
		if err != nil {
			return 0, 0, fmt.Errorf("reading %s counters: %w", c.rxIf, err)
		}
		return l.Attrs().Statistics.RxPackets, 0, nil
	}
	opts := bpf.Options{BPFFS: c.bpffs, NetNS: c.rxNS, Logger: log}
	g, err := bpf.OpenGuard(opts)
	if err != nil {
		return fmt.Errorf("opening the guard: %w", err)
	}
	attached := false
	defer func() {
		if attached {
			if derr := g.Detach(c.rxIf); derr != nil && err == nil {
				err = fmt.Errorf("detaching the guard: %w", derr)
			}
		}
		_ = g.Close()
		if cerr := bpf.Cleanup(opts); cerr != nil && err == nil {
			err = fmt.Errorf("removing pinned guard state: %w", cerr)
		}
	}()
	counter := func(verdict, reason string) func() (uint64, uint64, error) {
		return func() (uint64, uint64, error) {
			cs, err := g.Stats()
			if err != nil {
				return 0, 0, fmt.Errorf("reading guard counters: %w", err)
			}
			var n, other uint64
			for _, gc := range cs {
				if gc.Interface != c.rxIf {
					continue
				}
				switch {
				case gc.Verdict == verdict && gc.Reason == reason:
					n += gc.Packets
				case gc.Verdict != verdict:
					other += gc.Packets
				}
			}
			return n, other, nil
		}
	}
	src := netip.PrefixFrom(c.src, 32)
	var att bpf.Attachment
	var results []result
	// Each round runs the three phases back to back, so every ratio compares phases a few seconds
	// apart: the machine's background load changes less between them than across the whole run.
	for round := 1; round <= c.rounds; round++ {
		if attached {
			if err := g.Detach(c.rxIf); err != nil {
				return fmt.Errorf("detaching the guard: %w", err)
			}
			attached = false
		}
		r, err := c.phase(fds, frame, phaseReference, "rx_packets of "+c.rxIf, rxPackets)
		if err != nil {
			return err
		}
		r.Round = round
		results = append(results, r)

		if att, err = g.Attach(c.rxIf, c.mode); err != nil {
			return fmt.Errorf("attaching the guard to %s (%s): %w", c.rxIf, c.mode, err)
		}
		attached = true
		if err := g.Unblock(src); err != nil && !errors.Is(err, bpf.ErrNotFound) {
			return fmt.Errorf("unblocking %s: %w", src, err)
		}
		if r, err = c.phase(fds, frame, phasePass, "pass/non_tcp", counter("pass", "non_tcp")); err != nil {
			return err
		}
		r.Round = round
		results = append(results, r)

		if err := g.Block(src, 0); err != nil {
			return fmt.Errorf("blocklisting %s: %w", src, err)
		}
		if r, err = c.phase(fds, frame, phaseDrop, "drop/blocklist", counter("drop", "blocklist")); err != nil {
			return err
		}
		r.Round = round
		results = append(results, r)
	}
	for _, r := range results {
		if r.CountedPPS == 0 {
			return fmt.Errorf("round %d, phase %q: no %s packet counted: the flood did not reach %s", r.Round, r.Phase, r.Counter, c.rxIf)
		}
	}
	fmt.Printf("guard attached to %s: mode %s, driver %s, program id %d\n", att.Interface, att.Mode, att.Driver, att.ProgramID)
	printTable(os.Stdout, c, bpfAttachment{Mode: att.Mode, Driver: att.Driver}, summarize(results))
	if jsonOut != "" {
		b, err := json.MarshalIndent(results, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
			return fmt.Errorf("writing -json: %w", err)
		}
	}
	return nil
}

// phase floods for warmup+duration and returns the rates measured over duration. read returns the
// phase's counter and the count of packets with the opposite verdict.
func (c config) phase(fds []int, frame []byte, name, counter string, read func() (uint64, uint64, error)) (result, error) {
	var stop atomic.Bool
	var sent, refused atomic.Uint64
	var wg sync.WaitGroup
	for _, fd := range fds {
		wg.Go(func() { flood(fd, frame, &stop, &sent, &refused) })
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	time.Sleep(c.warmup)
	n0, o0, err := read()
	if err != nil {
		return result{}, err
	}
	s0, r0, t0 := sent.Load(), refused.Load(), time.Now()
	time.Sleep(c.duration)
	n1, o1, err := read()
	if err != nil {
		return result{}, err
	}
	s1, r1, secs := sent.Load(), refused.Load(), time.Since(t0).Seconds()
	return result{
		Phase: name, Counter: counter, Seconds: secs,
		SentPPS: float64(s1-s0) / secs, CountedPPS: float64(n1-n0) / secs,
		Refused: r1 - r0, Other: o1 - o0,
	}, nil
}

func handleIn(nsPath, ifname string) (*netlink.Handle, netlink.Link, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, nil, fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	l, err := h.LinkByName(ifname)
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("interface %s in %s: %w", ifname, nsPath, err)
	}
	if len(l.Attrs().HardwareAddr) != 6 {
		h.Close()
		return nil, nil, fmt.Errorf("interface %s in %s has no Ethernet address", ifname, nsPath)
	}
	return h, l, nil
}

func linkIn(nsPath, ifname string) (netlink.Link, error) {
	h, l, err := handleIn(nsPath, ifname)
	if err != nil {
		return nil, err
	}
	h.Close()
	return l, nil
}
