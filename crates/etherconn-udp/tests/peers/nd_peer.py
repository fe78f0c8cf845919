#!/usr/bin/env python3
"""Neighbour discovery peer for etherconn's responder tests: sends ARP requests and IPv6
neighbour solicitations built by scapy, untagged, behind 802.1Q and behind QinQ, on an
interface, and reports the answers it sniffs there, decoded by scapy.

Usage: nd_peer.py IFACE < CASES

CASES is one JSON object: {"peer": MAC, "ours": [MAC, ...], "cases": [CASE, ...]}.
CASE: {"name", "vlans": [[TPID, VID], ...] (outermost first), "kind": "arp" | "ns",
       "target": IP, "dst": MAC (default broadcast or the solicited-node group MAC),
       "ipsrc": IP, "ipdst": IP (ns; default the solicited-node group), "hlim": N (ns, default
       255), "slla": bool (ns, default true)}
Every case must have its own "ipsrc": one sniffer runs while every case's frame is sent, and
each answer from one of "ours" is given to the case whose "ipsrc" it is addressed to (its
ARP target address or IPv6 destination; an answer to all nodes, ff02::1, goes to the case
from "::"), so that a late answer cannot count for the next case.
Prints one JSON object: {NAME: [ANSWER, ...]}, every case present.
ANSWER: {"eth_src", "eth_dst", "vlans": [[TPID, VID], ...] (read from the raw bytes), "kind":
"arp" | "na" | "other", then for ARP "op", "hwsrc", "psrc", "hwdst", "pdst"; for NA "ipsrc",
"ipdst", "hlim", "tgt", "R", "S", "O", "lladdr", "cksum_ok" (scapy recomputed the ICMPv6
checksum and found the same)}.
"""
import json
import sys
import threading
import time

from scapy.all import (
    ARP,
    AsyncSniffer,
    Dot1AD,
    Dot1Q,
    Ether,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    conf,
    in6_getnsma,
    in6_getnsmac,
    inet_pton,
    socket,
)


def solicited(ip):
    group = in6_getnsma(inet_pton(socket.AF_INET6, ip))
    return socket.inet_ntop(socket.AF_INET6, group), in6_getnsmac(group)


def tagged(peer, dst, vlans, ethertype):
    frame = Ether(src=peer, dst=dst)
    layers = []
    for tpid, vid in vlans:
        layers.append(Dot1AD(vlan=vid) if tpid == 0x88A8 else Dot1Q(vlan=vid))
    if not layers:
        frame.type = ethertype
        return frame
    frame.type = vlans[0][0]
    for i, layer in enumerate(layers):
        layer.type = vlans[i + 1][0] if i + 1 < len(vlans) else ethertype
        frame = frame / layer
    return frame


def build(peer, case):
    vlans = case.get("vlans", [])
    if case["kind"] == "arp":
        dst = case.get("dst", "ff:ff:ff:ff:ff:ff")
        arp = ARP(op=1, hwsrc=peer, psrc=case["ipsrc"], hwdst="00:00:00:00:00:00", pdst=case["target"])
        return tagged(peer, dst, vlans, 0x0806) / arp
    group, group_mac = solicited(case["target"])
    ip = IPv6(src=case["ipsrc"], dst=case.get("ipdst", group), hlim=case.get("hlim", 255))
    ns = ICMPv6ND_NS(tgt=case["target"])
    if case.get("slla", True):
        ns = ns / ICMPv6NDOptSrcLLAddr(lladdr=peer)
    return tagged(peer, case.get("dst", group_mac), vlans, 0x86DD) / ip / ns


def raw_vlans(data):
    vlans, at = [], 12
    while at + 4 <= len(data):
        tpid = int.from_bytes(data[at : at + 2], "big")
        if tpid not in (0x8100, 0x88A8, 0x9100):
            break
        vlans.append([tpid, int.from_bytes(data[at + 2 : at + 4], "big") & 0xFFF])
        at += 4
    return vlans


def describe(p):
    out = {"eth_src": p[Ether].src, "eth_dst": p[Ether].dst, "vlans": raw_vlans(bytes(p)), "kind": "other"}
    if ARP in p:
        a = p[ARP]
        out.update(kind="arp", op=a.op, hwsrc=a.hwsrc, psrc=a.psrc, hwdst=a.hwdst, pdst=a.pdst)
    elif ICMPv6ND_NA in p:
        na = p[ICMPv6ND_NA]
        again = Ether(bytes(p))
        del again[ICMPv6ND_NA].cksum
        again = Ether(bytes(again))
        out.update(
            kind="na",
            ipsrc=p[IPv6].src,
            ipdst=p[IPv6].dst,
            hlim=p[IPv6].hlim,
            tgt=na.tgt,
            R=na.R,
            S=na.S,
            O=na.O,
            lladdr=p[ICMPv6NDOptDstLLAddr].lladdr if ICMPv6NDOptDstLLAddr in p else None,
            cksum_ok=again[ICMPv6ND_NA].cksum == na.cksum,
        )
    return out


def owner(answer):
    if answer["kind"] == "arp":
        return answer["pdst"]
    if answer["kind"] == "na":
        return "::" if answer["ipdst"] == "ff02::1" else answer["ipdst"]
    return None


def main():
    iface = sys.argv[1]
    req = json.load(sys.stdin)
    ours = {m.lower() for m in req["ours"]}
    conf.verb = 0
    sock = conf.L2socket(iface=iface)
    started = threading.Event()
    sniffer = AsyncSniffer(
        iface=iface,
        store=True,
        lfilter=lambda p: Ether in p and p[Ether].src.lower() in ours,
        started_callback=started.set,
    )
    sniffer.start()
    started.wait(10)
    time.sleep(0.2)
    for case in req["cases"]:
        sock.send(build(req["peer"], case))
        time.sleep(0.05)
    time.sleep(1.5)
    caught = sniffer.stop() or []
    by_src = {case["ipsrc"]: case["name"] for case in req["cases"]}
    results = {case["name"]: [] for case in req["cases"]}
    for p in caught:
        answer = describe(p)
        name = by_src.get(owner(answer))
        results.setdefault(name or "unattributed", []).append(answer)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
