package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// Ticket layout (PROTOCOL.md, "Session tickets").
const (
	ticketKeyLen   = 32 // AES-256-GCM
	ticketNonceLen = 12
	ticketMinLen   = 1 + ticketNonceLen + TagLen
	// ticketMaxLen bounds what a server reads before authenticating anything.
	ticketMaxLen = 512
	labelTicket  = "sealgate ticket"
)

// ticketState is what a ticket carries, sealed under a ticket key.
type ticketState struct {
	keyID   uint8
	kem     KEMID
	aead    AEADID
	issued  int64 // unix milliseconds
	expires int64 // unix milliseconds
	secrets SessionSecrets
}

func (t *ticketState) marshal() []byte {
	b := []byte{Version, t.keyID}
	b = binary.BigEndian.AppendUint16(b, uint16(t.kem))
	b = binary.BigEndian.AppendUint16(b, uint16(t.aead))
	b = binary.BigEndian.AppendUint64(b, uint64(t.issued))
	b = binary.BigEndian.AppendUint64(b, uint64(t.expires))
	b = append(b, t.secrets.ID[:]...)
	b = append(b, t.secrets.C2SKey...)
	b = append(b, t.secrets.C2SIV[:]...)
	b = append(b, t.secrets.S2CKey...)
	return append(b, t.secrets.S2CIV[:]...)
}

// parseTicketState parses the plaintext of a ticket.
func parseTicketState(b []byte) (*ticketState, error) {
	const fixed = 1 + 1 + 2 + 2 + 8 + 8 + SessionIDLen
	if len(b) < fixed {
		return nil, fmt.Errorf("%w: ticket state of %d bytes", ErrMalformed, len(b))
	}
	if b[0] != Version {
		return nil, fmt.Errorf("%w: ticket version %d", ErrUnsupported, b[0])
	}
	t := &ticketState{
		keyID:   b[1],
		kem:     KEMID(binary.BigEndian.Uint16(b[2:])),
		aead:    AEADID(binary.BigEndian.Uint16(b[4:])),
		issued:  int64(binary.BigEndian.Uint64(b[6:])),
		expires: int64(binary.BigEndian.Uint64(b[14:])),
	}
	t.secrets.AEAD = t.aead
	copy(t.secrets.ID[:], b[22:22+SessionIDLen])
	nk := t.aead.KeyLen()
	if nk == 0 {
		return nil, fmt.Errorf("%w: ticket AEAD 0x%04x", ErrUnsupported, uint16(t.aead))
	}
	rest := b[fixed:]
	if len(rest) != 2*(nk+ivLen) {
		return nil, fmt.Errorf("%w: ticket state length does not match its AEAD", ErrMalformed)
	}
	t.secrets.C2SKey = append([]byte(nil), rest[:nk]...)
	copy(t.secrets.C2SIV[:], rest[nk:nk+ivLen])
	rest = rest[nk+ivLen:]
	t.secrets.S2CKey = append([]byte(nil), rest[:nk]...)
	copy(t.secrets.S2CIV[:], rest[nk:])
	if t.expires < t.issued {
		return nil, fmt.Errorf("%w: ticket expires before it was issued", ErrMalformed)
	}
	return t, nil
}

// ticketKey seals and opens tickets.
type ticketKey struct {
	id      uint8
	key     []byte
	aead    cipher.AEAD
	created int64 // unix milliseconds
}

func newTicketKey(id uint8, key []byte, created int64) (*ticketKey, error) {
	if len(key) != ticketKeyLen {
		return nil, fmt.Errorf("ticket key %d is %d bytes, want %d", id, len(key), ticketKeyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &ticketKey{id: id, key: key, aead: a, created: created}, nil
}

func ticketAAD(id uint8) []byte {
	return append(append([]byte(labelTicket), 0), id)
}

func (k *ticketKey) seal(t *ticketState) []byte {
	b := make([]byte, 1+ticketNonceLen, ticketMinLen+128)
	b[0] = k.id
	rand.Read(b[1:])
	return k.aead.Seal(b, b[1:1+ticketNonceLen], t.marshal(), ticketAAD(k.id))
}

// SplitTicket parses the public framing of a ticket: the ticket key id, the
// nonce and the sealed state.
func SplitTicket(b []byte) (keyID uint8, nonce, sealed []byte, err error) {
	if len(b) < ticketMinLen || len(b) > ticketMaxLen {
		return 0, nil, nil, fmt.Errorf("%w: ticket of %d bytes", ErrMalformed, len(b))
	}
	return b[0], b[1 : 1+ticketNonceLen], b[1+ticketNonceLen:], nil
}

func (k *ticketKey) open(b []byte) (*ticketState, error) {
	id, nonce, sealed, err := SplitTicket(b)
	if err != nil {
		return nil, err
	}
	if id != k.id {
		return nil, fmt.Errorf("ticket key id %d, want %d: %w", id, k.id, ErrDecrypt)
	}
	pt, err := k.aead.Open(nil, nonce, sealed, ticketAAD(id))
	if err != nil {
		return nil, fmt.Errorf("ticket: %w", ErrDecrypt)
	}
	return parseTicketState(pt)
}
