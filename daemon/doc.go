// Package daemon is sealgate's host daemon: it reads the config, wires the
// engine (appliance/), the sealing endpoint and the eBPF steering and guard
// (bpf/) together, runs the admin socket and the metrics endpoint, speaks
// sd_notify, reloads on SIGHUP, drains on SIGTERM and hands its listening
// sockets to its successor on restart. It also holds the CLI that talks to a
// running daemon through the admin socket; cmd/sealgate only calls Main.
package daemon

// Version and Commit are set at build time with -ldflags -X.
var (
	Version = "dev"
	Commit  = "unknown"
)
