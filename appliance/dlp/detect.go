package dlp

import "bytes"

// status is a validator's verdict at one candidate position.
type status uint8

const (
	stNo   status = iota // not a match, decided
	stYes                // a match, decided
	stMore               // the candidate runs to the end of the data seen so far
)

// A validator's verdict depends only on the bytes from its candidate position
// up to a bounded distance (and on the original bytes just before it), never
// on where the stream was cut: when it would need a byte past len(b) before
// the end of the body, it answers stMore and is asked again with more data.

// match describes a decided match for the scanner.
type match struct {
	start, end int
	keep       int // index from which bytes stay visible (last four), or end
	kind       Kind
	sec        secretType
	style      maskStyle
	cont       contKind // continuation after end (secrets whose length is open)
}

// cardIssuerOK reports whether the PAN digits d (values 0-9) start with a known
// issuer prefix whose numbers have len(d) digits.
func cardIssuerOK(d []byte) bool {
	n := len(d)
	p := func(k int) int {
		v := 0
		for i := 0; i < k; i++ {
			v = v*10 + int(d[i])
		}
		return v
	}
	in := func(lo, hi int) bool { return n >= lo && n <= hi }
	p2, p3, p4, p6 := p(2), p(3), p(4), p(6)
	switch {
	case d[0] == 4: // Visa
		// 13-digit Visa numbers are no longer issued and collide with
		// EAN-13 product codes (German ones start with 40-44).
		return n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return n == 16
	case p2 == 34 || p2 == 37: // American Express
		return n == 15
	case p4 >= 2200 && p4 <= 2204: // Mir
		return in(16, 19)
	case p4 == 6011, p3 >= 644 && p3 <= 649, p2 == 65, p6 >= 622126 && p6 <= 622925: // Discover
		return in(16, 19)
	case p2 == 62: // UnionPay
		return in(16, 19)
	case p4 >= 3528 && p4 <= 3589: // JCB
		return in(16, 19)
	case p3 >= 300 && p3 <= 305, p4 == 3095, p2 == 36, p2 == 38, p2 == 39: // Diners Club
		return in(14, 19)
	case p4 == 5018 || p4 == 5020 || p4 == 5038 || p4 == 5893 || p4 == 6304 || p4 == 6759 || (p4 >= 6761 && p4 <= 6763): // Maestro
		return in(16, 19)
	}
	return false
}

// luhn reports whether the digits d (values 0-9) pass the Luhn check.
func luhn(d []byte) bool {
	sum := 0
	dbl := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i])
		if dbl {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		dbl = !dbl
	}
	return sum%10 == 0
}

// byteAt returns b[j] and whether it exists; past the end it is 0 and the
// caller decides between stMore and the end of the body.
func byteAt(b []byte, j int) (byte, bool) {
	if j < len(b) {
		return b[j], true
	}
	return 0, false
}

// numberEnds reports whether a digit run ending before b[j] ends a number:
// the next byte is not a word byte and not a decimal point followed by a
// digit. (A comma is a separator, as in CSV, not a decimal point.) It answers stMore when that cannot be known yet.
func numberEnds(b []byte, j int, final bool) status {
	c, ok := byteAt(b, j)
	if !ok {
		if final {
			return stYes
		}
		return stMore
	}
	if isWord(c) {
		return stNo
	}
	if c == '.' {
		c2, ok := byteAt(b, j+1)
		if !ok {
			if final {
				return stYes
			}
			return stMore
		}
		if isDigit(c2) {
			return stNo
		}
	}
	return stYes
}

// matchCard looks for a payment card number starting at the digit b[i]: 13
// to 19 digits, either contiguous or in groups (first group of four, then
// groups of three to six) separated by one space or one dash used
// consistently, Luhn-valid with a known issuer prefix and length.
func matchCard(b []byte, i int, final, jsonBody bool) (match, status) {
	var digits [20]byte
	type groupEnd struct{ pos, nd int }
	var ends [8]groupEnd
	ng, nd := 0, 0
	var sep byte
	j := i
	for {
		start := j
		for j < len(b) && isDigit(b[j]) {
			if nd < len(digits) {
				digits[nd] = b[j] - '0'
			}
			nd++
			j++
			if nd > 19 {
				break
			}
		}
		if nd > 19 {
			break
		}
		if j == len(b) && !final {
			return match{}, stMore
		}
		glen := j - start
		st := numberEnds(b, j, final)
		if st == stMore {
			return match{}, stMore
		}
		chain := (ng == 0 && glen == 4) || (ng > 0 && glen >= 3 && glen <= 6)
		if st == stYes && (ng == 0 || chain) {
			ends[ng] = groupEnd{j, nd}
			ng++
		} else {
			break
		}
		if !chain || ng == len(ends) {
			break
		}
		c, _ := byteAt(b, j)
		if (c != ' ' && c != '-') || (sep != 0 && c != sep) {
			break
		}
		c2, ok := byteAt(b, j+1)
		if !ok {
			if final {
				break
			}
			return match{}, stMore
		}
		if !isDigit(c2) {
			break
		}
		sep = c
		j++
	}
	for g := ng - 1; g >= 0; g-- {
		e := ends[g]
		if e.nd < 13 || e.nd > 19 {
			continue
		}
		d := digits[:e.nd]
		if !cardIssuerOK(d) || !luhn(d) {
			continue
		}
		if g > 0 && continuesGroups(b, i, sep) {
			// The middle of a longer grouped number (a USPS tracking
			// number "9400 1234 4255 6286 7958 1381 70"), not a card.
			return match{}, stNo
		}
		m := match{start: i, end: e.pos, kind: KindCard, style: styleDigits}
		// Keep the last four digits visible.
		k, seen := e.pos, 0
		for k > i && seen < 4 {
			k--
			if isDigit(b[k]) {
				seen++
			}
		}
		m.keep = k
		if jsonBody && g == 0 && bareNumberAt(b, i) {
			// A bare JSON number: masked digits become 9 so the document
			// stays valid (no leading zero, no '*').
			m.style = styleNumber
		}
		return m, stYes
	}
	return match{}, stNo
}

// continuesGroups reports whether b[i] follows sep and a group of three or
// more digits, so a grouped number starting at i would be the tail of a
// longer one.
func continuesGroups(b []byte, i int, sep byte) bool {
	if i < 2 || b[i-1] != sep {
		return false
	}
	n := 0
	for k := i - 2; k >= 0 && isDigit(b[k]) && n < 3; k-- {
		n++
	}
	return n >= 3
}

// bareNumberAt reports whether the digits at b[i] follow what precedes a
// JSON value (':', '[', ',' or the start of the body, white space allowed),
// so they are a number rather than part of a string. Inside a string such a
// guess can only turn '*' masking into '9' masking, which is still valid.
func bareNumberAt(b []byte, i int) bool {
	for k := i - 1; k >= 0 && k >= i-16; k-- {
		switch b[k] {
		case ' ', '\t', '\n', '\r':
			continue
		case ':', '[', ',':
			return true
		}
		return false
	}
	return i < 16
}

// matchSSN looks for a US social security number AAA-GG-SSSS at the digit
// b[i]. Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
// Undashed nine-digit numbers are not matched (too many ids look alike); list
// the field in json_fields instead.
func matchSSN(b []byte, i int, final bool) (match, status) {
	const pat = "ddd-dd-dddd"
	for k := 0; k < len(pat); k++ {
		c, ok := byteAt(b, i+k)
		if !ok {
			if final {
				return match{}, stNo
			}
			return match{}, stMore
		}
		if (pat[k] == 'd') != isDigit(c) || (pat[k] == '-' && c != '-') {
			return match{}, stNo
		}
	}
	end := i + len(pat)
	c, ok := byteAt(b, end)
	if !ok && !final {
		return match{}, stMore
	}
	if ok {
		if isWord(c) {
			return match{}, stNo
		}
		if c == '-' || c == '.' {
			c2, ok2 := byteAt(b, end+1)
			if !ok2 && !final {
				return match{}, stMore
			}
			if ok2 && isDigit(c2) {
				return match{}, stNo
			}
		}
	}
	if i > 0 && (b[i-1] == '-' || b[i-1] == '.') {
		return match{}, stNo
	}
	area := int(b[i]-'0')*100 + int(b[i+1]-'0')*10 + int(b[i+2]-'0')
	group := int(b[i+4]-'0')*10 + int(b[i+5]-'0')
	serial := int(b[i+7]-'0')*1000 + int(b[i+8]-'0')*100 + int(b[i+9]-'0')*10 + int(b[i+10]-'0')
	if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
		return match{}, stNo
	}
	return match{start: i, end: end, keep: end, kind: KindSSN, style: styleSep}, stYes
}

// matchIBAN looks for an IBAN at the upper-case letter b[i]: country code,
// two check digits, the country's length in upper-case letters and digits,
// either contiguous or in groups of four separated by single spaces, with a
// valid mod-97 checksum.
func matchIBAN(b []byte, i int, final bool) (match, status) {
	for k := 0; k < 4; k++ {
		c, ok := byteAt(b, i+k)
		if !ok {
			if final {
				return match{}, stNo
			}
			return match{}, stMore
		}
		if (k < 2 && !isUpper(c)) || (k >= 2 && !isDigit(c)) {
			return match{}, stNo
		}
	}
	n := int(ibanLengths[[2]byte{b[i], b[i+1]}])
	if n == 0 {
		return match{}, stNo
	}
	var chars [34]byte
	cnt, j := 0, i
	spaced := false
	for cnt < n {
		c, ok := byteAt(b, j)
		if !ok {
			if final {
				return match{}, stNo
			}
			return match{}, stMore
		}
		if cnt == 4 && c == ' ' {
			spaced = true
		}
		if spaced && cnt%4 == 0 && cnt > 0 {
			if c != ' ' {
				return match{}, stNo
			}
			j++
			c, ok = byteAt(b, j)
			if !ok {
				if final {
					return match{}, stNo
				}
				return match{}, stMore
			}
		}
		if !isUpper(c) && !isDigit(c) {
			return match{}, stNo
		}
		chars[cnt] = c
		cnt++
		j++
	}
	c, ok := byteAt(b, j)
	if !ok && !final {
		return match{}, stMore
	}
	if ok && isWord(c) {
		return match{}, stNo
	}
	// mod 97 of BBAN + country + check digits, letters as 10..35.
	rem := 0
	for k := 0; k < n; k++ {
		c := chars[(k+4)%n]
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	if rem != 1 {
		return match{}, stNo
	}
	keep, seen := j, 0
	for keep > i && seen < 4 {
		keep--
		if b[keep] != ' ' {
			seen++
		}
	}
	return match{start: i, end: j, keep: keep, kind: KindIBAN, style: styleSep}, stYes
}

const (
	maxLocalPart = 64
	maxDomain    = 253
)

// matchEmail looks for an e-mail address around the '@' at b[at]. The local
// part is read backwards, not before lo: up to 64 bytes of A-Z a-z 0-9 . _ %
// + -, not starting or ending with a dot. The domain needs two or more
// labels and an alphabetic top-level label of 2 to 24 letters that is not a
// file extension (logo@2x.png).
func matchEmail(b []byte, at, lo int, final bool) (match, status) {
	j := at
	for j > lo && cls[b[j-1]]&cLocal != 0 {
		j--
		if at-j > maxLocalPart {
			return match{}, stNo
		}
	}
	for j < at && (b[j] == '.' || b[j] == '-' || b[j] == '+' || b[j] == '%') {
		j++
	}
	if j == at || b[at-1] == '.' {
		return match{}, stNo
	}
	for k := j; k < at-1; k++ {
		if b[k] == '.' && b[k+1] == '.' {
			return match{}, stNo
		}
	}
	k := at + 1
	labels, last := 0, 0
	for {
		ls := k
		for k < len(b) && cls[b[k]]&cLabel != 0 && k-ls <= 63 {
			k++
		}
		if k == len(b) && !final {
			return match{}, stMore
		}
		if k == ls || k-ls > 63 || b[ls] == '-' || b[k-1] == '-' || k-at-1 > maxDomain {
			if labels >= 2 && k == ls {
				// "a@b.com." : the dot ends the sentence, not the domain.
				k = ls - 1
				break
			}
			return match{}, stNo
		}
		labels++
		last = ls
		c, ok := byteAt(b, k)
		if ok && c == '.' {
			c2, ok2 := byteAt(b, k+1)
			if !ok2 && !final {
				return match{}, stMore
			}
			if ok2 && cls[c2]&cLabel != 0 {
				k++
				continue
			}
		}
		break
	}
	if labels < 2 {
		return match{}, stNo
	}
	tld := b[last:k]
	if len(tld) < 2 || len(tld) > 24 {
		return match{}, stNo
	}
	var low [24]byte
	for x, c := range tld {
		if !isAlpha(c) {
			return match{}, stNo
		}
		low[x] = c | 0x20
	}
	if fileExtTLDs[string(low[:len(tld)])] {
		return match{}, stNo
	}
	return match{start: j, end: k, keep: k, kind: KindEmail, style: styleEmail}, stYes
}

// matchPhone looks for an E.164 number at the '+' b[i]: 8 to 15 digits, the
// first not 0, optionally in groups separated by single spaces or dashes,
// starting with an assigned country calling code; +1 numbers follow the
// North American plan (NXX NXX XXXX).
func matchPhone(b []byte, i int, final bool) (match, status) {
	if i > 0 {
		if p := b[i-1]; isWord(p) || p == '+' || p == '.' {
			return match{}, stNo
		}
	}
	c, ok := byteAt(b, i+1)
	if !ok {
		if final {
			return match{}, stNo
		}
		return match{}, stMore
	}
	if c < '1' || c > '9' {
		return match{}, stNo
	}
	var digits [16]byte
	type groupEnd struct{ pos, nd int }
	var ends [8]groupEnd
	ng, nd := 0, 0
	j := i + 1
	for {
		for j < len(b) && isDigit(b[j]) && nd <= 15 {
			if nd < len(digits) {
				digits[nd] = b[j]
			}
			nd++
			j++
		}
		if nd > 15 {
			break
		}
		if j == len(b) && !final {
			return match{}, stMore
		}
		st := numberEnds(b, j, final)
		if st == stMore {
			return match{}, stMore
		}
		if st == stNo {
			break
		}
		ends[ng] = groupEnd{j, nd}
		ng++
		if ng == len(ends) {
			break
		}
		c, _ := byteAt(b, j)
		if c != ' ' && c != '-' {
			break
		}
		c2, ok := byteAt(b, j+1)
		if !ok {
			if final {
				break
			}
			return match{}, stMore
		}
		if !isDigit(c2) {
			break
		}
		j++
	}
	for g := ng - 1; g >= 0; g-- {
		e := ends[g]
		if e.nd < 8 || e.nd > 15 {
			continue
		}
		d := digits[:e.nd]
		if countryCodeLen(d) == 0 {
			continue
		}
		if d[0] == '1' && (e.nd != 11 || d[1] < '2' || d[4] < '2') {
			continue
		}
		if d[0] == '7' && e.nd != 11 {
			continue
		}
		return match{start: i, end: e.pos, keep: e.pos, kind: KindPhone, style: styleSep}, stYes
	}
	return match{}, stNo
}

// hasPrefixAt compares b[i:] with p; stMore when b ends inside a match so far.
func hasPrefixAt(b []byte, i int, p string, final bool) status {
	for k := 0; k < len(p); k++ {
		c, ok := byteAt(b, i+k)
		if !ok {
			if final {
				return stNo
			}
			return stMore
		}
		if c != p[k] {
			return stNo
		}
	}
	return stYes
}

// runOf counts bytes of class mask from b[j], up to max; more reports that
// the data ended before the run did.
func runOf(b []byte, j int, mask uint8, max int) (n int, more bool) {
	for n < max {
		if j+n >= len(b) {
			return n, true
		}
		if cls[b[j+n]]&mask == 0 {
			return n, false
		}
		n++
	}
	return n, false
}

// tokenRule is a secret recognised by a fixed prefix and a minimum number of
// following token bytes; the rest of the token is masked as a continuation.
type tokenRule struct {
	prefix string
	class  uint8 // allowed body bytes
	alnum  bool  // body is A-Z a-z 0-9 only
	min    int
	sec    secretType
	cont   contKind
}

var tokenRules = [...]tokenRule{
	{"ghp_", cWord, true, 36, secGitHub, contAlnum},
	{"gho_", cWord, true, 36, secGitHub, contAlnum},
	{"ghu_", cWord, true, 36, secGitHub, contAlnum},
	{"ghs_", cWord, true, 36, secGitHub, contAlnum},
	{"ghr_", cWord, true, 36, secGitHub, contAlnum},
	{"github_pat_", cWord, false, 22, secGitHub, contWord},
	{"glpat-", cB64u, false, 20, secGitLab, contB64u},
	{"xoxb-", cLabel, false, 10, secSlack, contLabel},
	{"xoxp-", cLabel, false, 10, secSlack, contLabel},
	{"xoxa-", cLabel, false, 10, secSlack, contLabel},
	{"xoxr-", cLabel, false, 10, secSlack, contLabel},
	{"xoxs-", cLabel, false, 10, secSlack, contLabel},
	{"sk_live_", cWord, true, 16, secStripe, contAlnum},
	{"rk_live_", cWord, true, 16, secStripe, contAlnum},
}

func alnumRun(b []byte, j, max int) (n int, more bool) {
	for n < max {
		if j+n >= len(b) {
			return n, true
		}
		c := b[j+n]
		if !isDigit(c) && !isAlpha(c) {
			return n, false
		}
		n++
	}
	return n, false
}

const maxJWTHeader = 1024

// matchSecret looks for a secret starting at the token start b[i].
func matchSecret(b []byte, i int, final bool) (match, status) {
	more := false
	switch b[i] {
	case 'A':
		for _, p := range [...]string{"AKIA", "ASIA"} {
			switch hasPrefixAt(b, i, p, final) {
			case stMore:
				more = true
			case stYes:
				n, m := runOf(b, i+4, cUpper|cDigit, 17)
				if m && !final {
					return match{}, stMore
				}
				if n == 16 {
					if c, ok := byteAt(b, i+20); !ok || !isWord(c) {
						return match{start: i, end: i + 20, keep: i + 20, kind: KindSecret, sec: secAWS, style: styleSecret}, stYes
					}
				}
			}
		}
		switch hasPrefixAt(b, i, "AIza", final) {
		case stMore:
			more = true
		case stYes:
			n, m := runOf(b, i+4, cB64u, 36)
			if m && !final {
				return match{}, stMore
			}
			if n == 35 {
				return match{start: i, end: i + 39, keep: i + 39, kind: KindSecret, sec: secGoogle, style: styleSecret}, stYes
			}
		}
	case 'e':
		return matchJWT(b, i, final)
	default:
		for k := range tokenRules {
			r := &tokenRules[k]
			if r.prefix[0] != b[i] {
				continue
			}
			switch hasPrefixAt(b, i, r.prefix, final) {
			case stMore:
				more = true
			case stYes:
				var n int
				var m bool
				if r.alnum {
					n, m = alnumRun(b, i+len(r.prefix), r.min)
				} else {
					n, m = runOf(b, i+len(r.prefix), r.class, r.min)
				}
				if n < r.min && m && !final {
					return match{}, stMore
				}
				if n == r.min {
					e := i + len(r.prefix) + n
					return match{start: i, end: e, keep: e, kind: KindSecret, sec: r.sec, style: styleSecret, cont: r.cont}, stYes
				}
			}
		}
	}
	if more {
		return match{}, stMore
	}
	return match{}, stNo
}

// matchJWT looks for a JWS compact serialisation at b[i]: "eyJ" + header,
// '.', "eyJ" + at least 7 payload bytes. The rest of the payload and the
// signature are masked as a continuation.
func matchJWT(b []byte, i int, final bool) (match, status) {
	if st := hasPrefixAt(b, i, "eyJ", final); st != stYes {
		return match{}, st
	}
	n, m := runOf(b, i, cB64u, maxJWTHeader+1)
	if m && !final {
		return match{}, stMore
	}
	if n < 10 || n > maxJWTHeader {
		return match{}, stNo
	}
	j := i + n
	c, ok := byteAt(b, j)
	if !ok || c != '.' {
		return match{}, stNo
	}
	if st := hasPrefixAt(b, j+1, "eyJ", final); st != stYes {
		return match{}, st
	}
	p, m := runOf(b, j+1, cB64u, 10)
	if p < 10 {
		if m && !final {
			return match{}, stMore
		}
		return match{}, stNo
	}
	e := j + 1 + p
	return match{start: i, end: e, keep: e, kind: KindSecret, sec: secJWT, style: styleSecret, cont: contJWT}, stYes
}

// matchPEM looks for a private-key PEM header at the '-' b[i]:
// "-----BEGIN <label>PRIVATE KEY-----" (also "... PRIVATE KEY BLOCK" for
// PGP). The key body up to the END line is masked as a continuation.
func matchPEM(b []byte, i int, final bool) (match, status) {
	if st := hasPrefixAt(b, i, "-----BEGIN ", final); st != stYes {
		return match{}, st
	}
	j := i + len("-----BEGIN ")
	n := 0
	for {
		c, ok := byteAt(b, j+n)
		if !ok {
			if final {
				return match{}, stNo
			}
			return match{}, stMore
		}
		if c == '-' || n > 48 {
			break
		}
		if !isUpper(c) && !isDigit(c) && c != ' ' {
			return match{}, stNo
		}
		n++
	}
	label := b[j : j+n]
	if !bytes.HasSuffix(label, []byte("PRIVATE KEY")) && !bytes.HasSuffix(label, []byte("PRIVATE KEY BLOCK")) {
		return match{}, stNo
	}
	st := hasPrefixAt(b, j+n, "-----", final)
	if st != stYes {
		return match{}, st
	}
	e := j + n + 5
	return match{start: i, end: e, keep: e, kind: KindSecret, sec: secPEM, style: styleSecret, cont: contPEM}, stYes
}
