package daemon

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatedWriter records each write; while gate is set, a write waits for it
// to close (an output that stalls, as a disk being written back does).
type gatedWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	gate   chan struct{}
	inside chan struct{} // told when a write starts waiting at the gate
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		select {
		case g.inside <- struct{}{}:
		default:
		}
		<-gate
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes++
	return g.buf.Write(p)
}

func (g *gatedWriter) lines() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Split(strings.TrimSuffix(g.buf.String(), "\n"), "\n")
}

// TestLogWriterLinesWholeAndBatched: lines written from many goroutines at
// once all come out, each whole; those that came while the output was
// busy go out together in one write; Close returns once all are out.
func TestLogWriterLinesWholeAndBatched(t *testing.T) {
	g := &gatedWriter{gate: make(chan struct{}), inside: make(chan struct{}, 1)}
	l := newLogWriter(g)
	l.Write([]byte("first\n"))
	<-g.inside // the writer holds the first line at the stalled output
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() { fmt.Fprintf(l, "line %03d %s\n", i, strings.Repeat("x", i)) })
	}
	wg.Wait() // none waited for the output
	g.mu.Lock()
	gate := g.gate
	g.gate = nil
	g.mu.Unlock()
	close(gate)
	l.Close()
	lines := g.lines()
	if len(lines) != 201 || lines[0] != "first" {
		t.Fatalf("%d lines out, want 201 starting with the first", len(lines))
	}
	seen := map[string]bool{}
	for _, ln := range lines[1:] {
		var i int
		fmt.Sscanf(ln, "line %03d", &i)
		if ln != fmt.Sprintf("line %03d %s", i, strings.Repeat("x", i)) || seen[ln] {
			t.Fatalf("a mixed, cut or repeated line: %q", ln)
		}
		seen[ln] = true
	}
	if g.writes > 3 {
		t.Fatalf("%d writes for lines that waited together, want them batched (at most 3)", g.writes)
	}
}

// TestLogWriterBackpressure: with the output stalled, lines are kept up to
// the bound; past it a writer waits (nothing is dropped) and goes on once
// the output moves.
func TestLogWriterBackpressure(t *testing.T) {
	g := &gatedWriter{gate: make(chan struct{}), inside: make(chan struct{}, 1)}
	gate := g.gate
	l := newLogWriter(g)
	l.Write([]byte("first\n"))
	<-g.inside
	line := []byte(strings.Repeat("y", 1023) + "\n")
	total := logPendingMax/len(line) + 100
	done := make(chan struct{})
	go func() {
		for range total {
			l.Write(line)
		}
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("every line was taken while the output was stalled: pending lines are unbounded")
	case <-time.After(200 * time.Millisecond):
	}
	g.mu.Lock()
	g.gate = nil
	g.mu.Unlock()
	close(gate)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer stayed blocked after the output moved")
	}
	l.Close()
	if n := len(g.lines()); n != total+1 {
		t.Fatalf("%d lines out, want %d: lines were lost", n, total+1)
	}
}

// TestLogWriterAfterClose: a line written after Close goes straight out,
// after everything written before.
func TestLogWriterAfterClose(t *testing.T) {
	g := &gatedWriter{}
	l := newLogWriter(g)
	for i := range 10 {
		fmt.Fprintf(l, "before %d\n", i)
	}
	l.Close()
	if n := len(g.lines()); n != 10 {
		t.Fatalf("Close returned with %d of 10 lines out", n)
	}
	l.Write([]byte("after\n"))
	lines := g.lines()
	if len(lines) != 11 || lines[10] != "after" {
		t.Fatalf("after Close: %q", lines)
	}
	// Closing twice, or a writer never used, is fine.
	l.Close()
	newLogWriter(g).Close()
}

// TestLogWriterLoneLineGoesOut: a single line, with nothing else coming
// and no Close, still reaches the output, after about logGather.
func TestLogWriterLoneLineGoesOut(t *testing.T) {
	g := &gatedWriter{}
	l := newLogWriter(g)
	defer l.Close()
	start := time.Now()
	l.Write([]byte("alone\n"))
	for {
		if lines := g.lines(); lines[0] == "alone" {
			break
		}
		if time.Since(start) > 10*logGather {
			t.Fatalf("a lone line was not written within %v", 10*logGather)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
