#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target from the project's own data.

Nothing here is committed as a corpus: the seeds are made from the golden frames
(crates/etherconn-core/tests/data/golden.json), the classify regression fixtures
(crates/etherconn-core/tests/data/regressions/*.hex), the relay's default receive filter (built
by the `bpf` target itself from its options: ARP, IPv4 and IPv6 behind at most three tags),
hand-assembled classic BPF programs (among them the program tcpdump compiles for
`udp dst port 67`), DHCP replies laid out as dnsmasq sends them, and lease-file lines as dnsmasq
writes them, and the ICMPv6 neighbour discovery messages of the wire unit tests. Each input
follows the layout its target's header comment documents.

Some seeds are inputs that once failed a target, kept so that a regression shows at once: a
`build_udp` frame to UDP port 0 (which the builder used to write and every receiver drops), a
lease line with a signed MAC octet (`+2:...`, which MacAddr::from_str used to take), DHCP
replies with an option dhcproto cannot decode before the server identifier (it used to drop
the rest) or with option 94 of the wrong length (a `debug_assert!` in dhcproto's decoder), and
replies with `hlen` 16, 17 and 255 (dhcproto's `chaddr()` panics above 16).

Usage: python3 fuzz/make-corpus.py [--out DIR]   (default: fuzz/corpus; writes DIR/<target>/)
Standard library only. The same input always gives the same files.
"""

import argparse
import hashlib
import ipaddress
import json
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "crates" / "etherconn-core" / "tests" / "data"
TPIDS = [0x8100, 0x88A8, 0x9100]


def golden():
    return json.loads((DATA / "golden.json").read_text())


def regressions():
    """(name, frame) of every classify regression fixture."""
    for path in sorted((DATA / "regressions").glob("*.hex")):
        lines = [l for l in path.read_text().splitlines() if not l.startswith("#")]
        yield path.stem, bytes.fromhex("".join("".join(lines).split()))


class Corpus:
    def __init__(self, root):
        self.root = root
        self.counts = {}

    def add(self, target, name, data):
        d = self.root / target
        d.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(data).hexdigest()[:8]
        (d / f"{name}-{digest}").write_bytes(data)
        self.counts[target] = self.counts.get(target, 0) + 1


# ---------------------------------------------------------------------------------------------
# classify: flags byte, stripped tag's TCI (big-endian), frame.


def classify_seeds(c):
    frames = [(f["name"], bytes.fromhex(f["hex"])) for f in golden()] + list(regressions())
    # Plain; no UDP checksum check; a stripped 802.1Q tag (TCI 100); a stripped 0x9100 tag
    # with PCP 1 and no checksum check.
    for name, frame in frames:
        for prefix in (b"\x00\x00\x00", b"\x08\x00\x00", b"\x01\x00\x64", b"\x0b\x20\xc8"):
            c.add("classify", f"{name}-{prefix.hex()}", prefix + frame)


# ---------------------------------------------------------------------------------------------
# build_udp: shape, faults, tags, MACs, addresses, ports, TTL, DSCP, slack, payload.


def mac(s):
    return bytes.fromhex(s.replace(":", ""))


def build_input(shape, faults, tags, dst_mac, src_mac, src_ip, dst_ip, sport, dport, ttl,
                dscp, slack, payload):
    out = bytes([shape, faults])
    for sel, tci in tags:
        out += bytes([sel]) + struct.pack("!H", tci)
    out += dst_mac + src_mac + src_ip + dst_ip
    out += struct.pack("!HHBBB", sport, dport, ttl, dscp, slack)
    return out + payload


def build_seeds(c):
    for f in golden():
        if not f["valid"] or not f.get("udp") or not f.get("ip"):
            continue
        frame = bytes.fromhex(f["hex"])
        ip, udp = f["ip"], f["udp"]
        at = f["l2_payload_offset"]
        ipv6 = ip["version"] == 6
        if ipv6:
            dscp = (((frame[at] & 0xF) << 4) | (frame[at + 1] >> 4)) >> 2
        else:
            dscp = frame[at + 1] >> 2
        tags = [
            (TPIDS.index(t["tpid"]), (t["pcp"] << 13) | (int(t["dei"]) << 12) | t["id"])
            for t in f["vlans"]
        ]
        fields = dict(
            shape=len(tags) | (4 if ipv6 else 0),
            faults=0,
            tags=tags,
            dst_mac=mac(f["dst_mac"]),
            src_mac=mac(f["src_mac"]),
            src_ip=ipaddress.ip_address(ip["src"]).packed,
            dst_ip=ipaddress.ip_address(ip["dst"]).packed,
            sport=udp["src_port"],
            dport=udp["dst_port"],
            ttl=ip["ttl"],
            dscp=dscp,
            slack=0,
            payload=bytes.fromhex(udp["payload_hex"]),
        )
        name = f["name"]
        c.add("build_udp", name, build_input(**fields))
        # Each fault once, on the small frames only.
        if len(fields["payload"]) > 200:
            continue
        variants = {
            "mixed-families": dict(faults=0x01),
            "small-buffer": dict(faults=0x02, slack=128),
            "dscp-64": dict(faults=0x04, dscp=64),
            "largest-payload": dict(faults=0xF0),
            "payload-one-too-big": dict(faults=0xE0),
            # Selector bit 7: PCP = selector >> 2 = 40.
            "pcp-above-7": dict(tags=[(0xA0, 100)] + tags[1:],
                                shape=(fields["shape"] & 4) | max(len(tags), 1)),
            # Three tags are valid (0x9100 / 0x88a8 / 0x8100); shape bit 3 adds a fourth, which
            # the builder must refuse.
            "three-tags": dict(tags=[(2, 300), (1, 200), (0, 100)], shape=(fields["shape"] & 4) | 3),
            "four-tags": dict(tags=[(0, 1), (1, 2), (2, 3), (0, 4)],
                              shape=(fields["shape"] & 4) | 8 | 3),
            # Found by this target: the builder wrote frames to UDP port 0, which no receiver
            # (classify included) takes.
            "dst-port-0": dict(dport=0),
            "src-port-0": dict(sport=0),
            "short-padded": dict(payload=b"x"),
        }
        for vname, change in variants.items():
            c.add("build_udp", f"{name}-{vname}", build_input(**{**fields, **change}))


# ---------------------------------------------------------------------------------------------
# bpf: mode, offloaded tag; then a program or filter options; the rest is the frame.

# Linux opcode values (linux/filter.h).
LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0)
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
K, X, A = 0x00, 0x08, 0x10
TAX, TXA = 0x00, 0x80
SKF_AD_OFF = 0xFFFFF000
VLAN_TAG, VLAN_TAG_PRESENT, VLAN_TPID = 44, 48, 60
ACCEPT = 0x40000


def asm(prog):
    """Encodes (code, k) and (code, k, jt_abs, jf_abs) tuples (absolute jump targets) as
    little-endian `struct sock_filter` records."""
    out = b""
    for pc, insn in enumerate(prog):
        code, k, *jumps = insn
        jt = jf = 0
        if jumps:
            jt, jf = jumps[0] - pc - 1, jumps[1] - pc - 1
        if code == JMP | JA:
            k = k - pc - 1
        out += struct.pack("<HBBI", code, jt, jf, k)
    return out


def programs():
    ret_a = (RET | A, 0)
    yield "accept-all", [(RET | K, ACCEPT)]
    yield "reject-all", [(RET | K, 0)]
    # tcpdump -dd 'udp dst port 67' on Ethernet.
    yield "tcpdump-udp-dst-port-67", [
        (LD | H | ABS, 12),
        (JMP | JEQ | K, 0x86DD, 2, 6),
        (LD | B | ABS, 20),
        (JMP | JEQ | K, 0x11, 4, 15),
        (LD | H | ABS, 56),
        (JMP | JEQ | K, 0x43, 14, 15),
        (JMP | JEQ | K, 0x800, 7, 15),
        (LD | B | ABS, 23),
        (JMP | JEQ | K, 0x11, 9, 15),
        (LD | H | ABS, 20),
        (JMP | JSET | K, 0x1FFF, 15, 11),
        (LDX | B | MSH, 14),
        (LD | H | IND, 16),
        (JMP | JEQ | K, 0x43, 14, 15),
        (RET | K, ACCEPT),
        (RET | K, 0),
    ]
    yield "ancillary-vlan", [
        (LD | W | ABS, SKF_AD_OFF + VLAN_TAG_PRESENT),
        (JMP | JEQ | K, 0, 6, 2),
        (LD | W | ABS, SKF_AD_OFF + VLAN_TPID),
        (JMP | JEQ | K, 0x8100, 4, 6),
        (LD | W | ABS, SKF_AD_OFF + VLAN_TAG),
        ret_a,
        (RET | K, 0),
    ]
    yield "scratch-memory", [
        (LD | IMM, 9),
        (ST, 15),
        (LDX | W | IMM, 11),
        (STX, 0),
        (LD | MEM, 0),
        (MISC | TAX, 0),
        (LD | MEM, 15),
        (ALU | ADD | X, 0),
        ret_a,
    ]
    yield "alu", [
        (LD | W | LEN, 0),
        (ALU | MUL | K, 3),
        (ALU | SUB | K, 1),
        (ALU | DIV | K, 2),
        (ALU | MOD | K, 7),
        (ALU | OR | K, 0x100),
        (ALU | AND | K, 0xFFF),
        (ALU | XOR | K, 0x55),
        (ALU | LSH | K, 4),
        (ALU | RSH | K, 2),
        (ALU | NEG, 0),
        (LDX | W | LEN, 0),
        (ALU | DIV | X, 0),
        (ALU | MOD | X, 0),
        ret_a,
    ]
    yield "jumps", [
        (LD | B | ABS, 14),
        (LDX | W | IMM, 0x40),
        (JMP | JGT | X, 0, 3, 3),
        (JMP | JA, 5),
        (RET | K, 1),
        (JMP | JGE | K, 0x45, 6, 7),
        (RET | K, 2),
        (RET | K, 3),
    ]
    yield "txa-link-relative", [
        (LD | B | ABS, 0xFFE00000 + 13),
        (MISC | TAX, 0),
        (MISC | TXA, 0),
        (LD | H | IND, 12),
        ret_a,
    ]


def bpf_header(mode, offloaded=None):
    if offloaded is None:
        return bytes([mode]) + b"\x00" * 4
    return bytes([mode | 4]) + struct.pack("!HH", *offloaded)


def filter_options(ethertypes, max_tags=2, accept=ACCEPT):
    return (bytes([max_tags]) + struct.pack("!I", accept) + bytes([len(ethertypes)])
            + b"".join(struct.pack("!H", e) for e in ethertypes))


def strip_outer_tag(frame):
    """The frame as AF_PACKET shows it after the kernel moved its outer tag into metadata, and
    that tag, or None for an untagged frame."""
    if len(frame) < 18 or struct.unpack("!H", frame[12:14])[0] not in TPIDS:
        return None
    tpid = struct.unpack("!H", frame[12:14])[0]
    return frame[:12] + frame[16:], (tpid, struct.unpack("!H", frame[14:16])[0])


def bpf_seeds(c):
    frames = [(f["name"], bytes.fromhex(f["hex"])) for f in golden()]
    default = [0x0806, 0x0800, 0x86DD]
    for name, frame in frames:
        # The relay's default filter, on the frame as it is and with its outer tag offloaded.
        c.add("bpf", f"filter-default-{name}", bpf_header(2) + filter_options(default) + frame)
        stripped = strip_outer_tag(frame)
        if stripped:
            c.add("bpf", f"filter-default-offloaded-{name}",
                  bpf_header(2, stripped[1]) + filter_options(default) + stripped[0])
    some = dict(frames)
    for name in ("ipv4_udp_dhcp_broadcast", "qinq_88a8_ipv6_udp", "triple_9100_88a8_8100_ipv6_udp",
                 "four_vlan_tags", "lldp"):
        frame = some[name]
        # 3 is the most the filter takes, 4 one too many.
        for max_tags in (0, 1, 2, 3, 4):
            c.add("bpf", f"filter-max-tags-{max_tags}-{name}",
                  bpf_header(2) + filter_options(default, max_tags) + frame)
        c.add("bpf", f"filter-tpid-listed-{name}",
              bpf_header(2) + filter_options([0x8100, 0x0800]) + frame)
        c.add("bpf", f"filter-no-ethertype-{name}", bpf_header(2) + filter_options([]) + frame)
        c.add("bpf", f"filter-accept-0-{name}",
              bpf_header(2) + filter_options(default, 2, 0) + frame)
        # The default filter with an instruction overwritten: code, jt, jf, k.
        for field, value in ((0, RET | A), (1, 200), (2, 7), (3, 0x88CC)):
            over = bytes([1]) + struct.pack("!HBI", 3, field, value)
            c.add("bpf", f"filter-overwritten-{field}-{name}",
                  bpf_header(3) + filter_options(default) + over + frame)
        for pname, prog in programs():
            code = asm(prog)
            body = struct.pack("!H", len(prog)) + code + frame
            c.add("bpf", f"raw-{pname}-{name}", bpf_header(0) + body)
            c.add("bpf", f"steered-{pname}-{name}", bpf_header(1) + body)
            c.add("bpf", f"raw-{pname}-offloaded-{name}", bpf_header(0, (0x8100, 100)) + body)


# ---------------------------------------------------------------------------------------------
# dhcp_reply: the UDP payload a server sends to port 68.

MAGIC = bytes([99, 130, 83, 99])


def option(code, value):
    return bytes([code, len(value)]) + value


def ip4(s):
    return ipaddress.IPv4Address(s).packed


def bootp(op, xid, yiaddr, options, hlen=6, chaddr="02:11:22:33:44:55", siaddr="10.88.0.1",
          flags=0x8000, magic=MAGIC, end=True, pad_to=300):
    """A BOOTP message as dnsmasq writes one: fixed header, magic cookie, options, End, padded
    to the BOOTP minimum."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, hlen, 0, xid, 0, flags,
                       ip4("0.0.0.0"), ip4(yiaddr), ip4(siaddr), ip4("0.0.0.0"),
                       mac(chaddr).ljust(16, b"\0"), b"", b"")
    msg = head + magic + b"".join(options) + (b"\xff" if end else b"")
    return msg.ljust(pad_to, b"\0")


def dnsmasq_options(msg_type, server="10.88.0.1", lease=3600):
    return [
        option(53, bytes([msg_type])),
        option(54, ip4(server)),
        option(51, struct.pack("!I", lease)),
        option(58, struct.pack("!I", lease // 2)),
        option(59, struct.pack("!I", lease * 7 // 8)),
        option(1, ip4("255.255.0.0")),
        option(28, ip4("10.88.255.255")),
        option(3, ip4("10.88.0.1")),
        option(6, ip4("10.88.0.1")),
    ]


def dhcp_seeds(c):
    xid = 0x12345678
    offer = bootp(2, xid, "10.88.0.17", dnsmasq_options(2))
    c.add("dhcp_reply", "offer", offer)
    c.add("dhcp_reply", "ack", bootp(2, xid, "10.88.0.17", dnsmasq_options(5)))
    c.add("dhcp_reply", "nak", bootp(2, xid, "0.0.0.0", [
        option(53, b"\x06"), option(54, ip4("10.88.0.1")), option(56, b"wrong address")]))
    c.add("dhcp_reply", "offer-unpadded", bootp(2, xid, "10.88.0.17", dnsmasq_options(2),
                                                pad_to=0))
    # What a client sends: not a reply.
    c.add("dhcp_reply", "discover", bootp(1, xid, "0.0.0.0", [
        option(53, b"\x01"), option(55, bytes([1, 3, 6, 51, 54])),
        option(57, struct.pack("!H", 1500))], siaddr="0.0.0.0"))
    c.add("dhcp_reply", "request", bootp(1, xid, "0.0.0.0", [
        option(53, b"\x03"), option(50, ip4("10.88.0.17")), option(54, ip4("10.88.0.1"))],
        siaddr="0.0.0.0"))
    # Known bad: hlen above 6 (dhcproto's chaddr() panics above 16), no magic, no End,
    # truncated, repeated and overloaded options, an option running past the end.
    for hlen in (0, 16, 17, 255):
        c.add("dhcp_reply", f"offer-hlen-{hlen}",
              bootp(2, xid, "10.88.0.17", dnsmasq_options(2), hlen=hlen))
    c.add("dhcp_reply", "offer-no-magic",
          bootp(2, xid, "10.88.0.17", dnsmasq_options(2), magic=b"\0\0\0\0"))
    c.add("dhcp_reply", "offer-no-end",
          bootp(2, xid, "10.88.0.17", dnsmasq_options(2), end=False, pad_to=0))
    c.add("dhcp_reply", "offer-truncated-240", offer[:240])
    c.add("dhcp_reply", "offer-truncated-option", offer[:244])
    c.add("dhcp_reply", "offer-two-types",
          bootp(2, xid, "10.88.0.17", [option(53, b"\x02"), option(53, b"\x05")]))
    c.add("dhcp_reply", "offer-overload",
          bootp(2, xid, "10.88.0.17", dnsmasq_options(2) + [option(52, b"\x03")]))
    c.add("dhcp_reply", "offer-long-option",
          bootp(2, xid, "10.88.0.17", [option(53, b"\x02"), b"\x0c\xff" + b"h" * 20]))
    # dhcproto's decoder stopped at the bad subnet mask and dropped 54 and 51 after it; it
    # panics (debug_assert!) on options 94, 80 and 81 of the wrong length.
    for name, bad in (("subnet-mask-len-0", option(1, b"")),
                      ("option-94-len-1", option(94, b"\0")),
                      ("option-80-len-1", option(80, b"\0")),
                      ("option-81-len-1", option(81, b"\0"))):
        c.add("dhcp_reply", f"offer-{name}-first",
              bootp(2, xid, "10.88.0.17", [bad] + dnsmasq_options(2)))
    c.add("dhcp_reply", "offer-bad-server-len",
          bootp(2, xid, "10.88.0.17", [option(53, b"\x02"), option(54, b"\x0a\x58\x00")]))


# ---------------------------------------------------------------------------------------------
# leasefile: a dnsmasq lease file (text).

LEASES = """\
1700000000 02:aa:bb:cc:dd:ee 10.88.0.17 * *
1700000360 02:00:00:00:00:01 10.88.0.10 host-1 01:02:00:00:00:00:01
0 02:00:00:00:00:02 10.88.15.250 * ff:00:00:00:02:00:01:00:01:2c:5e:3a:10:02:00:00:00:00:02
duid 00:01:00:01:2c:5e:3a:10:02:00:00:00:00:fe
1700000000 305419896 2001:db8::17 host6 00:01:00:01:2c:5e:3a:10:02:00:00:00:00:01
"""

ODD_LEASES = """\
1700000000 02:AA:BB:CC:DD:EE 10.88.0.17 * *\r
1700000000 2-a-b-c-d-e 10.88.0.18 * *
1700000000 02:aa:bb:cc:dd:ee 010.88.0.19 * *
1700000000 02:aa:bb:cc:dd 10.88.0.20 * *
1700000000 02:aa:bb:cc:dd:ee:ff 10.88.0.21 * *
1700000000 02-aa:bb-cc:dd-ee 10.88.0.22 * *
\t 1700000000\t02:aa:bb:cc:dd:ef\t10.88.0.23

1700000000 02:aa:bb:cc:dd:f0
1700000000 +2:aa:bb:cc:dd:f1 10.88.0.24 * *
1700000000 02:aa:bb:cc:dd:f2 10.88.0.256 * *
"""


def lease_seeds(c):
    c.add("leasefile", "dnsmasq", LEASES.encode())
    c.add("leasefile", "odd-spellings", ODD_LEASES.encode())
    c.add("leasefile", "empty", b"")
    c.add("leasefile", "one-line-no-newline", b"1 02:aa:bb:cc:dd:ee 10.0.0.1")


# icmpv6: flags byte (bit 0: fill in the checksum), source and destination address, message.
# The messages are the neighbour solicitation and advertisement scapy built for the unit tests
# of crates/etherconn-core/src/wire/icmpv6.rs, with their checksums.
ICMPV6_NS = bytes.fromhex(
    "87001c270000000020010db8000000000000000000000002" "0101020000000001")
ICMPV6_NA = bytes.fromhex(
    "88008a716000000020010db8000000000000000000000002" "0201020000000002")


def v6(s):
    return ipaddress.IPv6Address(s).packed


def icmpv6_seeds(c):
    c.add("icmpv6", "ns", b"\x00" + v6("2001:db8::1") + v6("ff02::1:ff00:2") + ICMPV6_NS)
    c.add("icmpv6", "na", b"\x00" + v6("2001:db8::2") + v6("2001:db8::1") + ICMPV6_NA)
    c.add("icmpv6", "ns-dad", b"\x01" + v6("::") + v6("ff02::1:ff00:2") + ICMPV6_NS[:24])
    c.add("icmpv6", "ns-unicast", b"\x01" + v6("2001:db8::1") + v6("2001:db8::2") + ICMPV6_NS)
    c.add("icmpv6", "echo", b"\x01" + v6("2001:db8::1") + v6("2001:db8::2")
          + bytes([128, 0, 0, 0, 0, 7, 0, 9]) + b"ping")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "corpus",
                        help="directory to write <target>/ seed directories into")
    args = parser.parse_args()
    c = Corpus(args.out)
    classify_seeds(c)
    build_seeds(c)
    bpf_seeds(c)
    dhcp_seeds(c)
    lease_seeds(c)
    icmpv6_seeds(c)
    for target, n in sorted(c.counts.items()):
        print(f"{args.out / target}: {n} seeds")


if __name__ == "__main__":
    main()
