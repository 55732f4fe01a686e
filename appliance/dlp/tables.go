package dlp

// Character classes used by the trigger loop and the validators.
const (
	cWord  = 1 << iota // A-Z a-z 0-9 _
	cDigit             // 0-9
	cUpper             // A-Z
	cTrig              // a byte that may start a token worth validating
	cLocal             // e-mail local part: A-Z a-z 0-9 . _ % + -
	cLabel             // domain label: A-Z a-z 0-9 -
	cB64u              // base64url: A-Z a-z 0-9 - _
	cPEM               // PEM body: base64, '=', '-', white space
)

var cls = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		var v uint8
		isAlnum := (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9')
		if isAlnum || b == '_' {
			v |= cWord
		}
		if b >= '0' && b <= '9' {
			v |= cDigit | cTrig
		}
		if b >= 'A' && b <= 'Z' {
			v |= cUpper | cTrig
		}
		switch b {
		case 'e', 'g', 'x', 's', 'r', '@', '+', '-':
			v |= cTrig
		}
		if isAlnum || b == '.' || b == '_' || b == '%' || b == '+' || b == '-' {
			v |= cLocal
		}
		if isAlnum || b == '-' {
			v |= cLabel
		}
		if isAlnum || b == '-' || b == '_' {
			v |= cB64u
		}
		if isAlnum || b == '+' || b == '/' || b == '=' || b == '-' || b == ' ' || b == '\t' || b == '\r' || b == '\n' {
			v |= cPEM
		}
		t[c] = v
	}
	return t
}()

func isWord(c byte) bool  { return cls[c]&cWord != 0 }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isAlpha(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }

// ibanLengths is the IBAN length per country (SWIFT IBAN registry).
var ibanLengths = map[[2]byte]uint8{
	{'A', 'D'}: 24, {'A', 'E'}: 23, {'A', 'L'}: 28, {'A', 'T'}: 20, {'A', 'Z'}: 28, {'B', 'A'}: 20, {'B', 'E'}: 16,
	{'B', 'G'}: 22, {'B', 'H'}: 22, {'B', 'I'}: 27, {'B', 'R'}: 29, {'B', 'Y'}: 28, {'C', 'H'}: 21, {'C', 'R'}: 22,
	{'C', 'Y'}: 28, {'C', 'Z'}: 24, {'D', 'E'}: 22, {'D', 'J'}: 27, {'D', 'K'}: 18, {'D', 'O'}: 28, {'E', 'E'}: 20,
	{'E', 'G'}: 29, {'E', 'S'}: 24, {'F', 'I'}: 18, {'F', 'K'}: 18, {'F', 'O'}: 18, {'F', 'R'}: 27, {'G', 'B'}: 22,
	{'G', 'E'}: 22, {'G', 'I'}: 23, {'G', 'L'}: 18, {'G', 'R'}: 27, {'G', 'T'}: 28, {'H', 'R'}: 21, {'H', 'U'}: 28,
	{'I', 'E'}: 22, {'I', 'L'}: 23, {'I', 'Q'}: 23, {'I', 'S'}: 26, {'I', 'T'}: 27, {'J', 'O'}: 30, {'K', 'W'}: 30,
	{'K', 'Z'}: 20, {'L', 'B'}: 28, {'L', 'C'}: 32, {'L', 'I'}: 21, {'L', 'T'}: 20, {'L', 'U'}: 20, {'L', 'V'}: 21,
	{'L', 'Y'}: 25, {'M', 'C'}: 27, {'M', 'D'}: 24, {'M', 'E'}: 22, {'M', 'K'}: 19, {'M', 'N'}: 20, {'M', 'R'}: 27,
	{'M', 'T'}: 31, {'M', 'U'}: 30, {'N', 'I'}: 28, {'N', 'L'}: 18, {'N', 'O'}: 15, {'O', 'M'}: 23, {'P', 'K'}: 24,
	{'P', 'L'}: 28, {'P', 'S'}: 29, {'P', 'T'}: 25, {'Q', 'A'}: 29, {'R', 'O'}: 24, {'R', 'S'}: 22, {'R', 'U'}: 33,
	{'S', 'A'}: 24, {'S', 'C'}: 31, {'S', 'D'}: 18, {'S', 'E'}: 24, {'S', 'I'}: 19, {'S', 'K'}: 24, {'S', 'M'}: 27,
	{'S', 'O'}: 23, {'S', 'T'}: 25, {'S', 'V'}: 28, {'T', 'L'}: 23, {'T', 'N'}: 24, {'T', 'R'}: 26, {'U', 'A'}: 29,
	{'V', 'A'}: 22, {'V', 'G'}: 24, {'X', 'K'}: 20, {'Y', 'E'}: 30,
}

// countryCodeLen returns the length (1 to 3) of the ITU-T E.164 country
// calling code that d (ASCII digits) starts with, or 0 if d starts with no
// assigned code.
func countryCodeLen(d []byte) int {
	if len(d) < 3 {
		return 0
	}
	a, b, c := d[0]-'0', d[1]-'0', d[2]-'0'
	two := int(a)*10 + int(b)
	three := two*10 + int(c)
	switch a {
	case 1, 7:
		return 1
	case 2:
		switch {
		case b == 0 || b == 7:
			return 2
		case three == 211 || three == 212 || three == 213 || three == 216 || three == 218,
			three >= 220 && three <= 258, three >= 260 && three <= 269,
			three == 290 || three == 291 || (three >= 297 && three <= 299):
			return 3
		}
	case 3:
		switch {
		case b <= 4 || b == 6 || b == 9:
			return 2
		case b == 5, three >= 370 && three <= 389:
			return 3
		}
	case 4:
		switch {
		case b != 2:
			return 2
		case three == 420 || three == 421 || three == 423:
			return 3
		}
	case 5:
		switch {
		case b >= 1 && b <= 8:
			return 2
		default:
			return 3
		}
	case 6:
		switch {
		case b <= 6:
			return 2
		case three >= 670 && three <= 692:
			return 3
		}
	case 8:
		switch {
		case b == 1 || b == 2 || b == 4 || b == 6:
			return 2
		case three == 800 || three == 808 || three == 850 || three == 852 || three == 853 || three == 855 ||
			three == 856 || three == 870 || three == 878 || three == 880 || three == 881 || three == 882 ||
			three == 883 || three == 886 || three == 888:
			return 3
		}
	case 9:
		switch {
		case b <= 5 || b == 8:
			return 2
		case three >= 960 && three <= 968, three >= 970 && three <= 977, three >= 992 && three <= 996, three == 998:
			return 3
		}
	}
	return 0
}

// fileExtTLDs are "top-level domains" that are really file extensions, as in
// asset names like logo@2x.png; an address ending in one is not an e-mail.
var fileExtTLDs = map[string]bool{
	"png": true, "jpg": true, "jpeg": true, "gif": true, "svg": true, "webp": true, "ico": true, "bmp": true,
	"tif": true, "tiff": true, "avif": true, "heic": true, "css": true, "js": true, "mjs": true, "ts": true,
	"json": true, "map": true, "txt": true, "pdf": true, "html": true, "htm": true, "xml": true, "mp4": true,
	"webm": true, "mp3": true, "wav": true, "ogg": true, "gz": true, "tgz": true, "woff": true, "woff2": true,
	"ttf": true, "otf": true, "eot": true, "csv": true, "yaml": true, "yml": true, "lock": true, "wasm": true,
}
