//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* steer: an sk_lookup program that hands every new connection to a configured (protocol, destination
 * prefix, port) to the engine's listening socket, whatever else is bound there. A binding whose socket is
 * missing drops the connection: a protected port must never fall through to the unprotected server. */

#include "include/uapi.h"
#include "include/bpf_helpers.h"
#include "include/bpf_endian.h"
#include "sealgate.h"

char _license[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct steer_key);
	__type(value, struct steer_value);
	__uint(max_entries, STEER_MAX_BINDINGS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} steer_bindings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2 * STEER_MAX_DESTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} steer_sockets SEC(".maps");

/* steer_dests maps a destination name to its id; only user space reads it, it is here to be pinned with
 * the rest so ids stay stable across restarts. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct steer_dest_name);
	__type(value, __u32);
	__uint(max_entries, STEER_MAX_DESTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} steer_dests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, STEER_COUNTERS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} steer_counters SEC(".maps");

/* Force BTF for the enum so bpf2go emits it. */
const enum steer_counter steer_counter_unused __attribute__((unused));

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&steer_counters, &which);
	if (v)
		*v += 1;
}

static __always_inline void put_word(struct steer_key *key, int i, __u32 w)
{
	__builtin_memcpy(&key->addr[4 * i], &w, sizeof(w));
}

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	struct steer_key key = {};
	__u32 v6;

	count(STEER_LOOKUPS);

	/* All address fields are read up front, whatever the family: reading them in the branches lets clang
	 * merge the loads through a computed context pointer, which the verifier refuses. */
	__u32 family = ctx->family;
	__u32 ip4 = ctx->local_ip4;
	__u32 ip6_0 = ctx->local_ip6[0];
	__u32 ip6_1 = ctx->local_ip6[1];
	__u32 ip6_2 = ctx->local_ip6[2];
	__u32 ip6_3 = ctx->local_ip6[3];

	key.prefixlen = 32 + 128;
	key.protocol = (__u8)ctx->protocol;
	key.port = (__u16)ctx->local_port;
	if (family == AF_INET) {
		v6 = 0;
		put_word(&key, 0, 0);
		put_word(&key, 1, 0);
		put_word(&key, 2, bpf_htonl(0x0000ffff));
		put_word(&key, 3, ip4);
	} else if (family == AF_INET6) {
		v6 = 1;
		put_word(&key, 0, ip6_0);
		put_word(&key, 1, ip6_1);
		put_word(&key, 2, ip6_2);
		put_word(&key, 3, ip6_3);
	} else {
		return SK_PASS;
	}

	struct steer_value *val = bpf_map_lookup_elem(&steer_bindings, &key);
	if (!val)
		return SK_PASS;
	if (val->dest_id >= STEER_MAX_DESTS) {
		count(STEER_ERRORS);
		return SK_DROP;
	}

	__u32 slot = 2 * val->dest_id + v6;
	struct bpf_sock *sk = bpf_map_lookup_elem(&steer_sockets, &slot);
	if (!sk && !v6) {
		/* No IPv4 socket: a dual-stack IPv6 socket takes IPv4 too (sk_assign refuses a V6ONLY one). */
		slot = 2 * val->dest_id + 1;
		sk = bpf_map_lookup_elem(&steer_sockets, &slot);
	}
	if (!sk) {
		count(STEER_MISSES);
		return SK_DROP;
	}

	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(STEER_ERRORS);
		return SK_DROP;
	}
	count(STEER_STEERED);
	return SK_PASS;
}
