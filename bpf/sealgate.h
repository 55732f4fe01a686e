/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Structures shared between the eBPF programs and the Go loaders. The Go side mirrors every struct by hand
 * (keys.go) and TestLayout checks those mirrors against the bpf2go-generated types, so any change here must
 * be made in keys.go as well. Padding is explicit: the kernel compares keys byte by byte. */
#ifndef SEALGATE_H
#define SEALGATE_H

/* ---- steering (steer.c) ---- */

/* STEER_MAX_DESTS bounds the number of distinct destinations (engine listeners). Each destination owns two
 * slots in the socket map: 2*id for its IPv4 socket, 2*id+1 for its IPv6 socket. */
#define STEER_MAX_DESTS 128
#define STEER_MAX_BINDINGS 4096
#define STEER_DEST_NAME_LEN 64

/* steer_key is an LPM trie key. protocol, pad and port are always matched in full (32 bits), so
 * prefixlen = 32 + the bits of the IPv6 (or v4-mapped, 96 + IPv4 bits) destination prefix. */
struct steer_key {
	__u32 prefixlen;
	__u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
	__u16 port; /* host byte order */
	__u8 addr[16]; /* network byte order, IPv4 as ::ffff:a.b.c.d */
};

struct steer_value {
	__u32 dest_id;
};

struct steer_dest_name {
	char name[STEER_DEST_NAME_LEN];
};

enum steer_counter {
	STEER_LOOKUPS = 0, /* every socket lookup for a new connection in the namespace */
	STEER_STEERED,     /* assigned to a registered socket */
	STEER_MISSES,      /* matched a binding whose socket is missing: dropped (fail closed) */
	STEER_ERRORS,      /* bpf_sk_assign refused the socket: dropped */
	STEER_COUNTERS_MAX,
};

/* ---- guard (guard.c) ---- */

#define GUARD_MAX_BLOCKS 65536
#define GUARD_MAX_SOURCES 65536
#define GUARD_MAX_PORTS 1024
#define GUARD_MAX_CONFIGS 256
#define GUARD_MAX_COUNTERS 4096
#define GUARD_EXT_HEADERS_MAX 6
#define GUARD_NSEC_PER_TOKEN 1000000000ULL

struct block_key {
	__u32 prefixlen; /* 0..128; IPv4 prefixes are v4-mapped: 96 + bits */
	__u8 addr[16];
};

struct block_value {
	__u64 expires_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns); 0 = never */
	__u32 prefixlen;  /* the key's prefixlen, so an expired entry can fall back to a shorter prefix */
	__u32 pad;
};

/* rate_config is keyed by ifindex; key 0 holds the default. rate 0 disables the SYN limit. */
struct rate_config {
	__u32 rate;  /* new TCP connections per second per source */
	__u32 burst; /* bucket size */
};

struct bucket_key {
	__u8 addr[16];
};

struct bucket {
	__u64 tokens;  /* scaled by GUARD_NSEC_PER_TOKEN */
	__u64 last_ns; /* last refill, bpf_ktime_get_ns */
};

enum guard_reason {
	GUARD_PASS_TCP = 0,       /* pass: TCP, not blocked, within its rate */
	GUARD_PASS_NON_TCP,       /* pass: IP but not TCP */
	GUARD_PASS_NON_IP,        /* pass: neither IPv4 nor IPv6 (ARP, LLDP, ...) */
	GUARD_PASS_FRAGMENT,      /* pass: a non-first fragment, no TCP header to look at */
	GUARD_PASS_TRUNCATED,     /* pass: a header runs past the end of the frame */
	GUARD_PASS_MALFORMED,     /* pass: impossible header field (IHL < 5, TCP offset < 5) */
	GUARD_PASS_EXT_HEADERS,   /* pass: more IPv6 extension headers than GUARD_EXT_HEADERS_MAX */
	GUARD_PASS_VLAN_DEPTH,    /* pass: more than two VLAN tags */
	GUARD_DROP_BLOCKLIST,     /* drop: source in a live blocklist entry */
	GUARD_DROP_SYN_RATE,      /* drop: SYN to a protected port above the source's token bucket */
	GUARD_REASON_MAX,
};

struct counter_key {
	__u32 ifindex;
	__u32 reason; /* enum guard_reason */
};

#endif
