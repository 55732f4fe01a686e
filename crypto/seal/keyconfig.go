package seal

import (
	"encoding/binary"
	"fmt"
)

// MediaTypeKeys is the media type of the key configuration list (RFC 9540,
// Section 3: each key configuration prefixed by its 2-byte length).
const MediaTypeKeys = "application/ohttp-keys"

// SymmetricAlgorithm is one KDF/AEAD pair a key configuration offers.
type SymmetricAlgorithm struct {
	KDF  KDFID
	AEAD AEADID
}

// KeyConfig is one key configuration in the RFC 9458, Section 3 format.
// sealgate gives every KEM of one key generation the same key id; the pair
// (key id, KEM id) selects the key.
type KeyConfig struct {
	ID         uint8
	KEM        KEMID
	PublicKey  []byte
	Algorithms []SymmetricAlgorithm // most preferred first
}

// AppendBinary appends the RFC 9458 encoding of c.
func (c KeyConfig) AppendBinary(b []byte) ([]byte, error) {
	if len(c.Algorithms) == 0 || len(c.Algorithms) > 16383 {
		return nil, fmt.Errorf("key config %d: %d algorithms (want 1..16383)", c.ID, len(c.Algorithms))
	}
	b = append(b, c.ID)
	b = binary.BigEndian.AppendUint16(b, uint16(c.KEM))
	b = append(b, c.PublicKey...)
	b = binary.BigEndian.AppendUint16(b, uint16(4*len(c.Algorithms)))
	for _, a := range c.Algorithms {
		b = binary.BigEndian.AppendUint16(b, uint16(a.KDF))
		b = binary.BigEndian.AppendUint16(b, uint16(a.AEAD))
	}
	return b, nil
}

// publicKeyLen is Npk for the KEMs this package knows.
func publicKeyLen(k KEMID) int {
	switch k {
	case KEMX25519:
		return 32
	case KEMP256:
		return 65
	case KEMMLKEM768X25519:
		return 1216
	}
	return -1
}

// ParseKeyConfig parses one key configuration from the start of b and
// returns the bytes after it. A KEM this package does not know cannot be
// parsed, because its public key length is unknown.
func ParseKeyConfig(b []byte) (KeyConfig, []byte, error) {
	if len(b) < 3 {
		return KeyConfig{}, nil, fmt.Errorf("%w: key config shorter than its header", ErrMalformed)
	}
	c := KeyConfig{ID: b[0], KEM: KEMID(binary.BigEndian.Uint16(b[1:3]))}
	npk := publicKeyLen(c.KEM)
	if npk < 0 {
		return KeyConfig{}, nil, fmt.Errorf("key config %d: %w: KEM 0x%04x", c.ID, ErrUnsupported, uint16(c.KEM))
	}
	b = b[3:]
	if len(b) < npk+2 {
		return KeyConfig{}, nil, fmt.Errorf("%w: key config %d truncated in its public key", ErrMalformed, c.ID)
	}
	c.PublicKey = append([]byte(nil), b[:npk]...)
	b = b[npk:]
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if n < 4 || n%4 != 0 || n > len(b) {
		return KeyConfig{}, nil, fmt.Errorf("%w: key config %d has algorithms length %d", ErrMalformed, c.ID, n)
	}
	for i := 0; i < n; i += 4 {
		c.Algorithms = append(c.Algorithms, SymmetricAlgorithm{
			KDF:  KDFID(binary.BigEndian.Uint16(b[i:])),
			AEAD: AEADID(binary.BigEndian.Uint16(b[i+2:])),
		})
	}
	return c, b[n:], nil
}

// MarshalKeyConfigs encodes cs as an application/ohttp-keys document.
func MarshalKeyConfigs(cs []KeyConfig) ([]byte, error) {
	var out []byte
	for _, c := range cs {
		one, err := c.AppendBinary(nil)
		if err != nil {
			return nil, err
		}
		if len(one) > 0xffff {
			return nil, fmt.Errorf("key config %d too large", c.ID)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(one)))
		out = append(out, one...)
	}
	return out, nil
}

// ParseKeyConfigs parses an application/ohttp-keys document. Configurations
// with a KEM this package does not know are skipped, as RFC 9540 allows; an
// empty result is an error.
func ParseKeyConfigs(b []byte) ([]KeyConfig, error) {
	var cs []KeyConfig
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: key config list truncated", ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > len(b) {
			return nil, fmt.Errorf("%w: key config length %d exceeds the %d bytes left", ErrMalformed, n, len(b))
		}
		c, rest, err := ParseKeyConfig(b[:n])
		b = b[n:]
		if err != nil {
			if isUnsupported(err) {
				continue
			}
			return nil, err
		}
		if len(rest) != 0 {
			return nil, fmt.Errorf("%w: %d stray bytes after key config %d", ErrMalformed, len(rest), c.ID)
		}
		cs = append(cs, c)
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("%w: no usable key configuration", ErrUnsupported)
	}
	return cs, nil
}
