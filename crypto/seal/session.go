package seal

import (
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// Protocol constants (PROTOCOL.md).
const (
	// Version is the protocol version byte at the start of every session
	// request, session response and sealed request, and inside tickets.
	Version = 1

	// MediaTypeSession is the media type of a session request.
	MediaTypeSession = "application/sealgate-session"
	// MediaTypeSessionResponse is the media type of a session response.
	MediaTypeSessionResponse = "application/sealgate-session-response"
	// MediaTypeRequest is the media type of a sealed request.
	MediaTypeRequest = "application/sealgate-request"
	// MediaTypeResponse is the media type of a sealed response.
	MediaTypeResponse = "application/sealgate-response"

	sessionHeaderLen = 8 // version, key id, KEM, KDF, AEAD
	confirmLen       = 32
	ivLen            = nonceLen

	labelInfo      = "sealgate session"
	labelC2SKey    = "sealgate c2s key"
	labelC2SIV     = "sealgate c2s iv"
	labelS2CKey    = "sealgate s2c key"
	labelS2CIV     = "sealgate s2c iv"
	labelSessionID = "sealgate session id"
	labelConfirm   = "sealgate confirm"
)

// SessionSecrets are what both sides derive from the HPKE exporter when a
// session opens.
type SessionSecrets struct {
	ID         [SessionIDLen]byte
	AEAD       AEADID
	C2SKey     []byte
	C2SIV      [ivLen]byte
	S2CKey     []byte
	S2CIV      [ivLen]byte
	ConfirmKey []byte
}

type exporter interface {
	Export(exporterContext string, length int) ([]byte, error)
}

func deriveSecrets(e exporter, aead AEADID) (*SessionSecrets, error) {
	s := &SessionSecrets{AEAD: aead}
	get := func(label string, n int) []byte {
		b, err := e.Export(label, n)
		if err != nil {
			panic(err) // lengths are constants below 65536
		}
		return b
	}
	s.C2SKey = get(labelC2SKey, aead.KeyLen())
	copy(s.C2SIV[:], get(labelC2SIV, ivLen))
	s.S2CKey = get(labelS2CKey, aead.KeyLen())
	copy(s.S2CIV[:], get(labelS2CIV, ivLen))
	copy(s.ID[:], get(labelSessionID, SessionIDLen))
	s.ConfirmKey = get(labelConfirm, confirmLen)
	return s, nil
}

func (s *SessionSecrets) keys() (c2s, s2c *recordKey, err error) {
	ca, err := s.AEAD.newAEAD(s.C2SKey)
	if err != nil {
		return nil, nil, err
	}
	sa, err := s.AEAD.newAEAD(s.S2CKey)
	if err != nil {
		return nil, nil, err
	}
	c2s = &recordKey{aead: ca, iv: s.C2SIV, sid: s.ID, dir: DirRequest}
	s2c = &recordKey{aead: sa, iv: s.S2CIV, sid: s.ID, dir: DirResponse}
	return c2s, s2c, nil
}

func sessionHeader(keyID uint8, kem KEMID, aead AEADID) []byte {
	h := make([]byte, 0, sessionHeaderLen)
	h = append(h, Version, keyID)
	h = binary.BigEndian.AppendUint16(h, uint16(kem))
	h = binary.BigEndian.AppendUint16(h, uint16(KDFHKDFSHA256))
	return binary.BigEndian.AppendUint16(h, uint16(aead))
}

func sessionInfo(hdr []byte) []byte {
	info := append([]byte(labelInfo), 0)
	return append(info, hdr...)
}

// PendingSession is a client's half-open session: the request was sent, the
// response not yet checked.
type PendingSession struct {
	cfg     KeyConfig
	secrets *SessionSecrets
}

// NewSessionRequest builds the session request for cfg with aead, which
// must be one of cfg's algorithms.
func NewSessionRequest(cfg KeyConfig, aead AEADID) ([]byte, *PendingSession, error) {
	offered := false
	for _, a := range cfg.Algorithms {
		offered = offered || (a.KDF == KDFHKDFSHA256 && a.AEAD == aead)
	}
	if !offered {
		return nil, nil, fmt.Errorf("key config %d does not offer HKDF-SHA256 with %v: %w", cfg.ID, aead, ErrUnsupported)
	}
	kem, err := cfg.KEM.hpke()
	if err != nil {
		return nil, nil, err
	}
	pk, err := kem.NewPublicKey(cfg.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("key config %d: public key: %w", cfg.ID, err)
	}
	ha, err := aead.hpke()
	if err != nil {
		return nil, nil, err
	}
	hdr := sessionHeader(cfg.ID, cfg.KEM, aead)
	enc, sender, err := hpke.NewSender(pk, hpke.HKDFSHA256(), ha, sessionInfo(hdr))
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	ct, err := sender.Seal(nil, []byte{0})
	if err != nil {
		return nil, nil, fmt.Errorf("hpke seal: %w", err)
	}
	secrets, err := deriveSecrets(sender, aead)
	if err != nil {
		return nil, nil, err
	}
	msg := append(append(hdr, enc...), ct...)
	return msg, &PendingSession{cfg: cfg, secrets: secrets}, nil
}

// Finish checks the server's session response and returns the open session.
func (p *PendingSession) Finish(resp []byte) (*ClientSession, error) {
	expires, ticket, err := parseSessionResponse(resp, p.secrets.ConfirmKey)
	if err != nil {
		return nil, err
	}
	c2s, s2c, err := p.secrets.keys()
	if err != nil {
		return nil, err
	}
	return &ClientSession{
		ID: p.secrets.ID, KeyID: p.cfg.ID, KEM: p.cfg.KEM, AEAD: p.secrets.AEAD,
		Expires: expires, ticket: ticket, c2s: c2s, s2c: s2c,
	}, nil
}

// Secrets returns the derived session secrets (for test vectors only).
func (p *PendingSession) Secrets() *SessionSecrets { return p.secrets }

func appendSessionResponse(expires time.Time, ticket, confirmKey []byte) []byte {
	b := []byte{Version}
	b = binary.BigEndian.AppendUint64(b, uint64(expires.UnixMilli()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(ticket)))
	b = append(b, ticket...)
	m := hmac.New(sha256.New, confirmKey)
	m.Write(b)
	return m.Sum(b)
}

func parseSessionResponse(b, confirmKey []byte) (time.Time, []byte, error) {
	if len(b) < 1+8+2+confirmLen {
		return time.Time{}, nil, fmt.Errorf("%w: session response of %d bytes", ErrMalformed, len(b))
	}
	if b[0] != Version {
		return time.Time{}, nil, fmt.Errorf("%w: session response version %d", ErrUnsupported, b[0])
	}
	n := int(binary.BigEndian.Uint16(b[9:11]))
	if len(b) != 11+n+confirmLen {
		return time.Time{}, nil, fmt.Errorf("%w: session response length does not match its ticket", ErrMalformed)
	}
	body, tag := b[:11+n], b[11+n:]
	m := hmac.New(sha256.New, confirmKey)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), tag) {
		return time.Time{}, nil, fmt.Errorf("session confirmation: %w", ErrDecrypt)
	}
	expires := time.UnixMilli(int64(binary.BigEndian.Uint64(b[1:9])))
	return expires, append([]byte(nil), b[11:11+n]...), nil
}

// ClientSession is an open session on the client side. It is safe for
// concurrent use: every message takes the next sequence number.
type ClientSession struct {
	ID      [SessionIDLen]byte
	KeyID   uint8
	KEM     KEMID
	AEAD    AEADID
	Expires time.Time

	ticket   []byte
	c2s, s2c *recordKey
	seq      atomic.Uint64
}

// Ticket returns the opaque session ticket.
func (s *ClientSession) Ticket() []byte { return s.ticket }

// NextSeq reserves the next message sequence number (starting at 1).
func (s *ClientSession) NextSeq() uint64 { return s.seq.Add(1) }

// SealRequest writes the sealed-request header for message seq to w and
// returns the writer for the Binary HTTP request; Close it to seal the
// final record.
func (s *ClientSession) SealRequest(w io.Writer, seq uint64) (*RecordWriter, error) {
	if seq == 0 {
		return nil, errors.New("sequence number 0 is reserved")
	}
	hdr := make([]byte, 0, 3+len(s.ticket)+8)
	hdr = append(hdr, Version)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(s.ticket)))
	hdr = append(hdr, s.ticket...)
	hdr = binary.BigEndian.AppendUint64(hdr, seq)
	if _, err := w.Write(hdr); err != nil {
		return nil, err
	}
	return newRecordWriter(w, s.c2s, seq), nil
}

// OpenResponse returns the reader of the Binary HTTP response to message
// seq, read from the sealed response r.
func (s *ClientSession) OpenResponse(r io.Reader, seq uint64) *RecordReader {
	return newRecordReader(r, s.s2c, seq)
}
