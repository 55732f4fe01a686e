package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hpke"
	"fmt"

	"github.com/sealgate/sealgate/crypto/cpu"
	"golang.org/x/crypto/chacha20poly1305"
)

// KEMID is an HPKE KEM identifier (RFC 9180, Section 7.1; draft-ietf-hpke-pq).
type KEMID uint16

// The KEMs sealgate serves.
const (
	KEMP256           KEMID = 0x0010 // DHKEM(P-256, HKDF-SHA256)
	KEMX25519         KEMID = 0x0020 // DHKEM(X25519, HKDF-SHA256)
	KEMMLKEM768X25519 KEMID = 0x647a // MLKEM768-X25519 (X-Wing)
)

// KDFID is an HPKE KDF identifier.
type KDFID uint16

// KDFHKDFSHA256 is the only KDF sealgate uses.
const KDFHKDFSHA256 KDFID = 0x0001

// AEADID is an HPKE AEAD identifier; the same AEAD protects the records.
type AEADID uint16

// The AEADs sealgate uses.
const (
	AEADAES128GCM        AEADID = 0x0001
	AEADAES256GCM        AEADID = 0x0002
	AEADChaCha20Poly1305 AEADID = 0x0003
)

// KEMs lists the supported KEMs in the order the key configuration lists
// them.
var KEMs = []KEMID{KEMX25519, KEMP256, KEMMLKEM768X25519}

// String returns the configuration name of k.
func (k KEMID) String() string {
	switch k {
	case KEMX25519:
		return "x25519"
	case KEMP256:
		return "p256"
	case KEMMLKEM768X25519:
		return "mlkem768-x25519"
	}
	return fmt.Sprintf("kem-0x%04x", uint16(k))
}

// ParseKEM returns the KEM named s ("x25519", "p256", "mlkem768-x25519").
func ParseKEM(s string) (KEMID, error) {
	for _, k := range KEMs {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown KEM %q (want x25519, p256 or mlkem768-x25519)", s)
}

// hpke returns the stdlib KEM for k.
func (k KEMID) hpke() (hpke.KEM, error) {
	switch k {
	case KEMX25519:
		return hpke.DHKEM(ecdh.X25519()), nil
	case KEMP256:
		return hpke.DHKEM(ecdh.P256()), nil
	case KEMMLKEM768X25519:
		return hpke.MLKEM768X25519(), nil
	}
	return nil, fmt.Errorf("%w: KEM 0x%04x", ErrUnsupported, uint16(k))
}

// encLen is Nenc, the length of the encapsulated key.
func (k KEMID) encLen() int {
	switch k {
	case KEMX25519:
		return 32
	case KEMP256:
		return 65
	case KEMMLKEM768X25519:
		return 1120
	}
	return 0
}

// String returns the configuration name of a.
func (a AEADID) String() string {
	switch a {
	case AEADAES128GCM:
		return string(cpu.AES128GCM)
	case AEADAES256GCM:
		return string(cpu.AES256GCM)
	case AEADChaCha20Poly1305:
		return string(cpu.ChaCha20Poly1305)
	}
	return fmt.Sprintf("aead-0x%04x", uint16(a))
}

// AEADFromCPU maps a crypto/cpu AEAD name to its HPKE identifier.
func AEADFromCPU(a cpu.AEAD) (AEADID, error) {
	switch a {
	case cpu.AES128GCM:
		return AEADAES128GCM, nil
	case cpu.AES256GCM:
		return AEADAES256GCM, nil
	case cpu.ChaCha20Poly1305:
		return AEADChaCha20Poly1305, nil
	}
	return 0, fmt.Errorf("%w: AEAD %q", ErrUnsupported, a)
}

// KeyLen is Nk, the AEAD key length.
func (a AEADID) KeyLen() int {
	switch a {
	case AEADAES128GCM:
		return 16
	case AEADAES256GCM, AEADChaCha20Poly1305:
		return 32
	}
	return 0
}

func (a AEADID) hpke() (hpke.AEAD, error) {
	switch a {
	case AEADAES128GCM:
		return hpke.AES128GCM(), nil
	case AEADAES256GCM:
		return hpke.AES256GCM(), nil
	case AEADChaCha20Poly1305:
		return hpke.ChaCha20Poly1305(), nil
	}
	return nil, fmt.Errorf("%w: AEAD 0x%04x", ErrUnsupported, uint16(a))
}

// newAEAD returns the record cipher for a with key.
func (a AEADID) newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != a.KeyLen() || a.KeyLen() == 0 {
		return nil, fmt.Errorf("%w: AEAD 0x%04x with a %d-byte key", ErrUnsupported, uint16(a), len(key))
	}
	if a == AEADChaCha20Poly1305 {
		return chacha20poly1305.New(key)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
