// Command sealgate is the sealgate appliance: the daemon and its CLI. See
// `sealgate help`.
package main

import (
	"os"

	"github.com/sealgate/sealgate/daemon"
)

func main() {
	os.Exit(daemon.Main(os.Args[1:], os.Stdout, os.Stderr))
}
