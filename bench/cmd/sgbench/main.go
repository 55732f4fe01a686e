// Command sgbench is the helper of bench/run.sh: it makes the benchmark
// certificate, drives the loads that wrk and h2load cannot (fixed-rate
// latency, idle-connection memory, sealed requests), parses the tools'
// output into one raw table, and renders the results page and chart.
//
//	sgbench cert   -dir DIR
//	sgbench parse  -tool wrk|h2load -in FILE
//	sgbench rate   -url URL -rate N -duration D
//	sgbench idle   -addr HOST:PORT -n N -pids P,P
//	sgbench sealed -url URL -duration D
//	sgbench relay  -mode bytes|fasthttp -listen ADDR -upstream ADDR -cert F -key F
//	sgbench report -raw FILE -meta FILE -md FILE -png FILE
package main

import (
	"fmt"
	"os"
)

type command struct {
	name string
	run  func(args []string) error
}

var commands = []command{
	{"cert", cmdCert},
	{"parse", cmdParse},
	{"rate", cmdRate},
	{"idle", cmdIdle},
	{"sealed", cmdSealed},
	{"relay", cmdRelay},
	{"report", cmdReport},
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	for _, c := range commands {
		if c.name == os.Args[1] {
			if err := c.run(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "sgbench %s: %v\n", c.name, err)
				os.Exit(1)
			}
			return
		}
	}
	usage()
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sgbench cert|parse|rate|idle|sealed|relay|report [flags]")
	os.Exit(2)
}
