package dlp

import (
	"errors"
	"math"
)

const (
	// scanBufSize is the scanner's working buffer: the unit in which bytes are
	// copied, scanned and released.
	scanBufSize = 32 << 10
	// ctxKeep is how many released bytes stay readable before the first
	// unreleased one, for left-context checks (token starts, decimal points,
	// over-long e-mail local parts).
	ctxKeep = 128
)

// sink receives the scanned (and possibly masked) body in order.
type sink interface {
	emit(p []byte) error
}

// reporter is told of every finding when it is decided; a non-nil error
// (the response is withheld) stops the scan.
type reporter interface {
	found(k Kind, sec secretType, off int64) error
}

// finding is a decided match awaiting release, in stream offsets. Findings of
// one list never overlap and are kept in order.
type finding struct {
	start, end, keep int64
	style            maskStyle
	open             bool // still growing (continuation or JSON value)
	mask             bool // action redact: mask on release
}

// scanner is the streaming detector. Bytes are copied into buf, scanned up to
// the first position whose verdict needs more data, and released up to that
// point (minus a trailing run that could still be an e-mail local part), with
// masks applied on the way out. Memory per stream is buf plus the findings
// not yet released, whatever the body size.
type scanner struct {
	cc   *compiled
	json bool
	out  sink
	rep  reporter

	buf          []byte
	base         int64 // stream offset of buf[0]
	rel, scan, n int   // released up to rel, scanned up to scan, filled up to n
	lastEnd      int64 // end of the last detector match: matches never overlap
	cont         continuation
	contMask     bool
	dets         []finding // detector findings to mask
	fields       []finding // JSON field values (all, for skipping; masked if mask)
	fsi          int       // first field span the detector scan has not passed
	jt           jsonTracker
	scalarOnly   bool // tests: use the byte-at-a-time loop
	err          error
	scratch      [512]byte
}

// reset prepares s for a new body. buf is reused when already allocated.
func (s *scanner) reset(cc *compiled, isJSON bool, out sink, rep reporter) {
	if s.buf == nil {
		s.buf = make([]byte, scanBufSize)
	}
	s.cc, s.json, s.out, s.rep = cc, isJSON, out, rep
	s.base, s.rel, s.scan, s.n = 0, 0, 0, 0
	s.lastEnd = 0
	s.cont = continuation{}
	s.contMask = false
	s.dets = s.dets[:0]
	s.fields = s.fields[:0]
	s.fsi = 0
	s.err = nil
	s.jt.reset(cc, isJSON && cc.enabled[KindField])
}

// write scans p. It never retains p.
func (s *scanner) write(p []byte) error {
	if s.err != nil {
		return s.err
	}
	for len(p) > 0 {
		if s.n == len(s.buf) {
			if err := s.compact(); err != nil {
				s.err = err
				return err
			}
		}
		k := copy(s.buf[s.n:], p)
		if s.jt.active {
			if err := s.jt.feed(s, s.buf[s.n:s.n+k], s.base+int64(s.n)); err != nil {
				s.err = err
				return err
			}
		}
		s.n += k
		p = p[k:]
		if err := s.process(false); err != nil {
			s.err = err
			return err
		}
	}
	return nil
}

// close scans and releases what is held: the body has ended.
func (s *scanner) close() error {
	if s.err != nil {
		return s.err
	}
	if s.jt.active {
		s.jt.end(s, s.base+int64(s.n))
	}
	if err := s.process(true); err != nil {
		s.err = err
		return err
	}
	return nil
}

// errHold reports a scan whose undecided tail outgrew the buffer. The
// validators' lookahead is bounded far below scanBufSize, so this is a bug
// guard: the response fails closed (502 or abort) instead of passing
// unscanned.
var errHold = errors.New("dlp: undecided bytes exceed the scan buffer")

// compact moves the unreleased bytes (and ctxKeep bytes of context) to the
// front of buf.
func (s *scanner) compact() error {
	from := s.rel - ctxKeep
	if from <= 0 {
		return errHold
	}
	copy(s.buf, s.buf[from:s.n])
	s.base += int64(from)
	s.rel -= from
	s.scan -= from
	s.n -= from
	return nil
}

func (s *scanner) process(final bool) error {
	b := s.buf[:s.n]
	i := s.scan
	for i < len(b) {
		if s.cont.kind != contNone {
			i = s.continueAt(b, i)
			if s.cont.kind != contNone {
				break
			}
			continue
		}
		lim := len(b)
		if s.fsi < len(s.fields) {
			f := &s.fields[s.fsi]
			fs := int(f.start - s.base)
			if fs <= i {
				if f.open {
					i = len(b)
					break
				}
				if fe := int(f.end - s.base); fe > i {
					i = fe
				}
				s.fsi++
				continue
			}
			lim = fs
		}
		var more bool
		var err error
		i, more, err = s.scanRange(b, i, lim, final)
		if err != nil {
			return err
		}
		if more {
			break
		}
	}
	if final && s.cont.kind != contNone {
		s.endContinuation(i)
	}
	s.scan = i
	to := i
	if final {
		to = len(b)
	} else if s.cont.kind == contNone {
		// Hold a trailing run that an '@' in the next bytes would make the
		// local part of an e-mail address.
		for to > s.rel && i-to < maxLocalPart && cls[b[to-1]]&cLocal != 0 {
			to--
		}
	}
	return s.release(to)
}

// accept records a decided match and reports it.
func (s *scanner) accept(m match) error {
	start := s.base + int64(m.start)
	s.lastEnd = s.base + int64(m.end)
	redact := s.cc.action[m.kind] == ActionRedact
	if redact {
		f := finding{start: start, end: s.lastEnd, keep: s.base + int64(m.keep), style: m.style, mask: true}
		if m.cont != contNone {
			f.open = true
			f.keep = math.MaxInt64
		}
		s.dets = append(s.dets, f)
	}
	if m.cont != contNone {
		s.cont = continuation{kind: m.cont}
		if m.cont == contJWT {
			s.cont.dots = 1
		}
		s.contMask = redact
	}
	return s.rep.found(m.kind, m.sec, start)
}

// continueAt extends the open secret over b[i:].
func (s *scanner) continueAt(b []byte, i int) int {
	for i < len(b) {
		took, done := s.cont.step(b[i])
		if took {
			i++
		}
		if done {
			s.endContinuation(i)
			return i
		}
	}
	s.lastEnd = s.base + int64(i)
	if s.contMask {
		s.dets[len(s.dets)-1].end = s.lastEnd
	}
	return i
}

func (s *scanner) endContinuation(i int) {
	s.lastEnd = s.base + int64(i)
	if s.contMask {
		f := &s.dets[len(s.dets)-1]
		f.end = s.lastEnd
		f.open = false
	}
	s.cont = continuation{}
	s.contMask = false
}

// release sends buf[rel:to] to the sink, masking what findings cover.
func (s *scanner) release(to int) error {
	if to <= s.rel {
		return nil
	}
	absTo := s.base + int64(to)
	pos := s.rel
	di, fi := 0, 0
	for {
		var f *finding
		for di < len(s.dets) && !s.dets[di].mask {
			di++
		}
		for fi < len(s.fields) && !s.fields[fi].mask {
			fi++
		}
		switch {
		case di < len(s.dets) && fi < len(s.fields):
			if s.dets[di].start <= s.fields[fi].start {
				f = &s.dets[di]
				di++
			} else {
				f = &s.fields[fi]
				fi++
			}
		case di < len(s.dets):
			f = &s.dets[di]
			di++
		case fi < len(s.fields):
			f = &s.fields[fi]
			fi++
		}
		if f == nil || f.start >= absTo {
			break
		}
		ms := int(f.start - s.base)
		if ms < pos {
			ms = pos
		}
		me := to
		if !f.open && f.end < absTo {
			me = int(f.end - s.base)
		}
		if ms >= me {
			continue
		}
		mk := me
		if f.keep < s.base+int64(me) {
			mk = int(f.keep - s.base)
		}
		if ms > pos {
			if err := s.out.emit(s.buf[pos:ms]); err != nil {
				return err
			}
		}
		if err := s.emitMasked(s.buf[ms:me], mk-ms, f.style); err != nil {
			return err
		}
		pos = me
	}
	if pos < to {
		if err := s.out.emit(s.buf[pos:to]); err != nil {
			return err
		}
	}
	s.rel = to
	s.dropReleased(absTo)
	return nil
}

// dropReleased forgets findings that lie wholly before abs.
func (s *scanner) dropReleased(abs int64) {
	k := 0
	for k < len(s.dets) && !s.dets[k].open && s.dets[k].end <= abs {
		k++
	}
	if k > 0 {
		s.dets = append(s.dets[:0], s.dets[k:]...)
	}
	k = 0
	for k < len(s.fields) && k < s.fsi && !s.fields[k].open && s.fields[k].end <= abs {
		k++
	}
	if k > 0 {
		s.fields = append(s.fields[:0], s.fields[k:]...)
		s.fsi -= k
	}
}

// emitMasked sends p with its first keepFrom bytes masked under style.
func (s *scanner) emitMasked(p []byte, keepFrom int, style maskStyle) error {
	for len(p) > 0 {
		n := copy(s.scratch[:], p)
		for x := 0; x < n && x < keepFrom; x++ {
			s.scratch[x] = maskByte(s.scratch[x], style)
		}
		if err := s.out.emit(s.scratch[:n]); err != nil {
			return err
		}
		p = p[n:]
		keepFrom -= n
	}
	return nil
}
