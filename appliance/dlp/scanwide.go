package dlp

import "encoding/binary"

// The wide pre-filter: where seventeen bytes from a block onwards are known,
// candidate positions are found from the features of the byte pairs that
// start in the block and in the next eight bytes, so nearly every block of
// ordinary JSON is passed over with a few words of arithmetic and no branch
// taken.

// Features of a byte pair (b[k], b[k+1]) for nextWide, one bit each.
const (
	pWord      = 1 << iota // b[k] is A-Z a-z 0-9 _
	pDigits                // two digits
	pDigitDash             // a digit and a dash
	pIssuer                // 2-6 (first digits of the card issuers) and a digit
	pUppers                // two upper-case letters
	pPrefix                // AK AS AI ey gh gl gi xo sk rk: the starts of the token prefixes
	pDashes                // "--"
	pAtPlus                // b[k] is '@' or '+'
)

// pairFeat holds the features of every byte pair, indexed by b[k] | b[k+1]<<8
// (64 KiB; the pairs of printable ASCII touch about 12 KiB of it).
var pairFeat [1 << 16]uint8

func init() {
	for x := range pairFeat {
		c0, c1 := byte(x), byte(x>>8)
		var f uint8
		if isWord(c0) {
			f |= pWord
		}
		if isDigit(c0) && isDigit(c1) {
			f |= pDigits
		}
		if isDigit(c0) && c1 == '-' {
			f |= pDigitDash
		}
		if c0 >= '2' && c0 <= '6' && isDigit(c1) {
			f |= pIssuer
		}
		if isUpper(c0) && isUpper(c1) {
			f |= pUppers
		}
		switch string([]byte{c0, c1}) {
		case "AK", "AS", "AI", "ey", "gh", "gl", "gi", "xo", "sk", "rk":
			f |= pPrefix
		case "--":
			f |= pDashes
		}
		if c0 == '@' || c0 == '+' {
			f |= pAtPlus
		}
		pairFeat[x] = f
	}
}

// pairWord packs the features of the eight pairs starting at w[0:8].
func pairWord(w *[9]byte) uint64 {
	le := binary.LittleEndian
	return uint64(pairFeat[le.Uint16(w[0:])]) | uint64(pairFeat[le.Uint16(w[1:])])<<8 |
		uint64(pairFeat[le.Uint16(w[2:])])<<16 | uint64(pairFeat[le.Uint16(w[3:])])<<24 |
		uint64(pairFeat[le.Uint16(w[4:])])<<32 | uint64(pairFeat[le.Uint16(w[5:])])<<40 |
		uint64(pairFeat[le.Uint16(w[6:])])<<48 | uint64(pairFeat[le.Uint16(w[7:])])<<56
}

// wideEnd returns the end of the region in which nextWide may replace
// candMask for b: blocks must be followed by nine more bytes, and must stop
// before a digit run that reaches the last three bytes of b, because tryAt
// hands such a run to the validators whatever its digits (they may need the
// bytes after it). A run longer than 24 digits is never a card or an SSN, so
// only that much is looked at.
func wideEnd(b []byte) int {
	n := len(b)
	e := n - 4
	for e >= 0 && e > n-4-24 && isDigit(b[e]) {
		e--
	}
	return min(e+1, n-9)
}

// nextWide returns the first block start q >= i with q+8 <= end that holds a
// candidate position, and a bit per such position (bit k for b[q+k]); with
// no such block it returns a q with q+8 > end and 0. The caller guarantees
// end <= wideEnd(b).
//
// The positions are a superset of those where tokenCandidate holds and
// tryAt's prefilter passes when the next seventeen bytes are known:
//   - at a token start, three digits and a dash (SSN), or a 2-6 followed by
//     three digits, any byte and three digits (a card: thirteen or more
//     digits, or a group of four and a group of three; only the digits at
//     +6 and +7 of the second three are tested);
//   - at a token start, two upper-case letters and two digits (IBAN), or
//     one of the letter pairs that begin a token prefix: AK AS AI ey gh gl
//     gi xo sk rk;
//   - anywhere, two dashes (PEM), '@' (e-mail) and '+' (phone).
func nextWide(b []byte, i, end int) (int, uint64) {
	const ones = 0x0101010101010101
	if i+8 > end {
		return i, 0
	}
	var pv uint64 // features of the pair at b[i-1]: whether it is a word byte
	if i > 0 && isWord(b[i-1]) {
		pv = pWord
	}
	p := b[i : end+9] // the blocks and the look-ahead of the last one
	v := pairWord((*[9]byte)(p))
	le := binary.LittleEndian
	for len(p) >= 17 {
		w := (*[9]byte)(p[8:17]) // pairWord(w), inlined by hand
		vn := uint64(pairFeat[le.Uint16(w[0:])]) | uint64(pairFeat[le.Uint16(w[1:])])<<8 |
			uint64(pairFeat[le.Uint16(w[2:])])<<16 | uint64(pairFeat[le.Uint16(w[3:])])<<24 |
			uint64(pairFeat[le.Uint16(w[4:])])<<32 | uint64(pairFeat[le.Uint16(w[5:])])<<40 |
			uint64(pairFeat[le.Uint16(w[6:])])<<48 | uint64(pairFeat[le.Uint16(w[7:])])<<56
		n2 := v>>16 | vn<<48 // byte k: features of the pair at k+2
		n6 := v>>48 | vn<<16
		dig := v & (n2>>1 | (v>>2)&n2&n6) & (ones * pDigits)                              // two digits, then a digit and a dash, or an issuer digit and digits at k+2, k+3, k+6, k+7
		iban := v & (n2 << 3) & (ones * pUppers)                                          // two capitals and two digits
		all := (dig | iban | v&(ones*pPrefix)) &^ (((v<<8 | pv) & (ones * pWord)) * 0xff) // at a token start
		all |= v & (ones * (pDashes | pAtPlus))
		if all != 0 {
			return end + 9 - len(p), compressMask(all)
		}
		pv = v >> 56
		v = vn
		p = p[8:]
	}
	return end + 9 - len(p), 0
}

// compressMask turns the non-zero bytes of m into the bits of a byte.
func compressMask(m uint64) uint64 {
	const ones = 0x0101010101010101
	nz := ((m&(ones*0x7f) + ones*0x7f) | m) & (ones * 0x80) >> 7
	return nz * 0x0102040810204080 >> 56
}
