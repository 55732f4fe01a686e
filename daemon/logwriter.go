package daemon

import (
	"io"
	"sync"
	"time"
)

// logPendingMax bounds the lines waiting for the output: past it, a line
// waits for room (nothing is dropped), as a blocking write would.
const logPendingMax = 1 << 20

// The writer lets lines gather for up to logGather, or until logBatch
// bytes are pending, before it writes. The batches are this large because
// of Go's system monitor: a file write is an ordinary system call, and an
// ordinary system call made while the monitor sleeps (the engine's socket
// calls are raw and do not count) wakes it and sets it polling every 20 µs
// for a while. Writing every millisecond kept it polling: with access logs
// on, the engine spent 25–28 % more CPU per request than with them off
// (perf: runtime.sysmon and its nanosleeps); at these sizes it is 3–6 %
// (nginx's own logs cost it 4–6 %).
const (
	logBatch  = 256 << 10
	logGather = 100 * time.Millisecond
)

// logWriter is the output the log and the access log share. A line is
// copied to a pending buffer, and one goroutine writes what is pending:
// requests wait for a copy, not for the output (a file on a disk being
// written back, a pipe to journald), and the lines gathered over up to
// 100 ms go out in one write(2), where a write per line cost a system call
// (and, to a file, a journalled inode update) per request. Envoy writes its
// access logs from a flush thread, by default once a second, for the same
// reasons. Each line is whole in the output, never mixed with another.
//
// The cost: lines still pending when the process dies abruptly are lost,
// at most the last 100 ms's. Close writes everything first.
type logWriter struct {
	w io.Writer

	mu      sync.Mutex
	room    sync.Cond // signalled when the writer takes the pending lines
	pending []byte
	spare   []byte // the buffer the writer last wrote, to swap in
	started bool
	closed  bool
	wake    chan struct{} // capacity 1: lines are pending
	full    chan struct{} // capacity 1: a batch is pending, or Close; write now
	done    chan struct{} // closed when the writer has stopped
}

func newLogWriter(w io.Writer) *logWriter {
	l := &logWriter{w: w, wake: make(chan struct{}, 1), full: make(chan struct{}, 1), done: make(chan struct{})}
	l.room.L = &l.mu
	return l
}

// Write queues p, one or more whole lines, for the writer.
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	for len(l.pending) >= logPendingMax && !l.closed {
		l.room.Wait()
	}
	if l.closed {
		// After Close: straight out, after the writer's last lines.
		l.mu.Unlock()
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.w.Write(p)
	}
	if !l.started {
		l.started = true
		go l.run()
	}
	l.pending = append(l.pending, p...)
	full := len(l.pending) >= logBatch
	l.mu.Unlock()
	notify1(l.wake) // if already woken, it takes these lines too
	if full {
		notify1(l.full)
	}
	return len(p), nil
}

// run writes what is pending until Close.
func (l *logWriter) run() {
	defer close(l.done)
	gather := time.NewTimer(logGather)
	gather.Stop()
	for range l.wake {
		// Let lines gather: one write for many.
		l.mu.Lock()
		short := len(l.pending) < logBatch && !l.closed
		l.mu.Unlock()
		if short {
			gather.Reset(logGather)
			select {
			case <-l.full:
			case <-gather.C:
			}
			gather.Stop()
		}
		l.mu.Lock()
		b := l.pending
		l.pending, l.spare = l.spare[:0], nil
		closed := l.closed
		l.room.Broadcast()
		l.mu.Unlock()
		if len(b) > 0 {
			l.w.Write(b) // a failed write has no one to tell but this output
		}
		l.mu.Lock()
		if cap(b) <= 4*logPendingMax { // a burst's huge buffer is not kept
			l.spare = b[:0]
		}
		l.mu.Unlock()
		if closed {
			return
		}
	}
}

// Close writes the pending lines and returns when they are out; later
// lines are written as they come.
func (l *logWriter) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	started := l.started
	l.room.Broadcast()
	l.mu.Unlock()
	if !started {
		close(l.done)
		return nil
	}
	notify1(l.wake)
	notify1(l.full)
	<-l.done
	return nil
}

// notify1 sends on a channel of capacity 1 unless a signal already waits.
func notify1(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
