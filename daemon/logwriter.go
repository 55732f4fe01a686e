package daemon

import (
	"io"
	"sync"
	"time"
)

// logPendingMax bounds the lines waiting for the output: past it, a line
// waits for room (nothing is dropped), as a blocking write would.
const logPendingMax = 1 << 20

// The writer lets lines gather for logGather before it writes, unless
// logBatch bytes are already pending: lines reach the output within about
// a millisecond, and a busy engine writes a few dozen of them per write.
const (
	logBatch  = 32 << 10
	logGather = time.Millisecond
)

// logWriter is the output the log and the access log share. A line is
// copied to a pending buffer, and one goroutine writes what is pending:
// requests wait for a copy, not for the output (a file on a disk being
// written back, a pipe to journald), and the lines gathered over a
// millisecond go out in one write(2), where a write per line cost a system
// call (and, to a file, a journalled inode update) per request. Envoy
// writes its access logs from a flush thread for the same reasons. Each
// line is whole in the output, never mixed with another.
//
// The cost: lines still pending when the process dies abruptly are lost,
// about the last millisecond's. Close writes everything first.
type logWriter struct {
	w io.Writer

	mu      sync.Mutex
	room    sync.Cond // signalled when the writer takes the pending lines
	pending []byte
	spare   []byte // the buffer the writer last wrote, to swap in
	started bool
	closed  bool
	wake    chan struct{} // capacity 1: lines are pending
	done    chan struct{} // closed when the writer has stopped
}

func newLogWriter(w io.Writer) *logWriter {
	l := &logWriter{w: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
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
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // already woken; it takes these lines too
	}
	return len(p), nil
}

// run writes what is pending until Close.
func (l *logWriter) run() {
	defer close(l.done)
	for range l.wake {
		// Let lines gather for a moment: one write for many.
		l.mu.Lock()
		short := len(l.pending) < logBatch && !l.closed
		l.mu.Unlock()
		if short {
			time.Sleep(logGather)
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
	select {
	case l.wake <- struct{}{}:
	default:
	}
	<-l.done
	return nil
}
