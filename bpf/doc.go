// Package bpf owns sealgate's eBPF data path: the sk_lookup program that steers configured
// (protocol, destination prefix, port) tuples into the engine's listening sockets (steer.c), the XDP guard
// that drops blocklisted and SYN-flooding sources on interfaces (guard.c), their Go loaders, the pinned
// state under <bpffs>/sealgate/<netns-inode>/ that keeps both working across daemon restarts, and the
// readers of their counters.
//
// The package knows nothing of HTTP, config files or the admin API: the daemon turns its config into
// [Binding] values, [Guard.Attach] calls and [Guard.SetRate] calls, and hands the engine's listening
// sockets to [Steering.RegisterSocket].
//
// Steering and the guard are independent: each is opened with its own call ([OpenSteering],
// [OpenGuard]), holds its own lock on its pin directory, and can be missing (for want of privileges or
// kernel support, see [Probe]) while the other works. Closing either releases file descriptors only; the
// programs, links and maps stay pinned until [Cleanup].
//
// On systems other than Linux every entry point returns an error wrapping [ErrNotSupported].
package bpf
