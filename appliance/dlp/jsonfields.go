package dlp

import "encoding/binary"

// maxJSONDepth bounds the container stack of the JSON field tracker; deeper
// documents stop field tracking (pattern detectors keep running).
const maxJSONDepth = 256

type jsonState uint8

const (
	jValue    jsonState = iota // expecting a value
	jKeyOrEnd                  // in an object, expecting a key or '}'
	jColon                     // after a key
	jAfter                     // after a value
	jString                    // inside a string
	jEscape                    // after a backslash in a string
	jNumber                    // inside a number
	jLiteral                   // inside true, false or null
	jBroken                    // not JSON: tracking stopped
)

// jsonTracker follows the structure of a JSON (or NDJSON) body byte by byte
// and marks the values of configured keys as field spans. It needs no
// lookahead: a span opens at a value's first byte and closes at its last, so
// a value of any length is masked as it streams.
type jsonTracker struct {
	active    bool
	names     []string
	lens      uint64 // bit n-1 set: some name is n bytes long
	state     jsonState
	stack     [maxJSONDepth]byte // 'o' object, 'a' array
	depth     int
	isKey     bool
	key       [maxFieldName]byte
	keyLen    int
	keyBad    bool
	keyMatch  bool
	pending   bool // the next value belongs to a configured key
	flagDepth int  // > 0: every scalar at this depth or deeper is flagged
	strFlag   bool // the current string value is flagged
	spanOpen  bool
}

func (t *jsonTracker) reset(cc *compiled, active bool) {
	*t = jsonTracker{active: active}
	if cc != nil {
		t.names = cc.fields
		t.lens = cc.fieldLens
	}
}

func (t *jsonTracker) flagged() bool {
	return t.pending || (t.flagDepth > 0 && t.depth >= t.flagDepth)
}

// open starts a field span at off.
func (t *jsonTracker) open(s *scanner, off int64, style maskStyle) error {
	t.spanOpen = true
	mask := s.cc.action[KindField] == ActionRedact
	s.fields = append(s.fields, finding{start: off, end: off, keep: 1<<63 - 1, style: style, open: true, mask: mask})
	return s.rep.found(KindField, secNone, off)
}

// close ends the open field span before off.
func (t *jsonTracker) close(s *scanner, off int64) {
	if !t.spanOpen {
		return
	}
	t.spanOpen = false
	f := &s.fields[len(s.fields)-1]
	f.end = off
	f.open = false
}

// end is called at the end of the body.
func (t *jsonTracker) end(s *scanner, off int64) {
	t.close(s, off)
}

func (t *jsonTracker) push(c byte) bool {
	if t.depth == maxJSONDepth {
		return false
	}
	t.stack[t.depth] = c
	t.depth++
	return true
}

func (t *jsonTracker) pop(c byte) bool {
	if t.depth == 0 || t.stack[t.depth-1] != c {
		return false
	}
	t.depth--
	if t.flagDepth > 0 && t.depth < t.flagDepth {
		t.flagDepth = 0
	}
	return true
}

func (t *jsonTracker) afterValue() {
	t.state = jAfter
}

// stringEnd returns the index of the first '"' or '\\' in p at or after x,
// or len(p), testing eight bytes per step.
func stringEnd(p []byte, x int) int {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	for x+8 <= len(p) {
		v := binary.LittleEndian.Uint64(p[x:])
		q, bs := v^(ones*'"'), v^(ones*'\\')
		if ((q-ones)&^q|(bs-ones)&^bs)&high != 0 {
			break
		}
		x += 8
	}
	for x < len(p) && p[x] != '"' && p[x] != '\\' {
		x++
	}
	return x
}

func numberByte(c byte) bool {
	return isDigit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// addKey appends key bytes, lower-cased; a key longer than any field name
// cannot match.
func (t *jsonTracker) addKey(k []byte) {
	if t.keyBad || t.keyLen+len(k) > len(t.key) {
		t.keyBad = true
		return
	}
	for _, c := range k {
		if c >= 'A' && c <= 'Z' {
			c |= 0x20
		}
		t.key[t.keyLen] = c
		t.keyLen++
	}
}

func (t *jsonTracker) matchKey() bool {
	if t.keyBad || t.keyLen == 0 || t.lens&(1<<uint(t.keyLen-1)) == 0 {
		return false
	}
	k := t.key[:t.keyLen]
	for _, n := range t.names {
		if string(k) == n {
			return true
		}
	}
	return false
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// feed tracks p, whose first byte is at stream offset off.
func (t *jsonTracker) feed(s *scanner, p []byte, off int64) error {
	for x := 0; x < len(p); x++ {
		c := p[x]
	again:
		switch t.state {
		case jString:
			// Run to the next quote or backslash in one loop.
			start := x
			x = stringEnd(p, x)
			if x > start {
				if t.isKey {
					if t.keyLen == 0 && x < len(p) && p[x] == '"' && (x-start > 64 || t.lens&(1<<uint(x-start-1)) == 0) {
						t.keyBad = true // a whole key of a length no name has
					} else {
						t.addKey(p[start:x])
					}
				} else if t.strFlag && !t.spanOpen {
					if err := t.open(s, off+int64(start), styleAll); err != nil {
						return err
					}
				}
			}
			if x == len(p) {
				return nil
			}
			c = p[x]
			if c == '"' {
				if t.isKey {
					t.keyMatch = t.matchKey()
					t.state = jColon
				} else {
					t.close(s, off+int64(x))
					t.afterValue()
				}
				continue
			}
			// A backslash: the escape is content.
			t.state = jEscape
			if t.isKey {
				t.keyBad = true
			} else if t.strFlag && !t.spanOpen {
				if err := t.open(s, off+int64(x), styleAll); err != nil {
					return err
				}
			}
		case jEscape:
			// Any byte after '\' is content; \uXXXX digits are never quotes.
			t.state = jString
		case jNumber:
			for x < len(p) && numberByte(p[x]) {
				x++
			}
			if x == len(p) {
				return nil
			}
			c = p[x]
			t.close(s, off+int64(x))
			t.afterValue()
			goto again
		case jLiteral:
			if c >= 'a' && c <= 'z' {
				continue
			}
			t.afterValue()
			goto again
		case jValue:
			if isJSONSpace(c) {
				continue
			}
			flag := t.flagged()
			t.pending = false
			switch {
			case c == '"':
				t.state, t.isKey, t.strFlag = jString, false, flag
			case c == '{' || c == '[':
				kind := byte('a')
				if c == '{' {
					kind = 'o'
				}
				if !t.push(kind) {
					t.broken(s, off+int64(x))
					return nil
				}
				if flag && t.flagDepth == 0 {
					t.flagDepth = t.depth
				}
				if c == '{' {
					t.state = jKeyOrEnd
				}
			case c == ']':
				if !t.pop('a') {
					t.broken(s, off+int64(x))
					return nil
				}
				t.afterValue()
			case c == '-' || isDigit(c):
				t.state = jNumber
				if flag {
					if err := t.open(s, off+int64(x), styleNumber); err != nil {
						return err
					}
				}
			case c == 't' || c == 'f' || c == 'n':
				t.state = jLiteral
			default:
				t.broken(s, off+int64(x))
				return nil
			}
		case jKeyOrEnd:
			switch {
			case isJSONSpace(c):
			case c == '"':
				t.state, t.isKey, t.keyLen, t.keyBad = jString, true, 0, false
			case c == '}':
				if !t.pop('o') {
					t.broken(s, off+int64(x))
					return nil
				}
				t.afterValue()
			default:
				t.broken(s, off+int64(x))
				return nil
			}
		case jColon:
			switch {
			case isJSONSpace(c):
			case c == ':':
				t.state = jValue
				t.pending = t.keyMatch
			default:
				t.broken(s, off+int64(x))
				return nil
			}
		case jAfter:
			switch {
			case isJSONSpace(c):
			case c == ',' && t.depth > 0:
				if t.stack[t.depth-1] == 'o' {
					t.state = jKeyOrEnd
				} else {
					t.state = jValue
				}
			case c == '}':
				if !t.pop('o') {
					t.broken(s, off+int64(x))
					return nil
				}
			case c == ']':
				if !t.pop('a') {
					t.broken(s, off+int64(x))
					return nil
				}
			case t.depth == 0:
				// NDJSON or concatenated documents: the next value.
				t.state = jValue
				goto again
			default:
				t.broken(s, off+int64(x))
				return nil
			}
		case jBroken:
			return nil
		}
	}
	return nil
}

// broken stops tracking: the body is not JSON.
func (t *jsonTracker) broken(s *scanner, off int64) {
	t.close(s, off)
	t.state = jBroken
	t.active = false
}
