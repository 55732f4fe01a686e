package systemd

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// tmpfilesLine is one line of a tmpfiles.d file.
type tmpfilesLine struct {
	typ, path   string
	mode        fs.FileMode
	user, group string
}

// parseTmpfiles reads the tmpfiles.d lines sealgate uses (types d and z, octal modes).
func parseTmpfiles(text string) ([]tmpfilesLine, error) {
	var out []tmpfilesLine
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 5 || len(f) > 7 {
			return nil, fmt.Errorf("line %d: want Type Path Mode User Group [Age [Argument]], got %d fields", n, len(f))
		}
		if f[0] != "d" && f[0] != "z" {
			return nil, fmt.Errorf("line %d: type %q not used by sealgate (d or z)", n, f[0])
		}
		if !filepath.IsAbs(f[1]) || filepath.Clean(f[1]) != f[1] {
			return nil, fmt.Errorf("line %d: path %q must be absolute and clean", n, f[1])
		}
		mode, err := strconv.ParseUint(f[2], 8, 32)
		if err != nil || len(f[2]) != 4 || mode > 0o777 {
			return nil, fmt.Errorf("line %d: mode %q: want four octal digits without special bits", n, f[2])
		}
		out = append(out, tmpfilesLine{typ: f[0], path: f[1], mode: fs.FileMode(mode), user: f[3], group: f[4]})
	}
	return out, sc.Err()
}

// tmpfilesEntry returns the line for path, or fails the test.
func tmpfilesEntry(t *testing.T, lines []tmpfilesLine, path string) tmpfilesLine {
	t.Helper()
	for _, l := range lines {
		if l.path == path {
			return l
		}
	}
	t.Fatalf("tmpfiles.d/sealgate.conf has no line for %s", path)
	return tmpfilesLine{}
}

func TestParseTmpfiles(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    int
		wantErr bool
	}{
		{name: "shipped", text: Tmpfiles, want: 5},
		{name: "comment and blank", text: "# x\n\nd /a 0700 u g - -\n", want: 1},
		{name: "relative path", text: "d a 0700 u g -\n", wantErr: true},
		{name: "unclean path", text: "d /a/../b 0700 u g -\n", wantErr: true},
		{name: "decimal mode", text: "d /a 700 u g -\n", wantErr: true},
		{name: "setuid mode", text: "d /a 4755 u g -\n", wantErr: true},
		{name: "unknown type", text: "R /a 0700 u g -\n", wantErr: true},
		{name: "too few fields", text: "d /a 0700\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTmpfiles(tt.text)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseTmpfiles error = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && len(got) != tt.want {
				t.Errorf("parseTmpfiles returned %d lines, want %d", len(got), tt.want)
			}
		})
	}
}

// packageFile returns the absolute path of a file shipped in this directory.
func packageFile(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSysusersDryRun(t *testing.T) {
	sysusers := requireTool(t, "systemd-sysusers")
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sysusers, "--dry-run", "--root="+root, packageFile(t, "sysusers.d/sealgate.conf"))
	cmd.Env = systemdEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-sysusers --dry-run: %v\n%s", err, out)
	}
	for _, want := range []string{"Creating group 'sealgate'", "Creating user 'sealgate'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sysusers output lacks %q:\n%s", want, out)
		}
	}
}

// passwdEntry returns uid, gid, home and shell of name from an /etc/passwd file.
func passwdEntry(t *testing.T, path, name string) (uid, gid int, home, shell string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) == 7 && f[0] == name {
			uid, err1 := strconv.Atoi(f[2])
			gid, err2 := strconv.Atoi(f[3])
			if err1 != nil || err2 != nil {
				t.Fatalf("bad passwd line %q", line)
			}
			return uid, gid, f[5], f[6]
		}
	}
	t.Fatalf("%s has no user %s:\n%s", path, name, data)
	return
}

// TestSysusersTmpfilesApply runs both tools for real against a scratch root, as the
// post-install step and boot do, and checks the account and every mode the unit relies on.
func TestSysusersTmpfilesApply(t *testing.T) {
	sysusers := requireTool(t, "systemd-sysusers")
	tmpfiles := requireTool(t, "systemd-tmpfiles")
	requireRoot(t, "systemd-tmpfiles chowns files to the sealgate user")

	root := t.TempDir()
	// run fails on an error exit, and on any output when quiet (tmpfiles prints only problems).
	run := func(quiet bool, name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = systemdEnv()
		if out, err := cmd.CombinedOutput(); err != nil || (quiet && len(out) > 0) {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
	}
	// What the host looks like before tmpfiles: PID 1's bpffs at 0700 and a config file
	// installed with a default umask.
	for _, d := range []string{"etc/sealgate", "sys/fs/bpf"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "sys/fs/bpf"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/sealgate/sealgate.toml"), []byte(DefaultConfig), 0o644); err != nil {
		t.Fatal(err)
	}

	run(false, sysusers, "--root="+root, packageFile(t, "sysusers.d/sealgate.conf"))
	uid, gid, home, shell := passwdEntry(t, filepath.Join(root, "etc/passwd"), "sealgate")
	if uid == 0 || uid >= 1000 || gid == 0 {
		t.Errorf("sealgate uid %d gid %d: want a system account (1..999)", uid, gid)
	}
	if shell != "/usr/sbin/nologin" || home != "/" {
		t.Errorf("sealgate home %q shell %q, want / and /usr/sbin/nologin", home, shell)
	}

	apply := func() { run(true, tmpfiles, "--create", "--root="+root, packageFile(t, "tmpfiles.d/sealgate.conf")) }
	apply()

	tests := []struct {
		path     string
		mode     fs.FileMode
		uid, gid int
	}{
		{"etc/sealgate", fs.ModeDir | 0o750, 0, gid},
		{"etc/sealgate/sealgate.toml", 0o640, 0, gid},
		{"var/lib/sealgate", fs.ModeDir | 0o700, uid, gid},
		{"sys/fs/bpf", fs.ModeDir | 0o711, 0, 0},
		{"sys/fs/bpf/sealgate", fs.ModeDir | 0o700, uid, gid},
	}
	check := func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.path, func(t *testing.T) {
				fi, err := os.Stat(filepath.Join(root, tt.path))
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if fi.Mode() != tt.mode || int(st.Uid) != tt.uid || int(st.Gid) != tt.gid {
					t.Errorf("/%s: %v %d:%d, want %v %d:%d", tt.path, fi.Mode(), st.Uid, st.Gid, tt.mode, tt.uid, tt.gid)
				}
			})
		}
	}
	t.Run("first boot", check)

	// `sealgate run --cleanup` removes the pin directory; ExecStartPre=+ reruns tmpfiles.
	if err := os.Remove(filepath.Join(root, "sys/fs/bpf/sealgate")); err != nil {
		t.Fatal(err)
	}
	apply()
	t.Run("after cleanup", check)
}
