#!/usr/bin/env python3
"""Golden frames for etherconn-core, made by an independent encoder (scapy).

How to run (from this directory; needs `python3 -m pip install scapy==2.8.0`):

    python3 make_golden.py              # rewrites the committed files next to this script
    python3 make_golden.py --out DIR    # writes them to DIR instead (scripts/test.sh does this
                                        # and diffs, to prove the committed files are current)

It writes, deterministically (same bytes on every run), three files:

- golden.pcap       every frame, for tshark (`bash check_golden_tshark.sh` cross-checks them)
- golden.json       one object per frame: the frame's bytes and what scapy decodes from them
- golden_frames.rs  the same table as Rust literals, `include!`d by ../golden.rs (no JSON
                    dependency in the test)

The outputs are committed; rerun this script only when the frame list changes, and commit the
regenerated files together with it.

Frames are built with scapy, then the expected fields are read back by dissecting the built
bytes with scapy again (not copied from the build arguments), so the expectations are scapy's
reading of the wire, not ours. Frames marked "valid": false are ones etherconn's classifier
must reject; for them only name/hex/valid/invalid_reason are meaningful.
"""

import json
import os
import struct
import sys

from scapy.all import (
    ARP,
    ICMP,
    IP,
    UDP,
    Dot1AD,
    Dot1Q,
    Ether,
    IPOption_Router_Alert,
    IPOption_RR,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    Padding,
    Raw,
    fragment,
    raw,
)
from scapy.contrib.lldp import (
    LLDPDUChassisID,
    LLDPDUEndOfLLDPDU,
    LLDPDUPortID,
    LLDPDUTimeToLive,
)
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dhcp6 import (
    DHCP6_Solicit,
    DHCP6OptClientId,
    DHCP6OptElapsedTime,
    DHCP6OptIA_NA,
    DUID_LL,
)
from scapy.layers.inet6 import RouterAlert

HERE = os.path.dirname(os.path.abspath(__file__))
# Fixed capture timestamp (2024-01-01T00:00:00Z) so golden.pcap is byte-identical on every run.
PCAP_EPOCH = 1704067200
MIN_FRAME = 60

# Documentation addresses only (RFC 5737, RFC 3849) and locally administered MACs.
MAC_REMOTE = "02:00:5e:00:00:01"  # the peer that sent the frame
MAC_LOCAL = "02:00:5e:00:00:02"  # our endpoint (the frame's destination)
MAC_LOCAL_TAGGED = "02:00:5e:00:01:02"
MAC_BCAST = "ff:ff:ff:ff:ff:ff"
MAC_LLDP = "01:80:c2:00:00:0e"
IP4_REMOTE = "192.0.2.1"
IP4_LOCAL = "198.51.100.10"
IP6_REMOTE = "2001:db8::1"
IP6_LOCAL = "2001:db8:0:1::2"

TPIDS = (0x8100, 0x88A8, 0x9100)


def payload(n, seed=0):
    """n deterministic bytes."""
    return bytes((i * 7 + 3 + seed) & 0xFF for i in range(n))


def pad(pkt):
    """Pads a frame to the 60-byte Ethernet minimum with scapy's Padding layer, as a sender does."""
    short = MIN_FRAME - len(raw(pkt))
    if short > 0:
        pkt = pkt / Padding(load=b"\x00" * short)
    return pkt


def eth(dst=MAC_LOCAL, src=MAC_REMOTE, tags=(), ethertype=None):
    """Ether() followed by VLAN tags given as (tpid, vlan, pcp, dei), outermost first."""
    e = Ether(dst=dst, src=src)
    if tags:
        e.type = tags[0][0]
    layers = e
    for i, (tpid, vid, pcp, dei) in enumerate(tags):
        cls = Dot1AD if tpid == 0x88A8 else Dot1Q
        tag = cls(vlan=vid, prio=pcp, dei=dei)
        if i + 1 < len(tags):
            tag.type = tags[i + 1][0]
        layers = layers / tag
    if ethertype is not None:
        if tags:
            # Set the EtherType on the innermost tag.
            inner = layers
            while inner.payload and not isinstance(inner.payload, (Raw, Padding)):
                inner = inner.payload
            inner.type = ethertype
        else:
            e.type = ethertype
    return layers


def udp4(dst=MAC_LOCAL, tags=(), n=64, sport=50000, dport=50001, ttl=64, **ipkw):
    return pad(
        eth(dst=dst, tags=tags)
        / IP(src=IP4_REMOTE, dst=IP4_LOCAL, ttl=ttl, id=0x1234, **ipkw)
        / UDP(sport=sport, dport=dport)
        / Raw(payload(n))
    )


def udp6(dst=MAC_LOCAL, tags=(), n=64, sport=50000, dport=50001, hlim=64, ext=()):
    p = IPv6(src=IP6_REMOTE, dst=IP6_LOCAL, hlim=hlim)
    for x in ext:
        p = p / x
    return pad(eth(dst=dst, tags=tags) / p / UDP(sport=sport, dport=dport) / Raw(payload(n, 1)))


def arp(op, tags=()):
    if op == 1:
        return pad(
            eth(dst=MAC_BCAST, tags=tags)
            / ARP(op=1, hwsrc=MAC_REMOTE, psrc=IP4_REMOTE, hwdst="00:00:00:00:00:00", pdst=IP4_LOCAL)
        )
    return pad(
        eth(dst=MAC_LOCAL_TAGGED if tags else MAC_LOCAL, tags=tags)
        / ARP(op=2, hwsrc=MAC_REMOTE, psrc=IP4_REMOTE, hwdst=MAC_LOCAL, pdst=IP4_LOCAL)
    )


DOT1Q_100 = (0x8100, 100, 5, 1)


def valid_frames():
    """(name, frame bytes) of frames the classifier must accept."""
    out = []

    def add(name, pkt):
        out.append((name, raw(pkt)))

    add("ipv4_udp_64", udp4(n=64))
    add("ipv4_udp_1000", udp4(n=1000, sport=33000, dport=50002, ttl=255))
    add("ipv6_udp", udp6(n=100))
    add(
        "ipv6_dhcpv6_solicit",
        pad(
            eth(dst="33:33:00:01:00:02")
            / IPv6(src="fe80::ff:fe00:1", dst="ff02::1:2", hlim=1)
            / UDP(sport=546, dport=547)
            / DHCP6_Solicit(trid=0x123456)
            / DHCP6OptClientId(duid=DUID_LL(lladdr=MAC_REMOTE))
            / DHCP6OptElapsedTime(elapsedtime=0)
            / DHCP6OptIA_NA(iaid=1)
        ),
    )
    add(
        "ipv6_hbh_dstopt_udp",
        udp6(n=32, ext=(IPv6ExtHdrHopByHop(options=[RouterAlert()]), IPv6ExtHdrDestOpt()), hlim=1),
    )
    add("ipv4_options_ihl6", udp4(n=40, options=[IPOption_Router_Alert()]))
    add("ipv4_options_ihl7", udp4(n=40, options=[IPOption_RR(routers=["192.0.2.254"])]))
    add(
        "ipv4_udp_checksum_none",
        pad(eth() / IP(src=IP4_REMOTE, dst=IP4_LOCAL, ttl=64) / UDP(sport=7, dport=9, chksum=0) / Raw(payload(50))),
    )
    add(
        "ipv4_udp_dhcp_broadcast",
        pad(
            eth(dst=MAC_BCAST)
            / IP(src="0.0.0.0", dst="255.255.255.255", ttl=64, id=0)
            / UDP(sport=68, dport=67)
            / BOOTP(chaddr=bytes.fromhex(MAC_REMOTE.replace(":", "")), xid=0x01020304, flags=0x8000)
            / DHCP(options=[("message-type", "discover"), ("client_id", b"\x01\x02\x00\x5e\x00\x00\x01"), "end"])
        ),
    )
    add("dot1q_ipv4_udp", udp4(dst=MAC_LOCAL_TAGGED, tags=[DOT1Q_100]))
    add("qinq_88a8_ipv4_udp", udp4(dst=MAC_LOCAL_TAGGED, tags=[(0x88A8, 200, 3, 0), (0x8100, 100, 0, 0)]))
    add("qinq_88a8_ipv6_udp", udp6(dst=MAC_LOCAL_TAGGED, tags=[(0x88A8, 200, 0, 0), (0x8100, 100, 7, 1)]))
    add("qinq_9100_ipv4_udp", udp4(dst=MAC_LOCAL_TAGGED, tags=[(0x9100, 300, 1, 0), (0x8100, 30, 2, 0)], n=200))
    add("priority_tag_ipv4_udp", udp4(tags=[(0x8100, 0, 6, 0)]))
    add("dot1q_4095_ipv4_udp", udp4(dst=MAC_LOCAL_TAGGED, tags=[(0x8100, 4095, 0, 0)], n=10))
    add("arp_request", arp(1))
    add("arp_reply", arp(2))
    add("dot1q_arp_request", arp(1, tags=[DOT1Q_100]))
    add("qinq_arp_reply", arp(2, tags=[(0x88A8, 200, 0, 0), (0x8100, 100, 0, 0)]))
    # Three tags, the most etherconn dispatches on (test equipment stacks up to three).
    add(
        "triple_88a8_8100_8100_ipv4_udp",
        udp4(dst=MAC_LOCAL_TAGGED, tags=[(0x88A8, 200, 3, 0), (0x8100, 100, 5, 1), (0x8100, 10, 0, 0)]),
    )
    add(
        "triple_9100_88a8_8100_ipv6_udp",
        udp6(dst=MAC_LOCAL_TAGGED, tags=[(0x9100, 300, 1, 0), (0x88A8, 200, 0, 0), (0x8100, 4095, 7, 1)]),
    )
    add(
        "triple_9100_8100_8100_ipv4_udp",
        udp4(dst=MAC_LOCAL_TAGGED, tags=[(0x9100, 1, 0, 0), (0x8100, 2, 0, 0), (0x8100, 0, 6, 0)], n=4),
    )
    add("triple_8100_arp_request", arp(1, tags=[(0x8100, 4094, 0, 0), (0x8100, 1, 0, 0), (0x8100, 7, 2, 0)]))
    short = udp4(n=4)
    assert len(raw(short)) == MIN_FRAME, len(raw(short))
    add("ipv4_udp_short_padded", short)
    dgram = IP(src=IP4_REMOTE, dst=IP4_LOCAL, ttl=64, id=0x4242) / UDP(sport=5000, dport=6000) / Raw(payload(1500))
    frags = fragment(dgram, fragsize=1000)
    assert len(frags) == 2 and frags[0].flags.MF and frags[1].frag > 0
    add("ipv4_fragment_first", pad(eth() / frags[0]))
    add("ipv4_fragment_later", pad(eth() / frags[1]))
    add("ipv4_icmp_echo", pad(eth() / IP(src=IP4_REMOTE, dst=IP4_LOCAL, ttl=128) / ICMP(id=1, seq=1) / Raw(payload(32))))
    add(
        "lldp",
        pad(
            Ether(dst=MAC_LLDP, src=MAC_REMOTE, type=0x88CC)
            / LLDPDUChassisID(subtype=4, id=MAC_REMOTE)
            / LLDPDUPortID(subtype=5, id=b"eth0")
            / LLDPDUTimeToLive(ttl=120)
            / LLDPDUEndOfLLDPDU()
        ),
    )
    return out


def invalid_frames():
    """(name, frame bytes, reason) of frames the classifier must reject."""
    out = []

    def add(name, data, reason):
        out.append((name, bytes(data), reason))

    add(
        "ipv4_bad_header_checksum",
        raw(pad(eth() / IP(src=IP4_REMOTE, dst=IP4_LOCAL, chksum=0x1234) / UDP(sport=1, dport=2) / Raw(payload(30)))),
        "IPv4 header checksum is wrong",
    )
    add(
        "ipv4_udp_bad_checksum",
        raw(pad(eth() / IP(src=IP4_REMOTE, dst=IP4_LOCAL) / UDP(sport=1, dport=2, chksum=0xDEAD) / Raw(payload(30)))),
        "UDP checksum over IPv4 is wrong",
    )
    add(
        "ipv6_udp_bad_checksum",
        raw(pad(eth() / IPv6(src=IP6_REMOTE, dst=IP6_LOCAL) / UDP(sport=1, dport=2, chksum=0xBEEF) / Raw(payload(30)))),
        "UDP checksum over IPv6 is wrong",
    )
    add(
        "ipv6_udp_checksum_zero",
        raw(pad(eth() / IPv6(src=IP6_REMOTE, dst=IP6_LOCAL) / UDP(sport=1, dport=2, chksum=0) / Raw(payload(30)))),
        "UDP over IPv6 must carry a checksum (RFC 8200 8.1)",
    )
    full = raw(udp4(n=100))
    add("ipv4_udp_truncated", full[:-20], "IPv4 total length points past the end of the frame")
    add(
        "ipv4_ihl4",
        raw(pad(eth() / IP(src=IP4_REMOTE, dst=IP4_LOCAL, ihl=4) / UDP(sport=1, dport=2) / Raw(payload(30)))),
        "IPv4 IHL below 5",
    )
    add(
        "four_vlan_tags",
        raw(
            udp4(
                dst=MAC_LOCAL_TAGGED,
                tags=[(0x88A8, 200, 0, 0), (0x8100, 100, 0, 0), (0x8100, 10, 0, 0), (0x8100, 1, 0, 0)],
            )
        ),
        "more than three VLAN tags",
    )
    add(
        "udp_length_beyond_ip_payload",
        raw(pad(eth() / IP(src=IP4_REMOTE, dst=IP4_LOCAL) / UDP(sport=1, dport=2, len=200) / Raw(payload(30)))),
        "UDP length points past the IPv4 payload",
    )
    add(
        "udp_length_below_header",
        raw(pad(eth() / IP(src=IP4_REMOTE, dst=IP4_LOCAL) / UDP(sport=1, dport=2, len=7) / Raw(payload(30)))),
        "UDP length below the 8-byte header",
    )
    full6 = raw(udp6(n=100))
    add("ipv6_truncated", full6[:-30], "IPv6 payload length points past the end of the frame")
    add("truncated_ethernet_header", raw(udp4())[:10], "shorter than an Ethernet header")
    add("truncated_vlan_tag", raw(udp4(tags=[DOT1Q_100]))[:16], "frame ends inside a VLAN tag")
    return out


def mac(b):
    return ":".join(f"{x:02x}" for x in b)


def describe(name, data):
    """What scapy reads from the bytes of a valid frame, with byte offsets computed from the
    header-length fields scapy decodes."""
    pkt = Ether(data)
    d = {
        "name": name,
        "hex": data.hex(),
        "valid": True,
        "dst_mac": pkt.dst,
        "src_mac": pkt.src,
        "vlans": [],
    }
    ethertype = pkt.type
    off = 14
    layer = pkt.payload
    while ethertype in TPIDS:
        if not isinstance(layer, Dot1Q):
            # scapy binds 0x8100 and 0x88a8 to its tag layers but not the legacy 0x9100.
            layer = Dot1Q(raw(layer))
        d["vlans"].append({"tpid": ethertype, "id": layer.vlan, "pcp": layer.prio, "dei": bool(layer.dei)})
        ethertype = layer.type
        layer = layer.payload
        off += 4
    d["ethertype"] = ethertype
    d["l2_payload_offset"] = off
    d["ip"] = None
    d["udp"] = None
    udp = None
    udp_off = None
    if ethertype == 0x0800:
        ip = layer
        assert isinstance(ip, IP), name
        fragment_ = bool(ip.flags.MF) or ip.frag != 0
        d["ip"] = {
            "version": 4,
            "src": ip.src,
            "dst": ip.dst,
            "protocol": ip.proto,
            "ttl": ip.ttl,
            "fragment": fragment_,
            "end": off + ip.len,
        }
        if ip.proto == 17 and not fragment_:
            udp = ip.payload
            udp_off = off + ip.ihl * 4
    elif ethertype == 0x86DD:
        ip6 = layer
        assert isinstance(ip6, IPv6), name
        nh = ip6.nh
        hoff = off + 40
        cur = ip6.payload
        while nh in (0, 60, 43):  # hop-by-hop, destination options, routing
            nh = cur.nh
            hoff += (cur.len + 1) * 8
            cur = cur.payload
        d["ip"] = {
            "version": 6,
            "src": ip6.src,
            "dst": ip6.dst,
            "protocol": nh,
            "ttl": ip6.hlim,
            "fragment": False,
            "end": off + 40 + ip6.plen,
        }
        if nh == 17:
            udp = cur
            udp_off = hoff
    if udp is not None:
        assert isinstance(udp, UDP), name
        assert data[udp_off : udp_off + 2] == struct.pack("!H", udp.sport), name
        d["udp"] = {
            "src_port": udp.sport,
            "dst_port": udp.dport,
            "payload_hex": data[udp_off + 8 : udp_off + udp.len].hex(),
            "checksum": udp.chksum,
        }
    ids = "".join(f"|{v['id']}" for v in d["vlans"])
    d["key"] = f"{mac(data[0:6])}{ids}#0x{ethertype:04x}"
    return d


def write_pcap(path, frames):
    with open(path, "wb") as f:
        # Classic pcap, microsecond timestamps, snaplen 65535, LINKTYPE_ETHERNET.
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, data in enumerate(frames):
            f.write(struct.pack("<IIII", PCAP_EPOCH + i, 0, len(data), len(data)))
            f.write(data)


def rust_bytes(data, indent):
    """A Rust byte-string literal, 16 bytes per source line (line continuations)."""
    if not data:
        return 'b""'
    chunks = [data[i : i + 16] for i in range(0, len(data), 16)]
    body = ("\\\n" + indent).join("".join(f"\\x{b:02x}" for b in c) for c in chunks)
    return 'b"' + body + '"'


def rust_str(s):
    return json.dumps(s)  # a JSON string of ASCII text is a valid Rust string literal


def write_rust(path, entries):
    lines = [
        "// @generated by make_golden.py (scapy); do not edit by hand, rerun the script.",
        "// One entry per frame of golden.pcap / golden.json, in the same order.",
        "const GOLDEN: &[Golden] = &[",
    ]
    for e in entries:
        lines.append("    Golden {")
        lines.append(f"        name: {rust_str(e['name'])},")
        lines.append(f"        frame: {rust_bytes(bytes.fromhex(e['hex']), '            ')},")
        lines.append(f"        valid: {'true' if e['valid'] else 'false'},")
        lines.append(f"        invalid_reason: {rust_str(e.get('invalid_reason', ''))},")
        if not e["valid"]:
            lines.append("        expected: None,")
            lines.append("    },")
            continue
        lines.append("        expected: Some(Expected {")
        lines.append(f"            dst_mac: {rust_str(e['dst_mac'])},")
        lines.append(f"            src_mac: {rust_str(e['src_mac'])},")
        if e["vlans"]:
            lines.append("            vlans: &[")
            for v in e["vlans"]:
                lines.append(
                    f"                GoldenVlan {{ tpid: 0x{v['tpid']:04x}, id: {v['id']}, "
                    f"pcp: {v['pcp']}, dei: {'true' if v['dei'] else 'false'} }},"
                )
            lines.append("            ],")
        else:
            lines.append("            vlans: &[],")
        lines.append(f"            ethertype: 0x{e['ethertype']:04x},")
        lines.append(f"            l2_payload_offset: {e['l2_payload_offset']},")
        ip = e["ip"]
        if ip is None:
            lines.append("            ip: None,")
        else:
            lines.append("            ip: Some(GoldenIp {")
            lines.append(f"                version: {ip['version']},")
            lines.append(f"                src: {rust_str(ip['src'])},")
            lines.append(f"                dst: {rust_str(ip['dst'])},")
            lines.append(f"                protocol: {ip['protocol']},")
            lines.append(f"                ttl: {ip['ttl']},")
            lines.append(f"                fragment: {'true' if ip['fragment'] else 'false'},")
            lines.append(f"                end: {ip['end']},")
            lines.append("            }),")
        u = e["udp"]
        if u is None:
            lines.append("            udp: None,")
        else:
            lines.append("            udp: Some(GoldenUdp {")
            lines.append(f"                src_port: {u['src_port']},")
            lines.append(f"                dst_port: {u['dst_port']},")
            lines.append(f"                payload: {rust_bytes(bytes.fromhex(u['payload_hex']), '                    ')},")
            lines.append(f"                checksum: 0x{u['checksum']:04x},")
            lines.append("            }),")
        lines.append(f"            key: {rust_str(e['key'])},")
        lines.append("        }),")
        lines.append("    },")
    lines.append("];")
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def main():
    out_dir = HERE
    if len(sys.argv) == 3 and sys.argv[1] == "--out":
        out_dir = sys.argv[2]
    elif len(sys.argv) != 1:
        sys.exit("usage: python3 make_golden.py [--out DIR]")
    entries = [describe(name, data) for name, data in valid_frames()]
    for name, data, reason in invalid_frames():
        entries.append({"name": name, "hex": data.hex(), "valid": False, "invalid_reason": reason})
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), "duplicate frame name"

    write_pcap(os.path.join(out_dir, "golden.pcap"), [bytes.fromhex(e["hex"]) for e in entries])
    with open(os.path.join(out_dir, "golden.json"), "w", encoding="ascii", newline="\n") as f:
        json.dump(entries, f, indent=1)
        f.write("\n")
    write_rust(os.path.join(out_dir, "golden_frames.rs"), entries)
    valid = sum(e["valid"] for e in entries)
    print(f"wrote {len(entries)} frames ({valid} valid, {len(entries) - valid} invalid) to {out_dir}")


if __name__ == "__main__":
    main()
