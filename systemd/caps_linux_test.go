package systemd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// capNumbers maps the capability names the unit may use to their numbers.
var capNumbers = map[string]uintptr{
	"CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_ADMIN":        unix.CAP_NET_ADMIN,
	"CAP_BPF":              unix.CAP_BPF,
	"CAP_PERFMON":          unix.CAP_PERFMON,
	"CAP_SYS_ADMIN":        unix.CAP_SYS_ADMIN,
	"CAP_NET_RAW":          unix.CAP_NET_RAW,
}

// childUID is the unprivileged identity of the child ("nobody"), standing in for the
// sealgate system user.
const childUID = 65534

// TestCapabilities proves the unit's capability set is sufficient and minimal: a process
// with the unit's privileges (a non-root uid holding exactly AmbientCapabilities, no
// CAP_SYS_ADMIN) binds port 443, configures links over netlink, creates the guard's and
// steering's map types, loads XDP and sk_lookup programs through the verifier, attaches
// them, steers a real connection, pins into a bpffs laid out as tmpfiles.d/sealgate.conf
// lays out /sys/fs/bpf, and runs package bpf's real steering and guard. Removing any one
// capability, or leaving bpffs at PID 1's mode 0700, breaks a named operation with
// EPERM/EACCES.
//
// The unit's seccomp filter and mount sandbox need systemd as PID 1: TestUnitUnderSystemd
// covers them.
func TestCapabilities(t *testing.T) {
	requireRoot(t, "starts a child with another uid, ambient capabilities and its own network namespace, and mounts a bpffs")

	unitSet := unitCaps(shippedUnit(t).last("Service", "AmbientCapabilities"))
	without := func(c string) []string {
		if !slices.Contains(unitSet, c) {
			t.Fatalf("AmbientCapabilities %v lacks %s: the daemon cannot work without it (see below)", unitSet, c)
		}
		return slices.DeleteFunc(slices.Clone(unitSet), func(s string) bool { return s == c })
	}
	allOps := func() []string {
		var ops []string
		for _, op := range childOps {
			ops = append(ops, op.name)
		}
		return ops
	}
	tests := []struct {
		name      string
		caps      []string
		bpffsMode fs.FileMode // mode of the bpffs root, as tmpfiles leaves it or not
		mustFail  []string    // with EPERM/EACCES
		mustPass  []string
	}{
		{name: "unit capabilities", caps: unitSet, bpffsMode: 0o711, mustPass: allOps()},
		{name: "without CAP_BPF", caps: without("CAP_BPF"), bpffsMode: 0o711,
			mustFail: []string{"bpf_maps"}, mustPass: []string{"bind_privileged_port", "netlink_link_up", "netlink_create_veth"}},
		{name: "without CAP_NET_ADMIN", caps: without("CAP_NET_ADMIN"), bpffsMode: 0o711,
			mustFail: []string{"netlink_link_up", "sockmap", "load_xdp"}, mustPass: []string{"bind_privileged_port", "bpf_maps"}},
		// Spectre v1 mitigation: variable packet offsets (IPv4 options, IPv6 extension
		// headers) are refused; steering and simple XDP programs still load.
		{name: "without CAP_PERFMON", caps: without("CAP_PERFMON"), bpffsMode: 0o711,
			mustFail: []string{"real_guard"}, mustPass: slices.DeleteFunc(allOps(), func(s string) bool { return s == "real_guard" })},
		{name: "without CAP_NET_BIND_SERVICE", caps: without("CAP_NET_BIND_SERVICE"), bpffsMode: 0o711,
			mustFail: []string{"bind_privileged_port"}, mustPass: slices.DeleteFunc(allOps(), func(s string) bool { return s == "bind_privileged_port" })},
		{name: "bpffs root 0700 as PID 1 mounts it", caps: unitSet, bpffsMode: 0o700,
			mustFail: []string{"pin_objects", "real_steering", "real_guard"}, mustPass: []string{"load_xdp", "attach_xdp", "attach_sk_lookup", "steer_connection"}},
	}

	exe := childBinary(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bpffs := mountBPFFS(t, filepath.Dir(exe), tt.bpffsMode)
			addPinDir(t, bpffs)
			report := runCapsChild(t, exe, tt.caps, childSpec{BPFFS: bpffs})

			if report.UID != childUID {
				t.Fatalf("child ran as uid %d, want %d", report.UID, childUID)
			}
			if want := capMask(t, tt.caps); report.CapEff != want {
				t.Fatalf("child CapEff %s, want exactly %s (%v)", report.CapEff, want, tt.caps)
			}
			byOp := map[string]opResult{}
			for _, r := range report.Results {
				byOp[r.Op] = r
				t.Logf("%-24s err=%q skipped=%q", r.Op, r.Err, r.Skipped)
			}
			for _, op := range tt.mustPass {
				if r := byOp[op]; r.Op == "" || r.Err != "" || r.Skipped != "" {
					t.Errorf("%s with %v: want success, got err=%q skipped=%q", op, tt.caps, r.Err, r.Skipped)
				}
			}
			for _, op := range tt.mustFail {
				if r := byOp[op]; !r.Perm {
					t.Errorf("%s with %v: want a permission error, got err=%q skipped=%q", op, tt.caps, r.Err, r.Skipped)
				}
			}
		})
	}
}

// scratchDir returns a temporary directory that unprivileged users can traverse (unlike
// t.TempDir), removed when the test ends.
func scratchDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sealgate-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// childBinary copies the test binary where the unprivileged child can execute it.
func childBinary(t *testing.T) string {
	t.Helper()
	dir := scratchDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	exe := filepath.Join(dir, "systemd.test")
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return exe
}

// mountBPFFS mounts a private bpffs instance under dir with the given root mode; the
// mount goes away when the test ends.
func mountBPFFS(t *testing.T, dir string, mode fs.FileMode) string {
	t.Helper()
	mnt, err := os.MkdirTemp(dir, "bpffs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpffs", mnt, "bpf", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700"); err != nil {
		t.Fatalf("mounting bpffs on %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", mnt, err)
		}
	})
	if err := os.Chmod(mnt, mode); err != nil {
		t.Fatal(err)
	}
	return mnt
}

// addPinDir makes <bpffs>/sealgate owned by the child, as tmpfiles.d/sealgate.conf does.
func addPinDir(t *testing.T, mnt string) {
	t.Helper()
	pins := filepath.Join(mnt, "sealgate")
	if err := os.Mkdir(pins, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(pins, childUID, childUID); err != nil {
		t.Fatal(err)
	}
}

// runCapsChild runs the test binary in child mode as childUID with exactly caps as its
// ambient (hence permitted and effective) set, in a new network namespace.
func runCapsChild(t *testing.T, exe string, caps []string, spec childSpec) childReport {
	t.Helper()
	specJSON, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	var ambient []uintptr
	for _, c := range caps {
		n, ok := capNumbers[c]
		if !ok {
			t.Fatalf("unknown capability %q in the unit", c)
		}
		ambient = append(ambient, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Dir = filepath.Dir(exe)
	cmd.Env = []string{capsChildEnv + "=" + string(specJSON), "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: childUID, Gid: childUID, Groups: []uint32{}},
		AmbientCaps: ambient,
		Cloneflags:  syscall.CLONE_NEWNET,
		Pdeathsig:   syscall.SIGKILL,
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("capability child: %v\nstderr:\n%s", err, stderr.String())
	}
	var report childReport
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatalf("capability child output: %v\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if len(report.Results) != len(childOps) {
		t.Fatalf("child reported %d operations, want %d", len(report.Results), len(childOps))
	}
	return report
}

// capMask renders caps as /proc/<pid>/status prints CapEff.
func capMask(t *testing.T, caps []string) string {
	t.Helper()
	var mask uint64
	for _, c := range caps {
		n, ok := capNumbers[c]
		if !ok {
			t.Fatalf("unknown capability %q", c)
		}
		mask |= 1 << n
	}
	return fmt.Sprintf("%016x", mask)
}

func TestCapMask(t *testing.T) {
	tests := []struct {
		name string
		caps []string
		want string
	}{
		{"none", nil, "0000000000000000"},
		{"bind", []string{"CAP_NET_BIND_SERVICE"}, "0000000000000400"},
		{"unit set", []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}, "0000008000001400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capMask(t, tt.caps); got != tt.want {
				t.Errorf("capMask(%v) = %s, want %s", tt.caps, got, tt.want)
			}
		})
	}
}
