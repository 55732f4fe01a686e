//go:build !linux

// Command xdpflood measures the sealgate XDP guard on a veth; it runs on Linux only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "xdpflood: Linux only (XDP, network namespaces, AF_PACKET)")
	os.Exit(1)
}
