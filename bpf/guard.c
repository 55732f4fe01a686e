//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* guard: an XDP program that drops packets from blocklisted source prefixes and SYNs above a per-source
 * token bucket to protected ports, before the kernel's TCP stack sees them. Anything it cannot parse
 * passes (the kernel decides) and is counted by reason. */

#include "include/uapi.h"
#include "include/bpf_helpers.h"
#include "include/bpf_endian.h"
#include "sealgate.h"

char _license[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct block_key);
	__type(value, struct block_value);
	__uint(max_entries, GUARD_MAX_BLOCKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_blocklist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct bucket_key);
	__type(value, struct bucket);
	__uint(max_entries, GUARD_MAX_SOURCES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32); /* ifindex, 0 = default */
	__type(value, struct rate_config);
	__uint(max_entries, GUARD_MAX_CONFIGS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16); /* TCP destination port, host byte order */
	__type(value, __u8);
	__uint(max_entries, GUARD_MAX_PORTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct counter_key);
	__type(value, __u64);
	__uint(max_entries, GUARD_MAX_COUNTERS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_counters SEC(".maps");

const enum guard_reason guard_reason_unused __attribute__((unused));

struct eth_hdr {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct ipv4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6_hdr {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 len;
};

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 id;
};

struct tcp_hdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res;
	__u8 flags;
	__be16 window;
	__be16 check;
	__be16 urg_ptr;
};

#define TCP_SYN 0x02
#define TCP_ACK 0x10
#define IP_OFFSET_MASK 0x1fff

static __always_inline void count(__u32 ifindex, __u32 reason)
{
	struct counter_key key = { .ifindex = ifindex, .reason = reason };
	__u64 *v = bpf_map_lookup_elem(&guard_counters, &key);
	if (v) {
		*v += 1;
		return;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&guard_counters, &key, &one, BPF_NOEXIST) == 0)
		return;
	/* Another CPU created it first, or the map is full (then the packet goes uncounted). */
	v = bpf_map_lookup_elem(&guard_counters, &key);
	if (v)
		*v += 1;
}

/* blocked reports whether a live entry covers key's address. An expired entry does not hide a live
 * shorter one: the lookup is repeated below the expired entry's prefix length, a bounded number of times. */
static __always_inline int blocked(struct block_key *key, __u64 now)
{
	for (int i = 0; i < 4; i++) {
		struct block_value *v = bpf_map_lookup_elem(&guard_blocklist, key);
		if (!v)
			return 0;
		if (v->expires_ns == 0 || v->expires_ns > now)
			return 1;
		if (v->prefixlen == 0 || v->prefixlen > key->prefixlen)
			return 0;
		key->prefixlen = v->prefixlen - 1;
	}
	return 0;
}

/* syn_allowed takes a token from the source's bucket, creating a full bucket for a new source. */
static __always_inline int syn_allowed(__u32 ifindex, struct bucket_key *src, __u64 now)
{
	struct rate_config *cfg = bpf_map_lookup_elem(&guard_config, &ifindex);
	if (!cfg) {
		__u32 def = 0;
		cfg = bpf_map_lookup_elem(&guard_config, &def);
	}
	if (!cfg || cfg->rate == 0)
		return 1;

	__u64 rate = cfg->rate;
	__u64 cap = (__u64)(cfg->burst ? cfg->burst : 1) * GUARD_NSEC_PER_TOKEN;
	struct bucket *b = bpf_map_lookup_elem(&guard_buckets, src);
	if (!b) {
		struct bucket fresh = { .tokens = cap - GUARD_NSEC_PER_TOKEN, .last_ns = now };
		bpf_map_update_elem(&guard_buckets, src, &fresh, BPF_ANY);
		return 1;
	}

	__u64 tokens = b->tokens;
	__u64 elapsed = now > b->last_ns ? now - b->last_ns : 0;
	if (elapsed >= cap / rate) {
		tokens = cap;
	} else {
		tokens += elapsed * rate;
		if (tokens > cap)
			tokens = cap;
	}
	b->last_ns = now;
	if (tokens < GUARD_NSEC_PER_TOKEN) {
		b->tokens = tokens;
		return 0;
	}
	b->tokens = tokens - GUARD_NSEC_PER_TOKEN;
	return 1;
}

static __always_inline int classify(struct xdp_md *ctx, __u32 ifindex)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct block_key bkey = {};
	struct bucket_key src = {};
	__u8 proto;
	void *l4;
	int fragment = 0;

	struct eth_hdr *eth = data;
	if ((void *)(eth + 1) > end)
		return GUARD_PASS_TRUNCATED;
	__be16 type = eth->proto;
	void *cur = eth + 1;

	for (int i = 0; i < 2; i++) {
		if (type != bpf_htons(ETH_P_8021Q) && type != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vlan = cur;
		if ((void *)(vlan + 1) > end)
			return GUARD_PASS_TRUNCATED;
		type = vlan->proto;
		cur = vlan + 1;
	}
	if (type == bpf_htons(ETH_P_8021Q) || type == bpf_htons(ETH_P_8021AD))
		return GUARD_PASS_VLAN_DEPTH;

	if (type == bpf_htons(ETH_P_IP)) {
		struct ipv4_hdr *ip = cur;
		if ((void *)(ip + 1) > end)
			return GUARD_PASS_TRUNCATED;
		if ((ip->ver_ihl >> 4) != 4)
			return GUARD_PASS_MALFORMED;
		__u32 ihl = (ip->ver_ihl & 0x0f) * 4;
		if (ihl < sizeof(*ip))
			return GUARD_PASS_MALFORMED;
		bkey.addr[10] = 0xff;
		bkey.addr[11] = 0xff;
		__builtin_memcpy(&bkey.addr[12], &ip->saddr, 4);
		proto = ip->protocol;
		fragment = (bpf_ntohs(ip->frag_off) & IP_OFFSET_MASK) != 0;
		l4 = cur + ihl;
	} else if (type == bpf_htons(ETH_P_IPV6)) {
		struct ipv6_hdr *ip6 = cur;
		if ((void *)(ip6 + 1) > end)
			return GUARD_PASS_TRUNCATED;
		if ((bpf_ntohl(ip6->ver_tc_flow) >> 28) != 6)
			return GUARD_PASS_MALFORMED;
		__builtin_memcpy(bkey.addr, ip6->saddr, 16);
		proto = ip6->nexthdr;
		l4 = ip6 + 1;
		int i;
		for (i = 0; i < GUARD_EXT_HEADERS_MAX; i++) {
			if (proto == IPPROTO_HOPOPTS || proto == IPPROTO_ROUTING || proto == IPPROTO_DSTOPTS) {
				struct ipv6_opt_hdr *opt = l4;
				if ((void *)(opt + 1) > end)
					goto truncated_after_src;
				proto = opt->nexthdr;
				l4 += ((__u32)opt->len + 1) * 8;
			} else if (proto == IPPROTO_AH) {
				struct ipv6_opt_hdr *opt = l4;
				if ((void *)(opt + 1) > end)
					goto truncated_after_src;
				proto = opt->nexthdr;
				l4 += ((__u32)opt->len + 2) * 4;
			} else if (proto == IPPROTO_FRAGMENT) {
				struct ipv6_frag_hdr *frag = l4;
				if ((void *)(frag + 1) > end)
					goto truncated_after_src;
				proto = frag->nexthdr;
				if (bpf_ntohs(frag->frag_off) & ~7)
					fragment = 1;
				l4 = frag + 1;
			} else {
				break;
			}
		}
		if (i == GUARD_EXT_HEADERS_MAX &&
		    (proto == IPPROTO_HOPOPTS || proto == IPPROTO_ROUTING || proto == IPPROTO_DSTOPTS ||
		     proto == IPPROTO_AH || proto == IPPROTO_FRAGMENT)) {
			bkey.prefixlen = 128;
			if (blocked(&bkey, bpf_ktime_get_ns()))
				return GUARD_DROP_BLOCKLIST;
			return GUARD_PASS_EXT_HEADERS;
		}
	} else {
		return GUARD_PASS_NON_IP;
	}

	__u64 now = bpf_ktime_get_ns();
	bkey.prefixlen = 128;
	if (blocked(&bkey, now))
		return GUARD_DROP_BLOCKLIST;
	if (fragment)
		return GUARD_PASS_FRAGMENT;
	if (proto != IPPROTO_TCP)
		return GUARD_PASS_NON_TCP;

	struct tcp_hdr *tcp = l4;
	if ((void *)(tcp + 1) > end)
		return GUARD_PASS_TRUNCATED;
	if ((tcp->doff_res >> 4) < 5)
		return GUARD_PASS_MALFORMED;
	if ((tcp->flags & (TCP_SYN | TCP_ACK)) != TCP_SYN)
		return GUARD_PASS_TCP;

	__u16 port = bpf_ntohs(tcp->dest);
	if (!bpf_map_lookup_elem(&guard_ports, &port))
		return GUARD_PASS_TCP;
	__builtin_memcpy(src.addr, bkey.addr, 16);
	if (!syn_allowed(ifindex, &src, now))
		return GUARD_DROP_SYN_RATE;
	return GUARD_PASS_TCP;

truncated_after_src:
	/* The source is known: a blocked source stays blocked even when its extension headers are cut. */
	bkey.prefixlen = 128;
	if (blocked(&bkey, bpf_ktime_get_ns()))
		return GUARD_DROP_BLOCKLIST;
	return GUARD_PASS_TRUNCATED;
}

SEC("xdp")
int guard(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 reason = classify(ctx, ifindex);
	count(ifindex, reason);
	return reason >= GUARD_DROP_BLOCKLIST ? XDP_DROP : XDP_PASS;
}
