package systemd

import (
	"os"
	"testing"
)

// capsChildEnv, when set, turns the test binary into the unprivileged child of
// TestCapabilities: it runs the daemon's privileged operations and prints the results.
const capsChildEnv = "SEALGATE_CAPS_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(capsChildEnv); spec != "" {
		os.Exit(capsChild(spec))
	}
	os.Exit(m.Run())
}
