// Command connrate measures new TCP connections per second to one listener through four paths: its
// own address, an sk_lookup steered port (bpf.Steering), an iptables REDIRECT rule, and its own
// address again with the sk_lookup program detached from the namespace (the cost steering puts on
// connections it does not steer). It has two modes, each run inside its network namespace by
// bench/steer/run.sh:
//
//	connrate serve -listen 192.0.2.1:8080 -steer 192.0.2.1:443 -bpffs DIR
//	connrate load -direct 192.0.2.1:8080 -steered 192.0.2.1:443 -redirect 192.0.2.1:80 -server-netns NAME
//
// serve listens, steers the -steer address into the listener and answers each connection's one-line
// request with one line; the client then resets the connection, so neither side keeps TIME_WAIT.
// It also answers control lines from load (counters, detach, attach). load alternates the paths for
// -rounds rounds of -duration with -workers concurrent clients, installs the REDIRECT rule only for
// the redirect phase (so the other paths run without conntrack), checks the steering, iptables and
// conntrack counters, and prints a Markdown table.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "connrate:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: connrate serve|load [flags] (see bench/steer/README.md)")
	os.Exit(2)
}
