#!/usr/bin/env python3
"""UDP peer behind VLAN stacks for etherconn's tests: builds tagged UDP frames with scapy, sends
them on an interface and sniffs that interface for the datagrams a station sends back, decoded
by scapy with their VLAN stack read from the raw bytes.

Usage: udp_peer.py IFACE

Reads one JSON object per line from stdin until EOF and prints one JSON object (flushed) per
request:

  {"send": [SPEC, ...], "watch": WATCH}   ->   {"sent": N, "caught": [CAUGHT, ...]}

SPEC, one frame:
  src, dst         MAC addresses
  tags             [[tpid, vid, pcp], ...] outermost first (optional; 0x8100 is 802.1Q, any
                   other TPID is written as given in front of an 802.1Q-shaped tag)
  l3               "ipv4" (default) or "ipv6"
  ipsrc, ipdst     IP addresses
  sport, dport     UDP ports
  payload          UDP payload, a string

WATCH (optional): sniff while sending, keep the UDP frames whose source MAC is "from_mac",
and stop "grace_ms" after one whose payload is "until" arrived, or after "timeout_ms".
CAUGHT: {"src", "dst", "tags": [[tpid, vid, pcp], ...], "ipsrc", "ipdst", "sport", "dport",
"ttl", "payload", "udp_cksum_ok"} of each kept frame ("udp_cksum_ok": scapy recomputed the
UDP checksum and found the one in the frame).
"""
import json
import sys
import threading
import time

from scapy.all import IP, UDP, AsyncSniffer, Dot1Q, Ether, IPv6, Raw, conf

VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)


def build(s):
    if s.get("l3", "ipv4") == "ipv4":
        ip, ethertype = IP(src=s["ipsrc"], dst=s["ipdst"]), 0x0800
    else:
        ip, ethertype = IPv6(src=s["ipsrc"], dst=s["ipdst"]), 0x86DD
    inner = ip / UDP(sport=int(s["sport"]), dport=int(s["dport"])) / Raw(s["payload"].encode())
    tags = s.get("tags", [])
    types = [int(t[0]) for t in tags] + [ethertype]
    frame = Ether(src=s["src"], dst=s["dst"], type=types[0])
    for i, (_, vid, pcp) in enumerate(tags):
        frame = frame / Dot1Q(vlan=int(vid), prio=int(pcp), type=types[i + 1])
    return bytes(frame / inner)


def raw_tags(data):
    tags, at = [], 12
    while at + 4 <= len(data):
        tpid = int.from_bytes(data[at : at + 2], "big")
        if tpid not in VLAN_TPIDS:
            break
        tci = int.from_bytes(data[at + 2 : at + 4], "big")
        tags.append([tpid, tci & 0xFFF, tci >> 13])
        at += 4
    return tags


def untagged(p):
    """The frame with its VLAN tags cut out, decoded again: scapy decodes no 0x9100 tag."""
    data = bytes(p)
    return Ether(data[:12] + data[12 + 4 * len(raw_tags(data)) :])


def describe(p):
    tags = raw_tags(bytes(p))
    p = untagged(p)
    ip = p[IP] if IP in p else p[IPv6]
    again = Ether(bytes(p))
    del again[UDP].chksum
    again = Ether(bytes(again))
    return {
        "src": p[Ether].src,
        "dst": p[Ether].dst,
        "tags": tags,
        "ipsrc": ip.src,
        "ipdst": ip.dst,
        "sport": p[UDP].sport,
        "dport": p[UDP].dport,
        "ttl": ip.ttl if IP in p else ip.hlim,
        # Raw only: Ethernet padding after the datagram is a Padding layer.
        "payload": (p[Raw].load if Raw in p else b"").decode("utf-8", "replace"),
        "udp_cksum_ok": again[UDP].chksum == p[UDP].chksum,
    }


def serve(iface, sock, request):
    frames = [build(s) for s in request["send"]]
    watch = request.get("watch")
    if not watch:
        for f in frames:
            sock.send(Raw(f))
        return {"sent": len(frames), "caught": []}

    from_mac = watch["from_mac"].lower()
    caught, seen_until, started = [], threading.Event(), threading.Event()

    def keep(p):
        return Ether in p and p[Ether].src.lower() == from_mac and UDP in untagged(p)

    def on_packet(p):
        d = describe(p)
        caught.append(d)
        if d["payload"] == watch.get("until"):
            seen_until.set()

    sniffer = AsyncSniffer(
        iface=iface, store=False, lfilter=keep, prn=on_packet, started_callback=started.set
    )
    sniffer.start()
    if not started.wait(10):
        raise RuntimeError("the sniffer did not start")
    for f in frames:
        sock.send(Raw(f))
    seen_until.wait(watch.get("timeout_ms", 3000) / 1000)
    time.sleep(watch.get("grace_ms", 300) / 1000)
    sniffer.stop()
    return {"sent": len(frames), "caught": caught}


def main():
    conf.verb = 0
    iface = sys.argv[1]
    sock = conf.L2socket(iface=iface)
    try:
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(serve(iface, sock, json.loads(line))), flush=True)
    finally:
        sock.close()


if __name__ == "__main__":
    main()
