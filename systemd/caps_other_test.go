//go:build !linux

package systemd

import (
	"fmt"
	"os"
)

// capsChild exists on Linux only; elsewhere the child mode is never requested.
func capsChild(string) int {
	fmt.Fprintln(os.Stderr, "capability child: not supported on this OS")
	return 2
}
