package systemd

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// strict reports whether CI asked for every privileged and tool-dependent test to run
// (SEALGATE_PRIVILEGED_TESTS=1): then a missing tool or missing root is a failure.
func strict() bool { return os.Getenv("SEALGATE_PRIVILEGED_TESTS") == "1" }

// requireTool returns the path of a systemd tool, or skips (fails under strict) without it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if strict() {
			t.Fatalf("%s not found but SEALGATE_PRIVILEGED_TESTS=1: install it (apt-get install systemd): %v", name, err)
		}
		t.Skipf("%s not installed (apt-get install systemd provides it)", name)
	}
	return path
}

// requireRoot skips (fails under strict) unless the test runs as root.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if strict() {
		t.Fatalf("needs root (%s) but runs as uid %d with SEALGATE_PRIVILEGED_TESTS=1", why, os.Geteuid())
	}
	t.Skipf("needs root: %s", why)
}

// systemdEnv is the environment for systemd tools: no colours, no pager, plain output.
func systemdEnv() []string {
	return append(os.Environ(), "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=cat", "SYSTEMD_LOG_COLOR=0", "LC_ALL=C.UTF-8")
}

// unitEntry is one "Key=value" assignment of a unit file, in file order.
type unitEntry struct {
	section, key, value string
	line                int
}

// unitFile is a unit file as a list of assignments; repeated keys keep every assignment.
type unitFile []unitEntry

// parseUnit reads the subset of the systemd unit syntax that sealgate.service uses:
// sections, comments, Key=value and backslash continuation lines.
func parseUnit(text string) (unitFile, error) {
	var (
		u       unitFile
		section string
		pending string
		start   int
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if pending == "" {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending += cont + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: unterminated section header %q", start, line)
			}
			section = line[1 : len(line)-1]
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: want Key=value inside a section, got %q", start, line)
		}
		u = append(u, unitEntry{section: section, key: strings.TrimSpace(key), value: strings.TrimSpace(value), line: start})
	}
	if pending != "" {
		return nil, fmt.Errorf("line %d: continuation at end of file", start)
	}
	return u, sc.Err()
}

// all returns every value assigned to section.key, in order.
func (u unitFile) all(section, key string) []string {
	var out []string
	for _, e := range u {
		if e.section == section && e.key == key {
			out = append(out, e.value)
		}
	}
	return out
}

// last returns the effective (last) value of section.key, or "" when unset.
func (u unitFile) last(section, key string) string {
	v := u.all(section, key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// shippedUnit parses the embedded unit or fails the test.
func shippedUnit(t *testing.T) unitFile {
	t.Helper()
	u, err := parseUnit(Unit)
	if err != nil {
		t.Fatalf("parsing sealgate.service: %v", err)
	}
	return u
}
