package dlp

import "math/bits"

// scanRange looks for token starts in b[i:lim]; validators may read up to
// len(b). It returns where scanning stopped and whether it stopped because a
// verdict needs more data.
//
// It classifies eight bytes at a time without branches (candMask) and only
// stops at bytes that may start a match; what it does there is exactly what
// scanRangeScalar does at a token start.
func (s *scanner) scanRange(b []byte, i, lim int, final bool) (int, bool, error) {
	if s.scalarOnly {
		return s.scanRangeScalar(b, i, lim, final)
	}
	wend := min(lim, wideEnd(b))
	for i+8 <= lim {
		var m uint64
		if i+8 <= wend {
			if i, m = nextWide(b, i, wend); m == 0 {
				continue
			}
		} else if m = candMask(b, i); m == 0 {
			i += 8
			continue
		}
		block, blockEnd := i, i+8
		for m != 0 {
			p := block + bits.TrailingZeros64(m)
			m &= m - 1
			if p < i {
				continue // inside a match that ended past it
			}
			if !tokenCandidate(b, p) {
				continue
			}
			mt, st := s.tryAt(b, p, final)
			switch st {
			case stMore:
				return p, true, nil
			case stYes:
				if err := s.accept(mt); err != nil {
					return p, false, err
				}
				i = mt.end
				if s.cont.kind != contNone {
					return i, false, nil
				}
				if i >= blockEnd {
					m = 0
				}
			}
		}
		if i < blockEnd {
			i = blockEnd
		}
	}
	if i >= lim {
		return i, false, nil
	}
	return s.scanRangeScalar(b, i, lim, final)
}

// digitCandidate is the prefilter for a digit token starting with c whose
// first run of l digits ends at b[j] (b[j+3] exists): an SSN needs three
// digits and a dash, a card thirteen to nineteen digits or a group of four
// and a group of at least three.
func digitCandidate(en *[numKinds]bool, b []byte, c byte, l, j int) bool {
	nx := b[j]
	if en[KindSSN] && l == 3 && nx == '-' {
		return true
	}
	if !en[KindCard] || c < '2' || c > '6' {
		return false
	}
	return (l >= 13 && l <= 19) ||
		(l == 4 && (nx == ' ' || nx == '-') && isDigit(b[j+1]) && isDigit(b[j+2]) && isDigit(b[j+3]))
}

// tokenCandidate reports whether b[p] starts a token the scanner looks at:
// '-', '@' or '+' anywhere, or a digit, upper-case letter or e g x s r that
// does not continue a word.
func tokenCandidate(b []byte, p int) bool {
	a := act[b[p]]
	switch a {
	case aNone, aWord:
		return false
	case aDash, aAt, aPlus:
		return true
	}
	return p == 0 || cls[b[p-1]]&cWord == 0
}

// tryAt runs the prefilter and, when it passes, the validators for the token
// start b[p].
func (s *scanner) tryAt(b []byte, p int, final bool) (match, status) {
	if !prefilter(&s.cc.enabled, b, p) {
		return match{}, stNo
	}
	return s.trigger(b, p, final)
}

// prefilter reports whether the token start b[p] may begin a match of an
// enabled detector, from at most its first few bytes; bytes past len(b)
// count as "maybe".
func prefilter(en *[numKinds]bool, b []byte, p int) bool {
	n := len(b)
	c := b[p]
	cand := true
	switch act[c] {
	case aDigit:
		j := p + 1
		for j < n && isDigit(b[j]) {
			j++
		}
		if j+3 < n {
			cand = digitCandidate(en, b, c, j-p, j)
		}
	case aUpper:
		if p+3 < n {
			cand = (en[KindIBAN] && isUpper(b[p+1]) && isDigit(b[p+2]) && isDigit(b[p+3])) ||
				(en[KindSecret] && c == 'A' && (b[p+1] == 'K' || b[p+1] == 'S' || b[p+1] == 'I'))
		}
	case aLetter:
		if p+2 < n {
			c1, c2 := b[p+1], b[p+2]
			switch c {
			case 'e':
				cand = c1 == 'y' && c2 == 'J'
			case 'g':
				cand = c1 == 'h' || c1 == 'l' || c1 == 'i'
			case 'x':
				cand = c1 == 'o' && c2 == 'x'
			default: // s, r
				cand = c1 == 'k' && c2 == '_'
			}
			cand = cand && en[KindSecret]
		}
	case aDash:
		cand = en[KindSecret] && (p+1 >= n || b[p+1] == '-')
	case aAt:
		cand = en[KindEmail]
	case aPlus:
		cand = en[KindPhone]
	default:
		cand = false
	}
	return cand
}

// Classes for candMask, one bit each.
const (
	mWord   = 1 << iota // A-Z a-z 0-9 _
	mDigit              // 0-9
	mUpper              // A-Z
	mLetter             // e g x s r: first letters of token prefixes
	mSecond             // y h l i o k: their second letters
	mDash               // -
	mAtPlus             // @ +
)

var cls7 = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		var v uint8
		if cls[c]&cWord != 0 {
			v |= mWord
		}
		if isDigit(b) {
			v |= mDigit
		}
		if isUpper(b) {
			v |= mUpper
		}
		switch b {
		case 'e', 'g', 'x', 's', 'r':
			v |= mLetter
		case 'y', 'h', 'l', 'i', 'o', 'k':
			v |= mSecond
		case '-':
			v |= mDash
		case '@', '+':
			v |= mAtPlus
		}
		t[c] = v
	}
	return t
}()

// candMask returns a bit for each of b[i:i+8] that may start a match: a
// superset of tokenCandidate whose prefilters also fail, computed without
// branches on eight class bytes packed in a word. Facts about bytes past the
// block are taken as "maybe".
func candMask(b []byte, i int) uint64 {
	const ones = 0x0101010101010101
	w := b[i : i+8 : i+8]
	v := uint64(cls7[w[0]]) | uint64(cls7[w[1]])<<8 | uint64(cls7[w[2]])<<16 | uint64(cls7[w[3]])<<24 |
		uint64(cls7[w[4]])<<32 | uint64(cls7[w[5]])<<40 | uint64(cls7[w[6]])<<48 | uint64(cls7[w[7]])<<56
	var carry uint64
	if i > 0 {
		carry = uint64(cls7[b[i-1]] & mWord)
	}
	next1 := v>>8 | 0xff<<56      // byte k: classes of byte k+1
	next2 := v>>16 | 0xffff<<48   // byte k: classes of byte k+2
	next3 := v>>24 | 0xffffff<<40 // byte k: classes of byte k+3
	prevWord := (v<<8 | carry) & (ones * mWord)
	// Cards and SSNs start with three digits and a fourth or a dash; IBANs and AWS/Google keys
	// with two upper-case letters; token prefixes with a known letter pair;
	// PEM headers with two dashes.
	d := v & next1 & next2 & (next3 | next3>>4) & (ones * mDigit) // then a digit or a dash
	u := v & next1 & (ones * mUpper)
	l := v & (next1 >> 1) & (ones * mLetter)
	dash := v & next1 & (ones * mDash)
	all := (d|u|l)&^(prevWord*(mDigit|mUpper|mLetter)) | dash | v&(ones*mAtPlus)
	// A bit per non-zero byte (all bytes are below 0x80).
	nz := (all + ones*0x7f) & (ones * 0x80) >> 7
	return nz * 0x0102040810204080 >> 56
}

// scanRangeScalar is scanRange one byte at a time, words skipped whole. It
// scans the last bytes before lim, and tests use it as the reference.
func (s *scanner) scanRangeScalar(b []byte, i, lim int, final bool) (int, bool, error) {
	if i > 0 && isWord(b[i-1]) {
		i = skipWord(b, i) // inside a word: not a token start
	}
	for i < lim {
		a := act[b[i]]
		switch a {
		case aNone:
			i++
			continue
		case aWord:
			i = skipWord(b, i)
			continue
		}
		m, st := s.tryAt(b, i, final)
		switch st {
		case stMore:
			return i, true, nil
		case stYes:
			if err := s.accept(m); err != nil {
				return i, false, err
			}
			i = m.end
			if s.cont.kind != contNone {
				return i, false, nil
			}
			i = skipWord(b, i)
		default:
			if a == aDash || a == aAt || a == aPlus {
				i++
			} else {
				i = skipWord(b, i)
			}
		}
	}
	return i, false, nil
}

// skipWord returns the index of the first non-word byte at or after i,
// testing four bytes per branch.
func skipWord(b []byte, i int) int {
	for i+4 <= len(b) {
		w := b[i : i+4 : i+4]
		if cls[w[0]]&cls[w[1]]&cls[w[2]]&cls[w[3]]&cWord == 0 {
			break
		}
		i += 4
	}
	for i < len(b) && cls[b[i]]&cWord != 0 {
		i++
	}
	return i
}

// Actions of the scan loop per byte at a token start.
const (
	aNone   = iota // punctuation, space, control, non-ASCII
	aWord          // a letter that starts no pattern
	aDigit         // cards, SSNs
	aUpper         // IBANs, AWS and Google keys
	aLetter        // e g x s r: JWTs and token prefixes
	aDash          // PEM headers
	aAt            // e-mail addresses
	aPlus          // phone numbers
)

var act = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		switch {
		case isDigit(b):
			t[c] = aDigit
		case isUpper(b):
			t[c] = aUpper
		case b == 'e' || b == 'g' || b == 'x' || b == 's' || b == 'r':
			t[c] = aLetter
		case cls[c]&cWord != 0:
			t[c] = aWord
		case b == '-':
			t[c] = aDash
		case b == '@':
			t[c] = aAt
		case b == '+':
			t[c] = aPlus
		}
	}
	return t
}()

// trigger runs the validators for the token start b[i] in priority order; the
// first that does not answer stNo decides, so the verdict never depends on
// how much data a lower-priority validator has seen.
func (s *scanner) trigger(b []byte, i int, final bool) (match, status) {
	en := &s.cc.enabled
	c := b[i]
	switch {
	case isDigit(c):
		if i >= 2 && b[i-1] == '.' && isDigit(b[i-2]) {
			return match{}, stNo // the fraction of a decimal number
		}
		if en[KindSSN] {
			if m, st := matchSSN(b, i, final); st != stNo {
				return m, st
			}
		}
		if en[KindCard] {
			return matchCard(b, i, final, s.json)
		}
	case isUpper(c):
		if en[KindIBAN] {
			if m, st := matchIBAN(b, i, final); st != stNo {
				return m, st
			}
		}
		if c == 'A' && en[KindSecret] {
			return matchSecret(b, i, final)
		}
	case c == '@':
		if en[KindEmail] {
			lo := int(s.lastEnd - s.base)
			if lo < 0 {
				lo = 0
			}
			return matchEmail(b, i, lo, final)
		}
	case c == '+':
		if en[KindPhone] {
			return matchPhone(b, i, final)
		}
	case c == '-':
		if en[KindSecret] {
			return matchPEM(b, i, final)
		}
	default:
		if en[KindSecret] {
			return matchSecret(b, i, final)
		}
	}
	return match{}, stNo
}
