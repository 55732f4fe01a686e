package audit

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestEventLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := New(Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Event(KindBlockAdd, slog.String("prefix", "192.0.2.1/32"), slog.Duration("ttl", time.Hour), slog.String("reason", "alert:enumeration"))
	l.Event(KindReload, slog.Bool("ok", true), slog.String("config_sha256", "abc"))
	l.Event("") // ignored

	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2", len(lines))
	}
	tests := []struct {
		name string
		line map[string]any
		kind string
		key  string
		want any
	}{
		{"block_add", lines[0], KindBlockAdd, "prefix", "192.0.2.1/32"},
		{"reload", lines[1], KindReload, "ok", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.line["kind"] != tt.kind {
				t.Errorf("kind = %v, want %s", tt.line["kind"], tt.kind)
			}
			ts, ok := tt.line["time"].(string)
			if !ok {
				t.Fatalf("time missing: %v", tt.line)
			}
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
				t.Errorf("time %q: %v", ts, err)
			}
			if tt.line[tt.key] != tt.want {
				t.Errorf("%s = %v, want %v", tt.key, tt.line[tt.key], tt.want)
			}
			if _, ok := tt.line["level"]; ok {
				t.Errorf("level should not be written: %v", tt.line)
			}
		})
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("mode %v, want at most 0640", perm)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := New(Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Event(KindAttach, slog.String("interface", "eth0"))
	rotated := filepath.Join(dir, "audit.log.1")
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	l.Event(KindDetach, slog.String("interface", "eth0")) // still the old (renamed) file
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Event(KindKeyRotate, slog.String("key_id", "7"))

	old := readLines(t, rotated)
	if len(old) != 2 || old[0]["kind"] != KindAttach || old[1]["kind"] != KindDetach {
		t.Errorf("rotated file = %v", old)
	}
	cur := readLines(t, path)
	if len(cur) != 1 || cur[0]["kind"] != KindKeyRotate {
		t.Errorf("new file = %v", cur)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"relative", Config{Path: "audit.log"}, "audit.path"},
		{"missing dir", Config{Path: "/nonexistent-sealgate-dir/audit.log"}, "audit.path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want mention of %q", err, tt.want)
			}
		})
	}
}

func TestNilAndClosed(t *testing.T) {
	var l *Log
	l.Event(KindReload) // must not panic
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := New(Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Event(KindReload) // dropped, reported to the logger, no panic
	if got := readLines(t, path); len(got) != 0 {
		t.Errorf("event written after Close: %v", got)
	}
}

func BenchmarkEvent(b *testing.B) {
	l, err := New(Config{Path: filepath.Join(b.TempDir(), "audit.log")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ReportAllocs()
	for b.Loop() {
		l.Event(KindWAFBlock, slog.String("route", "orders"), slog.String("rules", "942100"))
	}
}

func TestConfigDecodesStrictly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	doc := "[audit]\npath = \"" + path + "\"\n"
	var cfg struct {
		Audit Config `toml:"audit"`
	}
	if err := toml.NewDecoder(strings.NewReader(doc)).DisallowUnknownFields().Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	l, err := New(cfg.Audit, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Event(KindReload)
	if got := readLines(t, path); len(got) != 1 {
		t.Fatalf("lines %v", got)
	}
	if err := toml.NewDecoder(strings.NewReader("[audit]\nfile = \"x\"\n")).DisallowUnknownFields().Decode(&cfg); err == nil {
		t.Fatal("unknown key accepted")
	}
}
