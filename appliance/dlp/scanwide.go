package dlp

// The wide pre-filter: where sixteen bytes from a block onwards are known,
// candidate positions are found from the block's own classes and those of the
// next eight bytes, so nearly every block of ordinary JSON is passed over
// with one word of arithmetic and no branch taken.

// Classes for wideMask, one bit each.
const (
	wWord   = 1 << iota // A-Z a-z 0-9 _
	wDigit              // 0-9
	wUpper              // A-Z
	wFirst              // e g x s r A: first letters of the token prefixes
	wSecond             // y h l i o k K S I: their second letters
	wDash               // -
	wAtPlus             // @ +
	wIssuer             // 2-6: first digits of the card issuers
)

var clsW = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		var v uint8
		if cls[c]&cWord != 0 {
			v |= wWord
		}
		if isDigit(b) {
			v |= wDigit
		}
		if isUpper(b) {
			v |= wUpper
		}
		switch b {
		case 'e', 'g', 'x', 's', 'r', 'A':
			v |= wFirst
		case 'y', 'h', 'l', 'i', 'o', 'k', 'K', 'S', 'I':
			v |= wSecond
		case '-':
			v |= wDash
		case '@', '+':
			v |= wAtPlus
		}
		if b >= '2' && b <= '6' {
			v |= wIssuer
		}
		t[c] = v
	}
	return t
}()

// classWord packs the classes of b[0:8], one byte each.
func classWord(b []byte) uint64 { return classWord8((*[8]byte)(b)) }

// classWord8 is classWord of an array, with no bounds checks.
func classWord8(w *[8]byte) uint64 {
	return uint64(clsW[w[0]]) | uint64(clsW[w[1]])<<8 | uint64(clsW[w[2]])<<16 | uint64(clsW[w[3]])<<24 |
		uint64(clsW[w[4]])<<32 | uint64(clsW[w[5]])<<40 | uint64(clsW[w[6]])<<48 | uint64(clsW[w[7]])<<56
}

// wideEnd returns the end of the region in which wideMask may replace
// candMask for b: blocks must be followed by eight more bytes, and must stop
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
	return min(e+1, n-8)
}

// nextWide returns the first block start q >= i with q+8 <= end whose
// wideMask is not zero, and that mask; with no such block it returns a q
// with q+8 > end and 0. The caller guarantees end <= wideEnd(b).
//
// The mask is a superset of the positions where tokenCandidate holds and
// tryAt's prefilter passes when the next sixteen bytes are known:
//   - a digit at a token start followed by two digits and a dash (SSN), or
//     a 2-6 followed by three digits and, three bytes later, a digit (a
//     card: thirteen or more digits, or a group of four and a group of three);
//   - at a token start, two upper-case letters and a digit (IBAN), or one
//     of the letter pairs that begin a token prefix (AK AS AI ey gh gl gi xo
//     sk rk, and a few more pairs of the same letters);
//   - two dashes (PEM), '@' (e-mail) and '+' (phone) anywhere.
func nextWide(b []byte, i, end int) (int, uint64) {
	const ones = 0x0101010101010101
	if i+8 > end {
		return i, 0
	}
	var pv uint64 // classes of b[q-1]
	if i > 0 {
		pv = uint64(clsW[b[i-1]])
	}
	p := b[i : end+8] // the blocks and the look-ahead of the last one
	v := classWord8((*[8]byte)(p))
	for len(p) >= 16 {
		vn := classWord8((*[8]byte)(p[8:16]))
		n1 := v>>8 | vn<<56 // byte k: classes of byte k+1
		n2 := v>>16 | vn<<48
		x := v & n1
		all := x&(ones*wDash) | v&(ones*wAtPlus) // "--", '@', '+'
		tok := x & (n2 << 1) & (ones * wUpper)   // IBAN, on wUpper
		d := x & n2                              // three digits, on wDigit
		n3 := v>>24 | vn<<40
		n7 := v>>56 | vn<<8
		d &= n3>>4 | (v>>6)&n3&n7                             // then a dash, or an issuer digit and digits at k+3 and k+7
		tok |= d&(ones*wDigit) | v&(n1>>1)&(ones*wFirst)      // and letter pairs, on wFirst
		all |= tok &^ (((v<<8 | pv) & (ones * wWord)) * 0xff) // at a token start
		if all != 0 {
			nz := ((all&(ones*0x7f) + ones*0x7f) | all) & (ones * 0x80) >> 7
			return end + 8 - len(p), nz * 0x0102040810204080 >> 56
		}
		pv = v >> 56
		v = vn
		p = p[8:]
	}
	return end + 8 - len(p), 0
}
