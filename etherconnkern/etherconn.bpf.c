// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * etherconn's XDP program: hands the frames of registered endpoints to the AF_XDP socket of
 * the queue they arrived on and passes everything else to the kernel, so the host keeps its
 * own traffic on the interface. The relay (crates/etherconn-xdp) loads it from memory,
 * attaches it through a BPF link and keeps its maps in step with the dispatch table.
 *
 * Which frames are redirected (docs/xdp.md states the same rules):
 *  1. the key (destination MAC, VLAN ids, EtherType) is registered: `endpoints`;
 *  2. broadcast/multicast destination, and a conn that receives broadcast/multicast is
 *     registered on the frame's VLAN ids and EtherType: `groups`;
 *  3. a default conn is registered (config flag) and the frame is unicast to another MAC than
 *     the interface's own, or broadcast/multicast and tagged; untagged broadcast/multicast
 *     only when the relay was configured to take those from the host too.
 * Anything else, and any frame too short to read or with more than three VLAN tags, is
 * XDP_PASS. A queue with no AF_XDP socket passes what it would have redirected.
 *
 * Rebuild the committed object with ./build.sh.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "etherconn.h"

/* One AF_XDP socket per receive queue; the relay sets max_entries to the queue count. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* Registered endpoint keys; the value is unused. The relay sets max_entries. Not
 * preallocated: the kernel allocates an entry when the relay adds it, so a large limit costs
 * nothing until it is used. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1048576);
	__type(key, struct ec_l2_key);
	__type(value, __u8);
} endpoints SEC(".maps");

/* (VLAN ids, EtherType) groups with a conn receiving broadcast/multicast: mac is zero. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct ec_l2_key);
	__type(value, __u8);
} groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ec_config);
} config SEC(".maps");

/* Frames redirected and passed, per CPU (index EC_STAT_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EC_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct ec_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

static __always_inline int is_tpid(__be16 proto)
{
	return proto == bpf_htons(0x8100) || proto == bpf_htons(0x88a8) ||
	       proto == bpf_htons(0x9100);
}

/* clang has no inline memcmp for BPF: compare the six octets by hand. */
static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
	       a[5] == b[5];
}

static __always_inline int count(__u32 index, int action)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &index);

	if (n)
		*n += 1;
	return action;
}

static __always_inline int redirect(struct xdp_md *ctx)
{
	int action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);

	return count(action == XDP_REDIRECT ? EC_STAT_REDIRECTED : EC_STAT_PASSED, action);
}

SEC("xdp")
int etherconn_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ec_l2_key key = {};
	__be16 proto;
	void *cur;
	__u32 zero = 0;
	struct ec_config *cfg;
	int group;

	if ((void *)(eth + 1) > end)
		return count(EC_STAT_PASSED, XDP_PASS);
	__builtin_memcpy(key.mac, eth->h_dest, ETH_ALEN);
	proto = eth->h_proto;
	cur = eth + 1;

#pragma unroll
	for (int i = 0; i < EC_MAX_TAGS; i++) {
		struct ec_vlan_hdr *v = cur;

		if (!is_tpid(proto))
			break;
		if ((void *)(v + 1) > end)
			return count(EC_STAT_PASSED, XDP_PASS);
		key.vlan[i] = v->tci & bpf_htons(0x0fff);
		key.vlan_count = i + 1;
		proto = v->encap_proto;
		cur = v + 1;
	}
	if (is_tpid(proto))
		return count(EC_STAT_PASSED, XDP_PASS);
	key.ethertype = proto;

	if (bpf_map_lookup_elem(&endpoints, &key))
		return redirect(ctx);

	group = key.mac[0] & 1;
	if (group) {
		struct ec_l2_key g = key;

		__builtin_memset(g.mac, 0, ETH_ALEN);
		if (bpf_map_lookup_elem(&groups, &g))
			return redirect(ctx);
	}

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !(cfg->flags & EC_FLAG_DEFAULT_CONN))
		return count(EC_STAT_PASSED, XDP_PASS);
	if (group) {
		if (key.vlan_count > 0 || (cfg->flags & EC_FLAG_DEFAULT_UNTAGGED_GROUP))
			return redirect(ctx);
		return count(EC_STAT_PASSED, XDP_PASS);
	}
	if (!mac_eq(key.mac, cfg->own_mac))
		return redirect(ctx);
	return count(EC_STAT_PASSED, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
