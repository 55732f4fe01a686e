package seal

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"
)

// clock is a settable test clock.
type clock = testutil.Clock

func newClock() *clock { return testutil.NewClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)) }

func newTestServer(t testing.TB, dir string, c *clock) *Server {
	t.Helper()
	s, err := NewServer(ServerConfig{Dir: dir, TicketLifetime: time.Hour, KeyGrace: 2 * time.Hour, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// configFor returns the server's key configuration for kem.
func configFor(t testing.TB, s *Server, kem KEMID) KeyConfig {
	t.Helper()
	cs, err := ParseKeyConfigs(s.KeyConfigs())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.KEM == kem {
			return c
		}
	}
	t.Fatalf("no key config for %v", kem)
	return KeyConfig{}
}

func openTestSession(t testing.TB, s *Server, kem KEMID, aead AEADID) *ClientSession {
	t.Helper()
	req, pending, err := NewSessionRequest(configFor(t, s, kem), aead)
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err := s.OpenSession(req)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := pending.Finish(resp)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// sealMessage seals plaintext as message seq, cutting a record after each
// of the given sizes (the rest goes into the final record).
func sealMessage(t testing.TB, cs *ClientSession, seq uint64, plaintext []byte, cuts ...int) []byte {
	t.Helper()
	var buf bytes.Buffer
	rw, err := cs.SealRequest(&buf, seq)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range cuts {
		rw.Write(plaintext[:n])
		plaintext = plaintext[n:]
		if err := rw.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	rw.Write(plaintext)
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// serverRead opens a sealed request and reads its whole plaintext.
func serverRead(s *Server, body []byte) (*ServerMessage, []byte, error) {
	m, err := s.OpenRequest(bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	pt, err := io.ReadAll(m.Body())
	return m, pt, err
}

// records splits the record part of a sealed message into records.
func records(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		if len(b) < RecordHeaderLen {
			t.Fatal("stray bytes")
		}
		n := RecordHeaderLen + int(b[1])<<8 | int(b[2])
		n = RecordHeaderLen + (int(b[1])<<8 | int(b[2]))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func headerLen(cs *ClientSession) int { return 3 + len(cs.ticket) + 8 }
