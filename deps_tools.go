//go:build tools

// Package sealgate pins the dependencies chosen for the project while the
// packages that use them are being written; go mod tidy keeps them.
package sealgate

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/andybalholm/brotli"
	_ "github.com/cilium/ebpf"
	_ "github.com/cilium/ebpf/features"
	_ "github.com/cilium/ebpf/link"
	_ "github.com/cilium/ebpf/rlimit"
	_ "github.com/corazawaf/coraza-coreruleset/v4"
	_ "github.com/corazawaf/coraza/v3"
	_ "github.com/getkin/kin-openapi/openapi3filter"
	_ "github.com/go-jose/go-jose/v4"
	_ "github.com/go-jose/go-jose/v4/jwt"
	_ "github.com/google/cel-go/cel"
	_ "github.com/klauspost/cpuid/v2"
	_ "github.com/pelletier/go-toml/v2"
	_ "github.com/pelletier/go-toml/v2/unstable"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/common/expfmt"
	_ "github.com/vishvananda/netlink"
	_ "golang.org/x/net/http2"
	_ "golang.org/x/sys/unix"
	_ "gonum.org/v1/plot"
	_ "gonum.org/v1/plot/plotter"
	_ "gonum.org/v1/plot/vg"
)
