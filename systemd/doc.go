// Package systemd owns the files that install sealgate as a systemd service: the hardened
// unit (sealgate.service), the account (sysusers.d/sealgate.conf), the directories and
// bpffs permissions (tmpfiles.d/sealgate.conf) and the commented default configuration
// (sealgate.toml, installed as /etc/sealgate/sealgate.toml). It holds no daemon logic.
//
// The files are embedded so that other packages can test against exactly what is
// installed, for example by decoding DefaultConfig with the daemon's strict config parser.
//
// The tests check what an operator would notice: systemd-analyze verify is clean, the
// offline security exposure stays at or below 2.0, sysusers and tmpfiles create the
// account and modes the unit relies on, the unit, tmpfiles and config agree on paths, and
// (as root) that an unprivileged process holding only the unit's ambient capabilities can
// load, pin and attach XDP and sk_lookup programs (package bpf's own among them), use
// netlink and bind port 443, while dropping any one of those capabilities breaks something;
// and, with systemd-nspawn, that the unit does all of this under a real systemd.
package systemd

import _ "embed" // for the go:embed directives below

// Unit is sealgate.service as shipped. Its ExecStart names /usr/local/bin/sealgate; `make
// install` rewrites that path for other PREFIX values.
//
//go:embed sealgate.service
var Unit string

// DefaultConfig is the commented default configuration installed as
// /etc/sealgate/sealgate.toml when no configuration exists there yet.
//
//go:embed sealgate.toml
var DefaultConfig string

// Sysusers is sysusers.d/sealgate.conf: the sealgate system user and group.
//
//go:embed sysusers.d/sealgate.conf
var Sysusers string

// Tmpfiles is tmpfiles.d/sealgate.conf: configuration, state and bpffs directories.
//
//go:embed tmpfiles.d/sealgate.conf
var Tmpfiles string
