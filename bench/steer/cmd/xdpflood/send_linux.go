//go:build linux

package main

import (
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// packetQdiscBypass is PACKET_QDISC_BYPASS (linux/if_packet.h): hand frames to the driver directly.
const packetQdiscBypass = 20

// openSender opens an AF_PACKET socket bound to ifindex inside the network namespace at nsPath. The
// socket stays in that namespace after the thread that created it is gone.
func openSender(nsPath string, ifindex int) (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// This thread enters the namespace and is never returned: the runtime discards a thread
		// whose goroutine ends while locked.
		runtime.LockOSThread()
		ns, err := os.Open(nsPath)
		if err != nil {
			ch <- result{-1, fmt.Errorf("opening %s: %w", nsPath, err)}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{-1, fmt.Errorf("entering %s: %w", nsPath, err)}
			return
		}
		// Protocol 0: send only, so the socket receives nothing and costs nothing on receive.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			ch <- result{-1, fmt.Errorf("packet socket: %w", err)}
			return
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
			unix.Close(fd)
			ch <- result{-1, fmt.Errorf("binding the packet socket to ifindex %d: %w", ifindex, err)}
			return
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, packetQdiscBypass, 1)
		ch <- result{fd, nil}
	}()
	r := <-ch
	return r.fd, r.err
}

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// flood sends frame on fd in batches with sendmmsg until stop is set, adding each sent frame to sent
// and each refused batch (ENOBUFS and the like: the device queue is full) to refused.
func flood(fd int, frame []byte, stop *atomic.Bool, sent, refused *atomic.Uint64) {
	const batch = 64
	iov := unix.Iovec{Base: &frame[0]}
	iov.SetLen(len(frame))
	msgs := make([]mmsghdr, batch)
	for i := range msgs {
		msgs[i].hdr.Iov = &iov
		msgs[i].hdr.SetIovlen(1)
	}
	for !stop.Load() {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), batch, 0, 0, 0)
		if errno != 0 {
			refused.Add(1)
			runtime.Gosched()
			continue
		}
		sent.Add(uint64(n))
	}
	runtime.KeepAlive(frame)
	runtime.KeepAlive(&iov)
}
