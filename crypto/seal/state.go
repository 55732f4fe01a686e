package seal

import (
	"crypto/hpke"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// State files inside ServerConfig.Dir.
const (
	keysFile    = "keys.json"
	replayFile  = "replay.bin"
	replayMagic = "SGRPLY01"
)

type stateJSON struct {
	Version     int              `json:"version"`
	Generations []generationJSON `json:"generations"`
	Retired     []retiredJSON    `json:"retired,omitempty"`
	TicketKeys  []ticketKeyJSON  `json:"ticket_keys"`
}

type generationJSON struct {
	ID       uint8     `json:"id"`
	Created  time.Time `json:"created"`
	RetireAt time.Time `json:"retire_at,omitzero"`
	Keys     []keyJSON `json:"keys"`
}

type keyJSON struct {
	KEM     string `json:"kem"`
	Private []byte `json:"private"` // RFC 9180 SerializePrivateKey
}

type retiredJSON struct {
	ID      uint8     `json:"id"`
	KEMs    []string  `json:"kems"`
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired"`
}

type ticketKeyJSON struct {
	ID      uint8  `json:"id"`
	Key     []byte `json:"key"`
	Created int64  `json:"created_ms"`
}

// load reads keys.json, creating the directory when missing.
func (s *Server) load() error {
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("creating seal state dir: %w", err)
	}
	if err := os.Chmod(s.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("securing seal state dir: %w", err)
	}
	path := filepath.Join(s.cfg.Dir, keysFile)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading sealing keys: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("sealing keys %s have mode %04o: readable by others (chmod 600 it, or rotate the keys if they may have leaked)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading sealing keys: %w", err)
	}
	var st stateJSON
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("parsing sealing keys %s: %w", path, err)
	}
	if st.Version != 1 {
		return fmt.Errorf("sealing keys %s: unknown version %d", path, st.Version)
	}
	for _, gj := range st.Generations {
		g := &generation{id: gj.ID, created: gj.Created, retireAt: gj.RetireAt, keys: make(map[KEMID]hpke.PrivateKey)}
		for _, kj := range gj.Keys {
			k, err := ParseKEM(kj.KEM)
			if err != nil {
				return fmt.Errorf("sealing keys %s: generation %d: %w", path, gj.ID, err)
			}
			kem, _ := k.hpke()
			priv, err := kem.NewPrivateKey(kj.Private)
			if err != nil {
				return fmt.Errorf("sealing keys %s: generation %d %v key: %w", path, gj.ID, k, err)
			}
			g.keys[k] = priv
		}
		s.gens = append(s.gens, g)
	}
	for _, rj := range st.Retired {
		r := retiredGen{id: rj.ID, created: rj.Created, retired: rj.Retired}
		for _, n := range rj.KEMs {
			if k, err := ParseKEM(n); err == nil {
				r.kems = append(r.kems, k)
			}
		}
		s.retired = append(s.retired, r)
	}
	for _, tj := range st.TicketKeys {
		tk, err := newTicketKey(tj.ID, tj.Key, tj.Created)
		if err != nil {
			return fmt.Errorf("sealing keys %s: %w", path, err)
		}
		s.tkeys = append(s.tkeys, tk)
	}
	return nil
}

// save writes keys.json atomically at mode 0600.
func (s *Server) save() error {
	if s.cfg.Dir == "" {
		return nil
	}
	st := stateJSON{Version: 1}
	for _, g := range s.gens {
		gj := generationJSON{ID: g.id, Created: g.created.UTC(), RetireAt: g.retireAt.UTC()}
		for _, k := range KEMs {
			if priv := g.keys[k]; priv != nil {
				b, err := priv.Bytes()
				if err != nil {
					return fmt.Errorf("serializing %v key: %w", k, err)
				}
				gj.Keys = append(gj.Keys, keyJSON{KEM: k.String(), Private: b})
			}
		}
		st.Generations = append(st.Generations, gj)
	}
	for _, r := range s.retired {
		rj := retiredJSON{ID: r.id, Created: r.created.UTC(), Retired: r.retired.UTC()}
		for _, k := range r.kems {
			rj.KEMs = append(rj.KEMs, k.String())
		}
		st.Retired = append(st.Retired, rj)
	}
	for _, tk := range s.tkeys {
		st.TicketKeys = append(st.TicketKeys, ticketKeyJSON{ID: tk.id, Key: tk.key, Created: tk.created})
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.cfg.Dir, keysFile), b)
}

// writeFileAtomic replaces path with b through a synced 0600 temporary file.
func writeFileAtomic(path string, b []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// replay.bin: magic, since (unix ms), then per session: id, expires (unix
// ms), top, bitmap words — all big-endian.
const replayEntryLen = SessionIDLen + 8 + 8 + 8*replayWords

func (s *Server) saveReplay(now time.Time) error {
	s.smu.Lock()
	b := []byte(replayMagic)
	b = binary.BigEndian.AppendUint64(b, uint64(s.since))
	nowMS := now.UnixMilli()
	for id, ss := range s.sessions {
		ss.mu.Lock()
		if ss.expires > nowMS {
			b = append(b, id[:]...)
			b = binary.BigEndian.AppendUint64(b, uint64(ss.expires))
			b = binary.BigEndian.AppendUint64(b, ss.window.top)
			for _, w := range ss.window.bitmap {
				b = binary.BigEndian.AppendUint64(b, w)
			}
		}
		ss.mu.Unlock()
	}
	s.smu.Unlock()
	return writeFileAtomic(filepath.Join(s.cfg.Dir, replayFile), b)
}

// loadReplay restores the windows saved by Close and deletes the file, so
// that after a crash (no fresh file) older sessions are refused as stale
// instead of becoming replayable.
func (s *Server) loadReplay(now time.Time) error {
	path := filepath.Join(s.cfg.Dir, replayFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading replay state: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing replay state after reading it: %w", err)
	}
	if len(b) < len(replayMagic)+8 || string(b[:len(replayMagic)]) != replayMagic || (len(b)-len(replayMagic)-8)%replayEntryLen != 0 {
		return nil // unreadable: keep since = now, older sessions reopen
	}
	s.since = int64(binary.BigEndian.Uint64(b[len(replayMagic):]))
	nowMS := now.UnixMilli()
	for p := b[len(replayMagic)+8:]; len(p) > 0; p = p[replayEntryLen:] {
		var id [SessionIDLen]byte
		copy(id[:], p)
		ss := &serverSession{expires: int64(binary.BigEndian.Uint64(p[SessionIDLen:]))}
		ss.window.top = binary.BigEndian.Uint64(p[SessionIDLen+8:])
		for i := range ss.window.bitmap {
			ss.window.bitmap[i] = binary.BigEndian.Uint64(p[SessionIDLen+16+8*i:])
		}
		if ss.expires > nowMS && len(s.sessions) < s.cfg.MaxSessions {
			s.sessions[id] = ss
		}
	}
	return nil
}
