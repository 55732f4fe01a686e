package dlp

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// luhnComplete appends the Luhn check digit to digits.
func luhnComplete(digits string) string {
	for c := byte('0'); c <= '9'; c++ {
		s := digits + string(c)
		d := make([]byte, len(s))
		for i := range s {
			d[i] = s[i] - '0'
		}
		if luhn(d) {
			return s
		}
	}
	panic("unreachable")
}

func randDigits(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteByte(byte('0' + r.IntN(10)))
	}
	return b.String()
}

func randCard(r *rand.Rand) string {
	issuers := []struct {
		prefix string
		n      int
	}{{"4", 16}, {"4", 19}, {"51", 16}, {"55", 16}, {"2221", 16}, {"2720", 16}, {"34", 15}, {"37", 15},
		{"6011", 16}, {"65", 19}, {"3530", 16}, {"36", 14}, {"62", 17}, {"2201", 16}}
	is := issuers[r.IntN(len(issuers))]
	pan := luhnComplete(is.prefix + randDigits(r, is.n-len(is.prefix)-1))
	switch r.IntN(3) {
	case 1, 2:
		sep := " "
		if r.IntN(2) == 0 {
			sep = "-"
		}
		var groups []string
		for i := 0; i < len(pan); i += 4 {
			groups = append(groups, pan[i:min(i+4, len(pan))])
		}
		if len(groups[len(groups)-1]) < 3 { // keep groups of three or more
			last := groups[len(groups)-1]
			groups = groups[:len(groups)-1]
			groups[len(groups)-1] += last
		}
		return strings.Join(groups, sep)
	}
	return pan
}

func randIBAN(r *rand.Rand) string {
	cc := []string{"DE", "GB", "FR", "NL", "ES", "IT", "CH"}[r.IntN(7)]
	n := int(ibanLengths[[2]byte{cc[0], cc[1]}])
	bban := randDigits(r, n-4)
	num := new(big.Int)
	num.SetString(bban+fmt.Sprint(int(cc[0]-'A'+10))+fmt.Sprint(int(cc[1]-'A'+10))+"00", 10)
	check := 98 - new(big.Int).Mod(num, big.NewInt(97)).Int64()
	s := fmt.Sprintf("%s%02d%s", cc, check, bban)
	if r.IntN(2) == 0 {
		var g []string
		for i := 0; i < len(s); i += 4 {
			g = append(g, s[i:min(i+4, len(s))])
		}
		return strings.Join(g, " ")
	}
	return s
}

func randPositive(r *rand.Rand) (Kind, string) {
	switch r.IntN(6) {
	case 0, 1:
		return KindCard, randCard(r)
	case 2:
		return KindSSN, fmt.Sprintf("%03d-%02d-%04d", 1+r.IntN(665), 1+r.IntN(99), 1+r.IntN(9999))
	case 3:
		return KindIBAN, randIBAN(r)
	case 4:
		return KindEmail, fmt.Sprintf("%s.%s%d@%s.%s", pick(r, firstNames), pick(r, lastNames), r.IntN(100), pick(r, []string{"example", "mail-host", "corp"}), pick(r, []string{"com", "org", "co.uk", "de"}))
	}
	return KindPhone, "+44" + fmt.Sprint(1+r.IntN(9)) + randDigits(r, 9)
}

// TestGeneratedPositives plants random valid values of every kind in
// ordinary JSON and text and requires each to be found exactly where it was
// planted, through both scan loops and cut into pieces.
func TestGeneratedPositives(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 7))
	cc := mustCompile(t, Config{})
	for round := 0; round < 20; round++ {
		var b strings.Builder
		var want []rec
		b.WriteString("[")
		for i := 0; i < 200; i++ {
			kind, v := randPositive(r)
			fmt.Fprintf(&b, `{"id":%d,"at":"2024-0%d-1%dT10:00:00Z","price":%d.%02d,"uuid":"%s","note":"`, i, 1+r.IntN(9), r.IntN(10), r.IntN(999), r.IntN(100), uuid4(r))
			if r.IntN(2) == 0 {
				b.WriteString(pick(r, wordsList) + " ")
			}
			want = append(want, rec{kind, secNone, int64(b.Len())})
			b.WriteString(v)
			if r.IntN(2) == 0 {
				b.WriteString(", " + pick(r, wordsList))
			}
			b.WriteString(`"},`)
		}
		b.WriteString(`{}]`)
		body := []byte(b.String())
		for _, scalar := range []bool{false, true} {
			h := harness{scalar: scalar}
			cuts := []int{r.IntN(len(body)), r.IntN(len(body)), r.IntN(len(body))}
			slices.Sort(cuts)
			_, got := h.scan(t, cc, true, body, cuts...)
			if !slices.Equal(got, want) {
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						o := want[i].Off
						t.Fatalf("round %d scalar=%v: finding %d is %v, want %v near %q", round, scalar, i, got[i], want[i], body[o-10:min(int(o)+40, len(body))])
					}
				}
				t.Fatalf("round %d scalar=%v: %d findings, want %d", round, scalar, len(got), len(want))
			}
		}
	}
}
