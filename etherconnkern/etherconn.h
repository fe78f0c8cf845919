/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The layout shared by the XDP program (etherconn.bpf.c) and the relay that fills its maps
 * (crates/etherconn-xdp/src/maps.rs). This header is the one definition of it; the relay's
 * tests read the compiled object's BTF and check that its encoder writes these offsets.
 */
#ifndef ETHERCONN_H
#define ETHERCONN_H

#include <linux/types.h>

/* The most VLAN tags a key holds; a frame with more is passed to the kernel. */
#define EC_MAX_TAGS 3

/*
 * The key of a registered endpoint, as the relay's dispatch table matches it: destination
 * MAC, the VLAN ids of up to three tags (outermost first) and the EtherType after the last
 * tag. 16 bytes, no implicit padding, every field in network byte order as read off the wire:
 *
 *   offset 0  mac[6]      destination MAC
 *   offset 6  ethertype   EtherType after the last tag (big endian)
 *   offset 8  vlan[0]     outermost VLAN id, 12 bits, big endian; 0 when absent
 *   offset 10 vlan[1]     second VLAN id, 12 bits, big endian; 0 when absent
 *   offset 12 vlan[2]     third (innermost) VLAN id, 12 bits, big endian; 0 when absent
 *   offset 14 vlan_count  0, 1, 2 or 3 ("no tag" differs from a tag with id 0)
 *   offset 15 pad         always zero
 *
 * The same struct keys the group map, with mac all zero: a (VLAN ids, EtherType) that a conn
 * receiving broadcast/multicast is registered on.
 */
struct ec_l2_key {
	__u8 mac[6];
	__be16 ethertype;
	__be16 vlan[EC_MAX_TAGS];
	__u8 vlan_count;
	__u8 pad;
};

/* ec_config.flags: a default conn is registered. It then receives unicast frames that are not
 * addressed to the interface's own MAC, and tagged broadcast/multicast frames. */
#define EC_FLAG_DEFAULT_CONN 0x1u
/* ec_config.flags: the default conn also receives untagged broadcast/multicast frames (the
 * host's own ARP requests, neighbour solicitations and DHCP then go to the relay only). */
#define EC_FLAG_DEFAULT_UNTAGGED_GROUP 0x2u

/* The single entry of the config map. */
struct ec_config {
	__u32 flags;
	__u8 own_mac[6];
	__u8 pad[2];
};

/* Indexes of the per-CPU counters map. */
#define EC_STAT_REDIRECTED 0
#define EC_STAT_PASSED 1
#define EC_STAT_COUNT 2

#endif
