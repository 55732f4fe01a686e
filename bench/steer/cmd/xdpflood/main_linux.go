//go:build linux

// Command xdpflood measures the sealgate XDP guard on a veth: it floods minimum-size UDP frames from
// one network namespace into the guarded interface of another and reads the guard's counters, in
// three phases of equal length: no guard (the interface's rx counter, for reference), guard passing
// (source not blocklisted) and guard dropping (source blocklisted). bench/steer/run.sh creates the
// namespaces and the veth pair:
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

type config struct {
	txNS, rxNS, txIf, rxIf string
	src, dst               netip.Addr
	bpffs, mode            string
	duration, warmup       time.Duration
	senders                int
}

// result is one phase's figures.
type result struct {
	Phase      string  `json:"phase"`
	Counter    string  `json:"counter"`
	SentPPS    float64 `json:"sent_pps"`
	CountedPPS float64 `json:"counted_pps"`
	Refused    uint64  `json:"refused_batches"`
	Seconds    float64 `json:"seconds"`
	Other      uint64  `json:"other_verdict_packets"` // packets of the opposite verdict in the window
}

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
	var results []result
	r, err := c.phase(fds, frame, "no guard (reference)", "rx_packets of "+c.rxIf, rxPackets)
	if err != nil {
		return err
	}
	results = append(results, r)

	opts := bpf.Options{BPFFS: c.bpffs, NetNS: c.rxNS, Logger: log}
	g, err := bpf.OpenGuard(opts)
	if err != nil {
		return fmt.Errorf("opening the guard: %w", err)
	}
	defer func() {
		if derr := g.Detach(c.rxIf); derr != nil && err == nil {
			err = fmt.Errorf("detaching the guard: %w", derr)
		}
		_ = g.Close()
		if cerr := bpf.Cleanup(opts); cerr != nil && err == nil {
			err = fmt.Errorf("removing pinned guard state: %w", cerr)
		}
	}()
	att, err := g.Attach(c.rxIf, c.mode)
	if err != nil {
		return fmt.Errorf("attaching the guard to %s (%s): %w", c.rxIf, c.mode, err)
	}
	fmt.Printf("guard attached to %s: mode %s, driver %s, program id %d\n", att.Interface, att.Mode, att.Driver, att.ProgramID)
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
	r, err = c.phase(fds, frame, "guard, pass", "pass/non_tcp", counter("pass", "non_tcp"))
	if err != nil {
		return err
	}
	results = append(results, r)
	if err := g.Block(netip.PrefixFrom(c.src, 32), 0); err != nil {
		return fmt.Errorf("blocklisting %s: %w", c.src, err)
	}
	r, err = c.phase(fds, frame, "guard, drop (blocklisted source)", "drop/blocklist", counter("drop", "blocklist"))
	if err != nil {
		return err
	}
	results = append(results, r)

	for _, r := range results[1:] {
		if r.CountedPPS == 0 {
			return fmt.Errorf("phase %q: the guard counted no %s packet: the flood did not reach the guard", r.Phase, r.Counter)
		}
	}
	printTable(c, att, results)
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

func printTable(c config, att bpf.Attachment, rs []result) {
	fmt.Printf("\nFlood: %d-byte UDP frames %s → %s:9 (no socket), %d senders (AF_PACKET, sendmmsg, qdisc bypass), %v per phase after %v warm-up; guard mode %s on %s (driver %s).\n\n",
		frameLen, c.src, c.dst, c.senders, c.duration, c.warmup, att.Mode, c.rxIf, att.Driver)
	fmt.Println("| Phase | Counter | Counted pps | Sent pps (generator) | Counted/sent | Opposite-verdict packets | Refused send batches |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		ratio := 0.0
		if r.SentPPS > 0 {
			ratio = r.CountedPPS / r.SentPPS
		}
		fmt.Printf("| %s | %s | %.0f | %.0f | %.3f | %d | %d |\n", r.Phase, r.Counter, r.CountedPPS, r.SentPPS, ratio, r.Other, r.Refused)
	}
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

