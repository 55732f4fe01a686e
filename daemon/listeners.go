package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/sealgate/sealgate/daemon/config"
)

// boundListener is one [[listener]]'s sockets: the configured address and,
// when the listener steers IPv6 prefixes but listens on IPv4, an IPv6
// companion on [::1] (sk_lookup assigns IPv6 connections only to IPv6
// sockets). The engine serves both through one net.Listener.
type boundListener struct {
	addr  string
	ln    net.Listener // what the engine serves
	socks []sock
}

type sock struct {
	name string // fd-store / handover name: sg-<listener>[-v6]
	addr string
	ln   net.Listener
}

// needsV6Companion reports whether l steers IPv6 destinations from an IPv4
// listen address.
func needsV6Companion(l config.Listener) bool {
	ap, err := netip.ParseAddrPort(l.Listen)
	if err != nil || !ap.Addr().Is4() {
		return false
	}
	for _, s := range l.Steer {
		if p, err := netip.ParsePrefix(s.Prefix); err == nil && p.Addr().Is6() && !p.Addr().Is4In6() {
			return true
		}
	}
	return false
}

// bindListeners makes the bound sockets match cfg: new listeners are opened
// (or taken over from a predecessor) and served, removed or moved ones are
// drained.
func (d *Daemon) bindListeners(cfg *config.Config) error {
	want := make(map[string]config.Listener)
	for _, l := range cfg.Listeners {
		want[l.Name] = l
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, bl := range d.listeners {
		if l, ok := want[name]; !ok || l.Listen != bl.addr || needsV6Companion(l) != (len(bl.socks) > 1) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			d.engine.StopListener(ctx, name)
			cancel()
			delete(d.listeners, name)
			for _, s := range bl.socks {
				d.forgetListener(s.name)
			}
			d.ebpfUnregister(name)
		}
	}
	for _, l := range cfg.Listeners {
		if _, ok := d.listeners[l.Name]; ok {
			continue
		}
		bl, err := d.openSocks(l)
		if err != nil {
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
		if err := d.engine.Serve(l.Name, bl.ln); err != nil {
			bl.ln.Close()
			return err
		}
		d.listeners[l.Name] = bl
		for _, s := range bl.socks {
			d.rememberListener(s.name, s.addr, s.ln)
		}
	}
	for _, l := range cfg.Listeners {
		for _, s := range d.listeners[l.Name].socks {
			d.ebpfRegister(l.Name, s.ln)
		}
	}
	return nil
}

func (d *Daemon) openSocks(l config.Listener) (*boundListener, error) {
	main, err := d.openListener("sg-"+l.Name, l.Listen)
	if err != nil {
		return nil, err
	}
	bl := &boundListener{addr: l.Listen, ln: main, socks: []sock{{"sg-" + l.Name, l.Listen, main}}}
	if !needsV6Companion(l) {
		return bl, nil
	}
	ap := netip.MustParseAddrPort(l.Listen)
	v6addr := net.JoinHostPort("::1", strconv.Itoa(int(ap.Port())))
	v6, err := d.openListener("sg-"+l.Name+"-v6", v6addr)
	if err != nil && ap.Port() != 0 {
		v6addr = "[::1]:0"
		v6, err = d.openListener("sg-"+l.Name+"-v6", v6addr)
	}
	if err != nil {
		d.log.Warn("no IPv6 socket for steered IPv6 traffic; those connections will be refused", "listener", l.Name, "err", err)
		return bl, nil
	}
	bl.socks = append(bl.socks, sock{"sg-" + l.Name + "-v6", v6addr, v6})
	bl.ln = newMultiListener(main, v6)
	return bl, nil
}

// multiListener accepts from several listeners as one.
type multiListener struct {
	lns   []net.Listener
	conns chan acceptResult
	done  chan struct{}
	once  sync.Once
}

type acceptResult struct {
	c   net.Conn
	err error
}

func newMultiListener(lns ...net.Listener) *multiListener {
	m := &multiListener{lns: lns, conns: make(chan acceptResult), done: make(chan struct{})}
	for _, ln := range lns {
		go func() {
			for {
				c, err := ln.Accept()
				select {
				case m.conns <- acceptResult{c, err}:
				case <-m.done:
					if c != nil {
						c.Close()
					}
					return
				}
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue
					}
					return
				}
			}
		}()
	}
	return m
}

func (m *multiListener) Accept() (net.Conn, error) {
	select {
	case r := <-m.conns:
		return r.c, r.err
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *multiListener) Close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		for _, ln := range m.lns {
			err = errors.Join(err, ln.Close())
		}
	})
	return err
}

func (m *multiListener) Addr() net.Addr { return m.lns[0].Addr() }
