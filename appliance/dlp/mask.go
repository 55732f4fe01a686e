package dlp

// maskStyle says which bytes of a match are replaced, and by what. Every
// style keeps the length, so offsets and Content-Length stay right, and keeps
// a JSON document valid: '*' is replaced only inside strings (never a quote
// or half an escape sequence) and digits of bare numbers become '9'.
type maskStyle uint8

const (
	styleDigits maskStyle = iota // digits → '*', separators kept (card in a string)
	styleNumber                  // digits → '9' (card or field that is a JSON number)
	styleSep                     // all but ' ', '-', '+' → '*' (ssn, iban, phone)
	styleEmail                   // all but '@', '.' → '*'
	styleSecret                  // all but CR, LF → '*'
	styleAll                     // everything → '*' (field string content)
)

// maskByte returns the replacement for c under style.
func maskByte(c byte, style maskStyle) byte {
	switch style {
	case styleDigits:
		if isDigit(c) {
			return '*'
		}
	case styleNumber:
		if isDigit(c) {
			return '9'
		}
	case styleSep:
		if c != ' ' && c != '-' && c != '+' {
			return '*'
		}
	case styleEmail:
		if c != '@' && c != '.' {
			return '*'
		}
	case styleSecret:
		if c != '\r' && c != '\n' {
			return '*'
		}
	case styleAll:
		return '*'
	}
	return c
}

// contKind is the state machine that extends a secret past its decided
// prefix, byte by byte, so that tokens of open length never need lookahead.
type contKind uint8

const (
	contNone  contKind = iota
	contAlnum          // A-Z a-z 0-9
	contWord           // A-Z a-z 0-9 _
	contB64u           // base64url
	contLabel          // A-Z a-z 0-9 -
	contJWT            // base64url and one more '.' (the signature)
	contPEM            // PEM body up to and including the END line
)

// maxContinuation bounds a continuation (a 16384-bit RSA key in PEM is about
// 13 KiB).
const maxContinuation = 64 << 10

// continuation is the state of an open secret.
type continuation struct {
	kind  contKind
	n     int // bytes consumed
	dots  int // JWT: dots still allowed
	esc   int // PEM in a JSON string: 1 after '\', 2..5 inside \uXXXX
	dash  int // PEM: current run of '-'
	phase int // PEM: 0 body, 1 inside the END line
}

// step consumes c if it belongs to the open secret and reports whether it
// did; after a false the continuation is over and c is not part of it. done
// reports that c was the last byte (the END line's closing dashes).
func (k *continuation) step(c byte) (took, done bool) {
	if k.n >= maxContinuation && k.esc == 0 {
		return false, true
	}
	cl := cls[c]
	switch k.kind {
	case contAlnum:
		took = isDigit(c) || isAlpha(c)
	case contWord:
		took = cl&cWord != 0
	case contB64u:
		took = cl&cB64u != 0
	case contLabel:
		took = cl&cLabel != 0
	case contJWT:
		if c == '.' && k.dots > 0 {
			k.dots--
			took = true
		} else {
			took = cl&cB64u != 0
		}
	case contPEM:
		switch {
		case k.esc == 1:
			took = true
			if c == 'u' {
				k.esc = 5
			} else {
				k.esc = 0
			}
		case k.esc > 1:
			took = true
			k.esc--
			if k.esc == 1 {
				k.esc = 0
			}
		case c == '\\':
			took = true
			k.esc = 1
		case cl&cPEM != 0:
			took = true
			if c == '-' {
				k.dash++
				if k.dash == 5 {
					k.dash = 0
					if k.phase == 1 {
						k.n++
						return true, true
					}
					k.phase = 1
				}
			} else {
				k.dash = 0
			}
		}
	}
	if took {
		k.n++
	}
	return took, !took
}
