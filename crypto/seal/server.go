package seal

import (
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// ServerConfig configures a Server. Zero values take the defaults noted.
type ServerConfig struct {
	// Dir holds the key material (keys.json) and, across a graceful
	// restart, the replay windows (replay.bin), both at mode 0600; it is
	// created at 0700. Empty keeps everything in memory.
	Dir string
	// KEMs are the KEMs of every key generation; default all of KEMs.
	KEMs []KEMID
	// AEADs are offered in this order in the key configuration; default
	// AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305.
	AEADs []AEADID
	// KeyRotation is the age at which Maintain rotates the key generation;
	// zero disables scheduled rotation.
	KeyRotation time.Duration
	// KeyGrace is how long a superseded generation still opens sessions and
	// serves their messages before it is retired; default 2 × TicketLifetime.
	KeyGrace time.Duration
	// TicketLifetime is how long a session lasts; default 1h. Ticket keys
	// rotate at this period and live twice as long.
	TicketLifetime time.Duration
	// MaxSessions bounds the replay windows held in memory; default 100000.
	MaxSessions int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// KeyInfo describes a key generation without its material.
type KeyInfo struct {
	ID       uint8     `json:"id"`
	KEMs     []string  `json:"kems"`
	State    string    `json:"state"` // current | previous | retired
	Created  time.Time `json:"created"`
	RetireAt time.Time `json:"retire_at,omitzero"`
	Retired  time.Time `json:"retired,omitzero"`
}

// Key generation states as KeyInfo reports them.
const (
	KeyCurrent  = "current"
	KeyPrevious = "previous"
	KeyRetired  = "retired"
)

type generation struct {
	id       uint8
	created  time.Time
	retireAt time.Time // zero while current
	keys     map[KEMID]hpke.PrivateKey
}

type retiredGen struct {
	id      uint8
	kems    []KEMID
	created time.Time
	retired time.Time
}

// SessionInfo describes an open session, without its keys.
type SessionInfo struct {
	ID      [SessionIDLen]byte
	KeyID   uint8
	KEM     KEMID
	AEAD    AEADID
	Issued  time.Time
	Expires time.Time
}

type serverSession struct {
	mu       sync.Mutex
	window   ReplayWindow
	expires  int64
	c2s, s2c *recordKey
}

// Server is the receiving side of the protocol: it owns the key
// generations, the ticket keys and the per-session replay windows. It is
// safe for concurrent use.
type Server struct {
	cfg ServerConfig

	mu         sync.RWMutex
	gens       []*generation // [0] is current
	retired    []retiredGen
	tkeys      []*ticketKey // [0] is current
	keyConfigs []byte

	smu      sync.Mutex
	sessions map[[SessionIDLen]byte]*serverSession
	since    int64 // unix ms: sessions issued earlier have no replay state here
}

// NewServer loads the state in cfg.Dir, creating keys when there are none.
func NewServer(cfg ServerConfig) (_ *Server, err error) {
	if len(cfg.KEMs) == 0 {
		cfg.KEMs = slices.Clone(KEMs)
	}
	if len(cfg.AEADs) == 0 {
		cfg.AEADs = []AEADID{AEADAES128GCM, AEADAES256GCM, AEADChaCha20Poly1305}
	}
	for _, k := range cfg.KEMs {
		if _, err := k.hpke(); err != nil {
			return nil, err
		}
	}
	for _, a := range cfg.AEADs {
		if a.KeyLen() == 0 {
			return nil, fmt.Errorf("%w: AEAD 0x%04x", ErrUnsupported, uint16(a))
		}
	}
	if cfg.TicketLifetime <= 0 {
		cfg.TicketLifetime = time.Hour
	}
	if cfg.KeyGrace <= 0 {
		cfg.KeyGrace = 2 * cfg.TicketLifetime
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 100000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, sessions: make(map[[SessionIDLen]byte]*serverSession)}
	now := cfg.Now()
	s.since = now.UnixMilli()
	if cfg.Dir != "" {
		if err := s.load(); err != nil {
			return nil, err
		}
		if err := s.loadReplay(now); err != nil {
			return nil, err
		}
	}
	changed := false
	if len(s.gens) == 0 || !s.hasAllKEMs(s.gens[0]) {
		if _, err := s.rotateLocked(now); err != nil {
			return nil, err
		}
		changed = true
	}
	c, err := s.maintainLocked(now)
	if err != nil {
		return nil, err
	}
	if changed || c {
		if err := s.save(); err != nil {
			return nil, err
		}
	}
	return s, s.buildKeyConfigs()
}

func (s *Server) hasAllKEMs(g *generation) bool {
	for _, k := range s.cfg.KEMs {
		if g.keys[k] == nil {
			return false
		}
	}
	return true
}

// KeyConfigs returns the application/ohttp-keys document of the current
// generation, one configuration per KEM.
func (s *Server) KeyConfigs() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keyConfigs
}

func (s *Server) buildKeyConfigs() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buildKeyConfigsLocked()
}

func (s *Server) buildKeyConfigsLocked() error {
	g := s.gens[0]
	algs := make([]SymmetricAlgorithm, 0, len(s.cfg.AEADs))
	for _, a := range s.cfg.AEADs {
		algs = append(algs, SymmetricAlgorithm{KDF: KDFHKDFSHA256, AEAD: a})
	}
	var cs []KeyConfig
	for _, k := range s.cfg.KEMs {
		cs = append(cs, KeyConfig{ID: g.id, KEM: k, PublicKey: g.keys[k].PublicKey().Bytes(), Algorithms: algs})
	}
	b, err := MarshalKeyConfigs(cs)
	if err != nil {
		return err
	}
	s.keyConfigs = b
	return nil
}

// Keys describes the current, previous and retired key generations.
func (s *Server) Keys() []KeyInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []KeyInfo
	for i, g := range s.gens {
		ki := KeyInfo{ID: g.id, State: KeyPrevious, Created: g.created, RetireAt: g.retireAt}
		if i == 0 {
			ki.State = KeyCurrent
		}
		for _, k := range KEMs {
			if g.keys[k] != nil {
				ki.KEMs = append(ki.KEMs, k.String())
			}
		}
		out = append(out, ki)
	}
	for _, r := range slices.Backward(s.retired) {
		ki := KeyInfo{ID: r.id, State: KeyRetired, Created: r.created, Retired: r.retired}
		for _, k := range r.kems {
			ki.KEMs = append(ki.KEMs, k.String())
		}
		out = append(out, ki)
	}
	return out
}

// Rotate makes a new key generation current at once. The one it replaces
// keeps working for KeyGrace, then is retired.
func (s *Server) Rotate() (KeyInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.rotateLocked(s.cfg.Now())
	if err != nil {
		return KeyInfo{}, err
	}
	if err := s.buildKeyConfigsLocked(); err != nil {
		return KeyInfo{}, err
	}
	if err := s.save(); err != nil {
		return KeyInfo{}, err
	}
	ki := KeyInfo{ID: g.id, State: KeyCurrent, Created: g.created}
	for _, k := range s.cfg.KEMs {
		ki.KEMs = append(ki.KEMs, k.String())
	}
	return ki, nil
}

func (s *Server) rotateLocked(now time.Time) (*generation, error) {
	g := &generation{id: s.nextKeyID(), created: now, keys: make(map[KEMID]hpke.PrivateKey)}
	for _, k := range s.cfg.KEMs {
		kem, err := k.hpke()
		if err != nil {
			return nil, err
		}
		priv, err := kem.GenerateKey()
		if err != nil {
			return nil, fmt.Errorf("generating %v key: %w", k, err)
		}
		g.keys[k] = priv
	}
	if len(s.gens) > 0 && s.gens[0].retireAt.IsZero() {
		s.gens[0].retireAt = now.Add(s.cfg.KeyGrace)
	}
	// Reusing an id drops it from the retired list.
	s.retired = slices.DeleteFunc(s.retired, func(r retiredGen) bool { return r.id == g.id })
	s.gens = append([]*generation{g}, s.gens...)
	return g, nil
}

// nextKeyID picks the id after the current one that no live generation
// uses, preferring ids never retired, else the longest-retired one.
func (s *Server) nextKeyID() uint8 {
	var start uint8
	if len(s.gens) > 0 {
		start = s.gens[0].id
	}
	inUse := func(id uint8) bool {
		return slices.ContainsFunc(s.gens, func(g *generation) bool { return g.id == id })
	}
	wasRetired := func(id uint8) bool {
		return slices.ContainsFunc(s.retired, func(r retiredGen) bool { return r.id == id })
	}
	for i := 1; i <= 256; i++ {
		id := start + uint8(i)
		if !inUse(id) && !wasRetired(id) {
			return id
		}
	}
	for _, r := range s.retired { // oldest first
		if !inUse(r.id) {
			return r.id
		}
	}
	return start + 1 // unreachable: at most a few generations are live
}

// Maintain applies scheduled key rotation, retires superseded generations
// whose grace is over, rotates ticket keys and forgets expired sessions.
// Call it periodically (every minute is plenty).
func (s *Server) Maintain() error {
	now := s.cfg.Now()
	s.mu.Lock()
	changed, err := s.maintainLocked(now)
	if err == nil && changed {
		if err = s.buildKeyConfigsLocked(); err == nil {
			err = s.save()
		}
	}
	s.mu.Unlock()
	s.sweep(now.UnixMilli())
	return err
}

func (s *Server) maintainLocked(now time.Time) (bool, error) {
	changed := false
	if s.cfg.KeyRotation > 0 && now.Sub(s.gens[0].created) >= s.cfg.KeyRotation {
		if _, err := s.rotateLocked(now); err != nil {
			return false, err
		}
		changed = true
	}
	kept := s.gens[:1]
	for _, g := range s.gens[1:] {
		if !now.Before(g.retireAt) {
			r := retiredGen{id: g.id, created: g.created, retired: now}
			for _, k := range KEMs {
				if g.keys[k] != nil {
					r.kems = append(r.kems, k)
				}
			}
			s.retired = append(s.retired, r)
			changed = true
			continue
		}
		kept = append(kept, g)
	}
	s.gens = kept
	if len(s.retired) > 128 {
		s.retired = s.retired[len(s.retired)-128:]
	}
	life := s.cfg.TicketLifetime.Milliseconds()
	nowMS := now.UnixMilli()
	if len(s.tkeys) == 0 || nowMS-s.tkeys[0].created >= life {
		var id uint8
		if len(s.tkeys) > 0 {
			id = s.tkeys[0].id + 1
		}
		key := make([]byte, ticketKeyLen)
		rand.Read(key)
		tk, err := newTicketKey(id, key, nowMS)
		if err != nil {
			return false, err
		}
		s.tkeys = append([]*ticketKey{tk}, s.tkeys...)
		changed = true
	}
	// A ticket key seals tickets for one lifetime; its tickets live one
	// more, plus a minute of clock slack.
	kept2 := []*ticketKey{s.tkeys[0]}
	for _, tk := range s.tkeys[1:] {
		if nowMS-tk.created < 2*life+time.Minute.Milliseconds() && len(kept2) < 8 {
			kept2 = append(kept2, tk)
		} else {
			changed = true
		}
	}
	s.tkeys = kept2
	return changed, nil
}

func (s *Server) sweep(nowMS int64) {
	s.smu.Lock()
	defer s.smu.Unlock()
	for id, ss := range s.sessions {
		if ss.expires <= nowMS {
			delete(s.sessions, id)
		}
	}
}

// generationFor returns the live generation's key for (id, kem), or the
// error a client should see.
func (s *Server) generationFor(id uint8, kem KEMID) (hpke.PrivateKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, g := range s.gens {
		if g.id == id {
			if k := g.keys[kem]; k != nil {
				return k, nil
			}
			return nil, fmt.Errorf("key %d has no %v key: %w", id, kem, ErrUnknownKey)
		}
	}
	for _, r := range s.retired {
		if r.id == id {
			return nil, fmt.Errorf("key %d: %w", id, ErrRetiredKey)
		}
	}
	return nil, fmt.Errorf("key %d: %w", id, ErrUnknownKey)
}

// openSessionRequest authenticates a session request and derives the
// session secrets from it.
func (s *Server) openSessionRequest(body []byte) (_ *SessionSecrets, keyID uint8, kem KEMID, aead AEADID, err error) {
	fail := func(err error) (*SessionSecrets, uint8, KEMID, AEADID, error) { return nil, 0, 0, 0, err }
	if len(body) < sessionHeaderLen {
		return fail(fmt.Errorf("%w: session request of %d bytes", ErrMalformed, len(body)))
	}
	if body[0] != Version {
		return fail(fmt.Errorf("%w: session request version %d", ErrUnsupported, body[0]))
	}
	keyID = body[1]
	kem = KEMID(binary.BigEndian.Uint16(body[2:]))
	kdf := KDFID(binary.BigEndian.Uint16(body[4:]))
	aead = AEADID(binary.BigEndian.Uint16(body[6:]))
	if kdf != KDFHKDFSHA256 {
		return fail(fmt.Errorf("%w: KDF 0x%04x", ErrUnsupported, uint16(kdf)))
	}
	if !slices.Contains(s.cfg.AEADs, aead) {
		return fail(fmt.Errorf("%w: AEAD 0x%04x is not offered", ErrUnsupported, uint16(aead)))
	}
	priv, err := s.generationFor(keyID, kem)
	if err != nil {
		return fail(err)
	}
	nenc := kem.encLen()
	if len(body) < sessionHeaderLen+nenc+TagLen {
		return fail(fmt.Errorf("%w: session request too short for its KEM", ErrMalformed))
	}
	ha, _ := aead.hpke()
	hdr := body[:sessionHeaderLen]
	rcpt, err := hpke.NewRecipient(body[sessionHeaderLen:sessionHeaderLen+nenc], priv, hpke.HKDFSHA256(), ha, sessionInfo(hdr))
	if err != nil {
		return fail(fmt.Errorf("session request: %w", ErrDecrypt))
	}
	pt, err := rcpt.Open(nil, body[sessionHeaderLen+nenc:])
	if err != nil {
		return fail(fmt.Errorf("session request: %w", ErrDecrypt))
	}
	if len(pt) != 1 || pt[0] != 0 {
		return fail(fmt.Errorf("%w: session options %x", ErrUnsupported, pt))
	}
	secrets, err := deriveSecrets(rcpt, aead)
	if err != nil {
		return fail(err)
	}
	return secrets, keyID, kem, aead, nil
}

// OpenSession handles a session request (media type MediaTypeSession) and
// returns the session response to send back.
func (s *Server) OpenSession(body []byte) ([]byte, SessionInfo, error) {
	secrets, keyID, kem, aead, err := s.openSessionRequest(body)
	if err != nil {
		return nil, SessionInfo{}, err
	}
	now := s.cfg.Now()
	st := &ticketState{keyID: keyID, kem: kem, aead: aead, issued: now.UnixMilli(),
		expires: now.Add(s.cfg.TicketLifetime).UnixMilli(), secrets: *secrets}
	s.mu.RLock()
	stale := now.UnixMilli()-s.tkeys[0].created >= s.cfg.TicketLifetime.Milliseconds()
	s.mu.RUnlock()
	if stale {
		// Maintain has not run since the current ticket key's lifetime
		// ended; a ticket sealed under it could be refused as soon as it
		// does. Rotate first.
		if err := s.Maintain(); err != nil {
			return nil, SessionInfo{}, err
		}
	}
	s.mu.RLock()
	tk := s.tkeys[0]
	s.mu.RUnlock()
	ticket := tk.seal(st)
	if _, err := s.session(st); err != nil {
		return nil, SessionInfo{}, err
	}
	info := SessionInfo{ID: secrets.ID, KeyID: keyID, KEM: kem, AEAD: aead,
		Issued: time.UnixMilli(st.issued), Expires: time.UnixMilli(st.expires)}
	return appendSessionResponse(info.Expires, ticket, secrets.ConfirmKey), info, nil
}

// session returns the replay state of the ticket's session, creating it.
func (s *Server) session(st *ticketState) (*serverSession, error) {
	s.smu.Lock()
	defer s.smu.Unlock()
	ss := s.sessions[st.secrets.ID]
	if ss == nil {
		if st.issued < s.since {
			return nil, ErrStale
		}
		if len(s.sessions) >= s.cfg.MaxSessions {
			now := s.cfg.Now().UnixMilli()
			for id, o := range s.sessions {
				if o.expires <= now {
					delete(s.sessions, id)
				}
			}
			if len(s.sessions) >= s.cfg.MaxSessions {
				return nil, ErrCapacity
			}
		}
		ss = &serverSession{expires: st.expires}
		s.sessions[st.secrets.ID] = ss
	}
	ss.mu.Lock()
	if ss.c2s == nil {
		c2s, s2c, err := st.secrets.keys()
		if err != nil {
			ss.mu.Unlock()
			return nil, err
		}
		ss.c2s, ss.s2c = c2s, s2c
	}
	ss.mu.Unlock()
	return ss, nil
}

func (s *Server) openTicket(b []byte) (*ticketState, error) {
	id, _, _, err := SplitTicket(b)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	var tk *ticketKey
	for _, k := range s.tkeys {
		if k.id == id {
			tk = k
		}
	}
	s.mu.RUnlock()
	if tk == nil {
		return nil, fmt.Errorf("ticket key %d is gone: %w", id, ErrExpired)
	}
	return tk.open(b)
}

// ServerMessage is an authenticated sealed request whose sequence number was
// accepted; its first record is open, the rest are opened as Body is read.
type ServerMessage struct {
	Session SessionInfo
	Seq     uint64
	body    *RecordReader
	s2c     *recordKey
}

// Body returns the Binary HTTP request as a stream of plaintext. A read
// error from it means the rest of the message was tampered with or cut.
func (m *ServerMessage) Body() *RecordReader { return m.body }

// ResponseWriter returns the writer that seals the Binary HTTP response
// into w; Close it to seal the final record.
func (m *ServerMessage) ResponseWriter(w io.Writer) *RecordWriter {
	return newRecordWriter(w, m.s2c, m.Seq)
}

// OpenRequest reads a sealed request's header from r, checks the ticket,
// the key generation, the expiry and the replay window, authenticates the
// first record and only then records the sequence number as seen.
func (s *Server) OpenRequest(r io.Reader) (*ServerMessage, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: sealed request header: %v", ErrMalformed, err)
	}
	if hdr[0] != Version {
		return nil, fmt.Errorf("%w: sealed request version %d", ErrUnsupported, hdr[0])
	}
	n := int(binary.BigEndian.Uint16(hdr[1:]))
	if n < ticketMinLen || n > ticketMaxLen {
		return nil, fmt.Errorf("%w: ticket length %d", ErrMalformed, n)
	}
	buf := make([]byte, n+8)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("%w: sealed request header: %v", ErrMalformed, err)
	}
	st, err := s.openTicket(buf[:n])
	if err != nil {
		return nil, err
	}
	seq := binary.BigEndian.Uint64(buf[n:])
	now := s.cfg.Now().UnixMilli()
	if now >= st.expires {
		return nil, fmt.Errorf("session expired at %s: %w", time.UnixMilli(st.expires).UTC().Format(time.RFC3339), ErrExpired)
	}
	if _, err := s.generationFor(st.keyID, st.kem); err != nil {
		return nil, err
	}
	ss, err := s.session(st)
	if err != nil {
		return nil, err
	}
	ss.mu.Lock()
	ok := ss.window.Check(seq)
	c2s, s2c := ss.c2s, ss.s2c
	ss.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("message %d: %w", seq, ErrReplay)
	}
	body := newRecordReader(r, c2s, seq)
	if err := body.Prime(); err != nil {
		return nil, err
	}
	ss.mu.Lock()
	ok = ss.window.Accept(seq)
	ss.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("message %d: %w", seq, ErrReplay)
	}
	info := SessionInfo{ID: st.secrets.ID, KeyID: st.keyID, KEM: st.kem, AEAD: st.aead,
		Issued: time.UnixMilli(st.issued), Expires: time.UnixMilli(st.expires)}
	return &ServerMessage{Session: info, Seq: seq, body: body, s2c: s2c}, nil
}

// Close saves the replay windows so that sessions survive a restart
// without becoming replayable.
func (s *Server) Close() error {
	if s.cfg.Dir == "" {
		return nil
	}
	return s.saveReplay(s.cfg.Now())
}

// errorsIs is a small helper for tests and callers mapping errors.
func errorsIs(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

func isUnsupported(err error) bool { return errorsIs(err, ErrUnsupported) }
