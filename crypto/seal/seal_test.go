package seal

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var allAEADs = []AEADID{AEADAES128GCM, AEADAES256GCM, AEADChaCha20Poly1305}

func TestRoundTripEveryKEMAndAEAD(t *testing.T) {
	c := newClock()
	s := newTestServer(t, "", c)
	for _, kem := range KEMs {
		for _, aead := range allAEADs {
			t.Run(kem.String()+"/"+aead.String(), func(t *testing.T) {
				cs := openTestSession(t, s, kem, aead)
				if cs.AEAD != aead || cs.KEM != kem {
					t.Fatalf("session uses %v/%v", cs.KEM, cs.AEAD)
				}
				plain := bytes.Repeat([]byte("customer data "), 5000) // 70 KB: 5 records
				seq := cs.NextSeq()
				m, got, err := serverRead(s, sealMessage(t, cs, seq, plain))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, plain) {
					t.Fatal("request plaintext differs")
				}
				if m.Body().Records() != 5 {
					t.Errorf("%d records, want 5", m.Body().Records())
				}
				var resp bytes.Buffer
				rw := m.ResponseWriter(&resp)
				rw.Write([]byte("response"))
				rw.Close()
				back, err := io.ReadAll(cs.OpenResponse(bytes.NewReader(resp.Bytes()), seq))
				if err != nil || string(back) != "response" {
					t.Fatalf("response: %q, %v", back, err)
				}
			})
		}
	}
}

func TestTamperEveryByte(t *testing.T) {
	c := newClock()
	s := newTestServer(t, "", c)
	cs := openTestSession(t, s, KEMX25519, AEADAES128GCM)
	plain := []byte(strings.Repeat("secret payload ", 20))
	ref := sealMessage(t, cs, 1, plain, 100, 100)
	if _, got, err := serverRead(s, ref); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("untampered message: %v", err)
	}
	for i := range ref {
		seq := uint64(i + 2)
		msg := sealMessage(t, cs, seq, plain, 100, 100)
		msg[i] ^= 0x01
		if _, _, err := serverRead(s, msg); err == nil {
			t.Fatalf("flipping byte %d of %d was accepted", i, len(msg))
		}
	}
}

func TestRecordManipulation(t *testing.T) {
	c := newClock()
	s := newTestServer(t, "", c)
	cs := openTestSession(t, s, KEMX25519, AEADChaCha20Poly1305)
	other := openTestSession(t, s, KEMX25519, AEADChaCha20Poly1305)
	plain := bytes.Repeat([]byte("0123456789"), 30)
	seq := uint64(100)
	next := func() uint64 { seq++; return seq }
	split := func(cs *ClientSession, seq uint64) ([]byte, [][]byte) {
		m := sealMessage(t, cs, seq, plain, 100, 100)
		h := headerLen(cs)
		return m[:h], records(t, m[h:])
	}
	join := func(h []byte, recs ...[]byte) []byte { return bytes.Join(append([][]byte{h}, recs...), nil) }
	tests := []struct {
		name  string
		build func() []byte
		want  error
	}{
		{"truncate after first record", func() []byte { h, r := split(cs, next()); return join(h, r[0]) }, ErrTruncated},
		{"truncate before final record", func() []byte { h, r := split(cs, next()); return join(h, r[0], r[1]) }, ErrTruncated},
		{"truncate inside a record", func() []byte { h, r := split(cs, next()); return join(h, r[0], r[1], r[2][:10]) }, ErrTruncated},
		{"no records", func() []byte { h, _ := split(cs, next()); return h }, ErrTruncated},
		{"reorder records", func() []byte { h, r := split(cs, next()); return join(h, r[1], r[0], r[2]) }, ErrDecrypt},
		{"duplicate a record", func() []byte { h, r := split(cs, next()); return join(h, r[0], r[0], r[1], r[2]) }, ErrDecrypt},
		{"drop a middle record", func() []byte { h, r := split(cs, next()); return join(h, r[0], r[2]) }, ErrDecrypt},
		{"record after final", func() []byte { h, r := split(cs, next()); return join(h, r[0], r[1], r[2], r[2]) }, ErrMalformed},
		{"final flag moved", func() []byte {
			h, r := split(cs, next())
			r1 := bytes.Clone(r[1])
			r1[0] = flagFinal
			return join(h, r[0], r1)
		}, ErrDecrypt},
		{"splice between messages", func() []byte {
			h1, r1 := split(cs, next())
			_, r2 := split(cs, next())
			return join(h1, r1[0], r2[1], r1[2])
		}, ErrDecrypt},
		{"splice between sessions", func() []byte {
			h1, r1 := split(cs, next())
			_, r2 := split(other, seq)
			return join(h1, r1[0], r2[1], r1[2])
		}, ErrDecrypt},
		{"ticket of another session", func() []byte {
			_, r1 := split(cs, next())
			h2, _ := split(other, seq)
			return join(h2, r1...)
		}, ErrDecrypt},
		{"response sent as request", func() []byte {
			sq := next()
			m, _, err := serverRead(s, sealMessage(t, cs, sq, plain))
			if err != nil {
				t.Fatal(err)
			}
			var resp bytes.Buffer
			rw := m.ResponseWriter(&resp)
			rw.Write(plain)
			rw.Close()
			h, _ := split(cs, next())
			// Same sequence number as the response, so only the direction differs.
			h = h[:len(h)-8]
			h = append(bytes.Clone(h), sealMessage(t, cs, sq, nil)[headerLen(cs)-8:headerLen(cs)]...)
			return append(h, resp.Bytes()...)
		}, ErrReplay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := serverRead(s, tt.build())
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("request read as response", func(t *testing.T) {
		sq := next()
		msg := sealMessage(t, cs, sq, plain)
		_, err := io.ReadAll(cs.OpenResponse(bytes.NewReader(msg[headerLen(cs):]), sq))
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("err = %v, want ErrDecrypt", err)
		}
	})
	t.Run("response to another message", func(t *testing.T) {
		sq := next()
		m, _, err := serverRead(s, sealMessage(t, cs, sq, plain))
		if err != nil {
			t.Fatal(err)
		}
		var resp bytes.Buffer
		rw := m.ResponseWriter(&resp)
		rw.Write(plain)
		rw.Close()
		if _, err := io.ReadAll(cs.OpenResponse(bytes.NewReader(resp.Bytes()), sq+1)); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("err = %v, want ErrDecrypt", err)
		}
	})
}

func TestDirectionSwapFreshSeq(t *testing.T) {
	// A response replayed as a request under a sequence number the server
	// has not seen fails authentication rather than the replay check.
	c := newClock()
	s := newTestServer(t, "", c)
	cs := openTestSession(t, s, KEMX25519, AEADAES128GCM)
	m, _, err := serverRead(s, sealMessage(t, cs, 1, []byte("hi")))
	if err != nil {
		t.Fatal(err)
	}
	var resp bytes.Buffer
	rw := m.ResponseWriter(&resp)
	rw.Write([]byte("hello"))
	rw.Close()
	// Build a request header for seq 1 in a fresh server that has no window.
	s2 := s
	s2.smu.Lock()
	delete(s2.sessions, cs.ID)
	s2.smu.Unlock()
	h := sealMessage(t, cs, 1, nil)[:headerLen(cs)]
	_, _, err = serverRead(s2, append(bytes.Clone(h), resp.Bytes()...))
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("err = %v, want ErrDecrypt", err)
	}
}

func TestReplay(t *testing.T) {
	c := newClock()
	s := newTestServer(t, "", c)
	cs := openTestSession(t, s, KEMX25519, AEADAES128GCM)
	send := func(seq uint64) error {
		_, _, err := serverRead(s, sealMessage(t, cs, seq, []byte("x")))
		return err
	}
	steps := []struct {
		name string
		seq  uint64
		ok   bool
	}{
		{"first", 1, true},
		{"replay of first", 1, false},
		{"jump ahead", 5000, true},
		{"out of order inside window", 5000 - ReplayWindowSize + 1, true},
		{"replay inside window", 5000 - ReplayWindowSize + 1, false},
		{"just beyond window", 5000 - ReplayWindowSize, false},
		{"far behind", 2, false},
		{"zero", 0, false},
		{"next", 5001, true},
		{"replay of top", 5001, false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var err error
			if st.seq == 0 {
				_, err = cs.SealRequest(io.Discard, 0)
			} else {
				err = send(st.seq)
			}
			if st.ok && err != nil {
				t.Fatalf("seq %d refused: %v", st.seq, err)
			}
			if !st.ok && err == nil {
				t.Fatalf("seq %d accepted", st.seq)
			}
			if !st.ok && st.seq != 0 && !errors.Is(err, ErrReplay) {
				t.Fatalf("seq %d: err = %v, want ErrReplay", st.seq, err)
			}
		})
	}
}

func TestForgedSeqDoesNotAdvanceWindow(t *testing.T) {
	c := newClock()
	s := newTestServer(t, "", c)
	cs := openTestSession(t, s, KEMX25519, AEADAES128GCM)
	msg := sealMessage(t, cs, 1, []byte("x"))
	h := headerLen(cs)
	msg[h-1] = 0xff // seq 255 with records sealed for seq 1
	if _, _, err := serverRead(s, msg); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("err = %v, want ErrDecrypt", err)
	}
	if _, _, err := serverRead(s, sealMessage(t, cs, 1, []byte("x"))); err != nil {
		t.Fatalf("genuine seq 1 refused after a forgery: %v", err)
	}
}

func TestTicketExpiry(t *testing.T) {
	c := newClock()
	s := newTestServer(t, "", c)
	cs := openTestSession(t, s, KEMX25519, AEADAES128GCM)
	if _, _, err := serverRead(s, sealMessage(t, cs, 1, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	if _, _, err := serverRead(s, sealMessage(t, cs, 2, []byte("x"))); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired ticket: err = %v", err)
	}
	// Once the ticket key itself is gone the ticket cannot even be opened.
	c.Advance(2 * time.Hour)
	if err := s.Maintain(); err != nil {
		t.Fatal(err)
	}
	if err := s.Maintain(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := serverRead(s, sealMessage(t, cs, 3, []byte("x"))); !errors.Is(err, ErrExpired) {
		t.Fatalf("ticket key gone: err = %v", err)
	}
}

func TestKeyIDs(t *testing.T) {
	c := newClock()
	s := newTestServer(t, "", c)
	cfg := configFor(t, s, KEMX25519)
	old := openTestSession(t, s, KEMX25519, AEADAES128GCM)

	t.Run("unknown key id", func(t *testing.T) {
		bad := cfg
		bad.ID = cfg.ID + 100
		req, _, err := NewSessionRequest(bad, AEADAES128GCM)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.OpenSession(req); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("err = %v, want ErrUnknownKey", err)
		}
	})
	t.Run("previous key still works during grace", func(t *testing.T) {
		if _, err := s.Rotate(); err != nil {
			t.Fatal(err)
		}
		if configFor(t, s, KEMX25519).ID == cfg.ID {
			t.Fatal("rotation kept the key id")
		}
		req, pending, _ := NewSessionRequest(cfg, AEADAES128GCM)
		resp, _, err := s.OpenSession(req)
		if err != nil {
			t.Fatalf("previous key refused during grace: %v", err)
		}
		if _, err := pending.Finish(resp); err != nil {
			t.Fatal(err)
		}
		if _, _, err := serverRead(s, sealMessage(t, old, 1, []byte("x"))); err != nil {
			t.Fatalf("session on previous key refused during grace: %v", err)
		}
	})
	t.Run("retired key id", func(t *testing.T) {
		c.Advance(2*time.Hour + time.Second)
		if err := s.Maintain(); err != nil {
			t.Fatal(err)
		}
		req, _, _ := NewSessionRequest(cfg, AEADAES128GCM)
		if _, _, err := s.OpenSession(req); !errors.Is(err, ErrRetiredKey) {
			t.Fatalf("err = %v, want ErrRetiredKey", err)
		}
		states := map[uint8]string{}
		for _, k := range s.Keys() {
			states[k.ID] = k.State
		}
		if states[cfg.ID] != KeyRetired {
			t.Fatalf("key %d state %q, want retired", cfg.ID, states[cfg.ID])
		}
	})
	t.Run("unsupported AEAD", func(t *testing.T) {
		cur := configFor(t, s, KEMX25519)
		cur.Algorithms = append(cur.Algorithms, SymmetricAlgorithm{KDFHKDFSHA256, 0x00ff})
		if _, _, err := NewSessionRequest(cur, 0x00ff); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("err = %v, want ErrUnsupported", err)
		}
	})
}

func TestRetiredKeyKillsItsSessions(t *testing.T) {
	c := newClock()
	s, err := NewServer(ServerConfig{TicketLifetime: 10 * time.Hour, KeyGrace: time.Hour, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	cs := openTestSession(t, s, KEMP256, AEADAES256GCM)
	s.Rotate()
	c.Advance(time.Hour)
	s.Maintain()
	if _, _, err := serverRead(s, sealMessage(t, cs, 1, []byte("x"))); !errors.Is(err, ErrRetiredKey) {
		t.Fatalf("err = %v, want ErrRetiredKey", err)
	}
}

func TestScheduledRotation(t *testing.T) {
	c := newClock()
	s, err := NewServer(ServerConfig{KeyRotation: 24 * time.Hour, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	first := s.Keys()[0].ID
	c.Advance(23 * time.Hour)
	s.Maintain()
	if s.Keys()[0].ID != first {
		t.Fatal("rotated early")
	}
	c.Advance(time.Hour)
	s.Maintain()
	keys := s.Keys()
	if keys[0].ID == first || keys[0].State != KeyCurrent || keys[1].ID != first || keys[1].State != KeyPrevious {
		t.Fatalf("after 24h: %+v", keys)
	}
}

func TestStatePersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "seal")
	c := newClock()
	s := newTestServer(t, dir, c)
	cs := openTestSession(t, s, KEMMLKEM768X25519, AEADAES128GCM)
	if _, _, err := serverRead(s, sealMessage(t, cs, 1, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{keysFile, replayFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %04o, want 0600", name, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %04o, want 0700", fi.Mode().Perm())
	}

	t.Run("graceful restart keeps sessions and windows", func(t *testing.T) {
		s2 := newTestServer(t, dir, c)
		if _, _, err := serverRead(s2, sealMessage(t, cs, 1, []byte("x"))); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay after restart: err = %v", err)
		}
		if _, _, err := serverRead(s2, sealMessage(t, cs, 2, []byte("x"))); err != nil {
			t.Fatalf("session did not survive restart: %v", err)
		}
		// s2 is dropped without Close, as in a crash.
	})
	t.Run("after a crash older sessions are stale", func(t *testing.T) {
		c.Advance(time.Second)
		s3 := newTestServer(t, dir, c)
		if _, _, err := serverRead(s3, sealMessage(t, cs, 3, []byte("x"))); !errors.Is(err, ErrStale) {
			t.Fatalf("err = %v, want ErrStale", err)
		}
		cs2 := openTestSession(t, s3, KEMX25519, AEADAES128GCM)
		if _, _, err := serverRead(s3, sealMessage(t, cs2, 1, []byte("x"))); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("keys are loaded, never listed", func(t *testing.T) {
		raw, _ := os.ReadFile(filepath.Join(dir, keysFile))
		var st stateJSON
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		listed, _ := json.Marshal(s.Keys())
		for _, g := range st.Generations {
			for _, k := range g.Keys {
				enc, _ := json.Marshal(k.Private)
				if bytes.Contains(listed, enc[1:len(enc)-1]) {
					t.Fatal("Keys() exposes key material")
				}
			}
		}
	})
	t.Run("world-readable key file refused", func(t *testing.T) {
		os.Chmod(filepath.Join(dir, keysFile), 0o644)
		defer os.Chmod(filepath.Join(dir, keysFile), 0o600)
		if _, err := NewServer(ServerConfig{Dir: dir}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestSessionConfirmation(t *testing.T) {
	c := newClock()
	s := newTestServer(t, "", c)
	req, pending, err := NewSessionRequest(configFor(t, s, KEMX25519), AEADAES128GCM)
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err := s.OpenSession(req)
	if err != nil {
		t.Fatal(err)
	}
	for i := range resp {
		bad := bytes.Clone(resp)
		bad[i] ^= 0x80
		if _, err := pending.Finish(bad); err == nil {
			t.Fatalf("session response with byte %d flipped accepted", i)
		}
	}
	for i := range req {
		bad := bytes.Clone(req)
		bad[i] ^= 0x80
		if _, _, err := s.OpenSession(bad); err == nil {
			t.Fatalf("session request with byte %d flipped accepted", i)
		}
	}
}

func TestCapacity(t *testing.T) {
	c := newClock()
	s, err := NewServer(ServerConfig{MaxSessions: 2, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	openTestSession(t, s, KEMX25519, AEADAES128GCM)
	openTestSession(t, s, KEMX25519, AEADAES128GCM)
	req, _, _ := NewSessionRequest(configFor(t, s, KEMX25519), AEADAES128GCM)
	if _, _, err := s.OpenSession(req); !errors.Is(err, ErrCapacity) {
		t.Fatalf("err = %v, want ErrCapacity", err)
	}
	c.Advance(time.Hour)
	if _, _, err := s.OpenSession(req); err != nil {
		t.Fatalf("expired sessions not reclaimed: %v", err)
	}
}

func TestRecordZeroAllocs(t *testing.T) {
	c := newClock()
	s := newTestServer(t, "", c)
	cs := openTestSession(t, s, KEMX25519, AEADAES128GCM)
	var sealer RecordSealer
	sealer.c.init(cs.c2s, 1)
	var opener RecordOpener
	opener.c.init(cs.c2s, 1)
	pt := make([]byte, MaxRecordPlaintext)
	buf := make([]byte, MaxRecordLen)
	allocs := testing.AllocsPerRun(100, func() {
		opener.c.index = sealer.c.index
		rec, err := sealer.Seal(buf[:0], pt, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := opener.Open(rec); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per record, want 0", allocs)
	}
}

func TestKeyConfigParsing(t *testing.T) {
	c := newClock()
	s := newTestServer(t, "", c)
	cs, err := ParseKeyConfigs(s.KeyConfigs())
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 {
		t.Fatalf("%d key configs, want 3", len(cs))
	}
	for _, cfg := range cs {
		if len(cfg.Algorithms) != 3 || cfg.Algorithms[0].KDF != KDFHKDFSHA256 {
			t.Errorf("config %v: algorithms %v", cfg.KEM, cfg.Algorithms)
		}
	}
	bad := [][]byte{{0}, {0, 5, 1, 2}, s.KeyConfigs()[:40]}
	for i, b := range bad {
		if _, err := ParseKeyConfigs(b); err == nil {
			t.Errorf("case %d accepted", i)
		}
	}
}

func FuzzRecordReader(f *testing.F) {
	c := newClock()
	s := newTestServer(f, "", c)
	cs := openTestSession(f, s, KEMX25519, AEADAES128GCM)
	good := sealMessage(f, cs, 1, []byte("hello records"), 5)
	f.Add(good[headerLen(cs):])
	f.Add([]byte{1, 0, 16})
	f.Fuzz(func(t *testing.T, b []byte) {
		rr := newRecordReader(bytes.NewReader(b), cs.c2s, 1)
		got, err := io.ReadAll(rr)
		if err == nil && !bytes.Equal(got, []byte("hello records")) {
			t.Fatalf("forged plaintext %q accepted", got)
		}
	})
}

func FuzzOpenRequest(f *testing.F) {
	c := newClock()
	s := newTestServer(f, "", c)
	cs := openTestSession(f, s, KEMX25519, AEADAES128GCM)
	f.Add(sealMessage(f, cs, 1, []byte("x")))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := s.OpenRequest(bytes.NewReader(b))
		if err == nil {
			io.ReadAll(m.Body())
		}
	})
}

func FuzzTicket(f *testing.F) {
	c := newClock()
	s := newTestServer(f, "", c)
	cs := openTestSession(f, s, KEMX25519, AEADAES128GCM)
	f.Add(cs.Ticket())
	st, _ := s.openTicket(cs.Ticket())
	f.Add(st.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if st, err := parseTicketState(b); err == nil {
			if !bytes.Equal(st.marshal(), b) {
				t.Fatal("ticket state does not re-encode")
			}
		}
		if _, err := s.openTicket(b); err == nil && !bytes.Equal(b, cs.Ticket()) {
			t.Fatal("forged ticket accepted")
		}
	})
}

func FuzzOpenSession(f *testing.F) {
	c := newClock()
	s := newTestServer(f, "", c)
	req, _, _ := NewSessionRequest(configFor(f, s, KEMX25519), AEADAES128GCM)
	f.Add(req)
	f.Fuzz(func(t *testing.T, b []byte) {
		s.OpenSession(b)
	})
}
