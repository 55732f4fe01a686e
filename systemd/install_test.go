package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstall runs `make install` into a DESTDIR twice: every file lands
// where systemd looks for it, the unit's ExecStart follows PREFIX, and an
// existing config is never overwritten.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		if os.Getenv("SEALGATE_PRIVILEGED_TESTS") == "1" {
			t.Fatal("make not installed")
		}
		t.Skip("make not installed")
	}
	dest := t.TempDir()
	install := func() string {
		t.Helper()
		out, err := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/usr").CombinedOutput()
		if err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
		return string(out)
	}
	install()
	for path, mode := range map[string]os.FileMode{
		"usr/bin/sealgate":                        0o755,
		"usr/lib/systemd/system/sealgate.service": 0o644,
		"usr/lib/sysusers.d/sealgate.conf":        0o644,
		"usr/lib/tmpfiles.d/sealgate.conf":        0o644,
		"etc/sealgate/sealgate.toml":              0o640,
	} {
		st, err := os.Stat(filepath.Join(dest, path))
		if err != nil {
			t.Errorf("%s not installed: %v", path, err)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %o, want %o", path, st.Mode().Perm(), mode)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/sealgate.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/sealgate run") {
		t.Error("ExecStart does not follow PREFIX")
	}
	cfg := filepath.Join(dest, "etc/sealgate/sealgate.toml")
	os.WriteFile(cfg, []byte("# operator's edits\n"), 0o640)
	if out := install(); !strings.Contains(out, "keeping existing") {
		t.Errorf("second install did not say it kept the config:\n%s", out)
	}
	if b, _ := os.ReadFile(cfg); string(b) != "# operator's edits\n" {
		t.Fatal("make install overwrote an existing config")
	}
}
