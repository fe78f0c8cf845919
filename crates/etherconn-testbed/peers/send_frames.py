#!/usr/bin/env python3
"""Independent frame encoder for etherconn's relay tests: builds Ethernet frames with scapy and
sends them with one AF_PACKET socket on an interface.

Usage: send_frames.py IFACE [JSON]

With JSON on argv, sends that list of frames and exits. Without it, reads one JSON list per
line from stdin, sends it in order and prints "sent N" (flushed) after each line, until EOF.

A frame spec is an object:
  dst, src         MAC addresses (strings)
  tags             [[tpid, vid, pcp], ...] outermost first (optional)
  l3               "ipv4" (default), "ipv6", or "ether" (bare EtherType + payload)
  ethertype        EtherType for l3 == "ether"
  ipsrc, ipdst     IP addresses
  sport, dport     UDP ports
  payload          UDP (or L3) payload, a string
  ip               extra scapy IP()/IPv6() field values, e.g. {"ihl": 4} or {"len": 500}
  no_udp           true: IP protocol 17 followed by the raw payload instead of a UDP header
  bad_ip_chksum    true: IPv4 header checksum off by one
  bad_udp_chksum   true: UDP checksum off by one (never 0)
  truncate         cut the built frame to this many bytes
  raw              hex string: send exactly these bytes (all other fields ignored)
"""
import json
import sys

from scapy.all import IP, UDP, Dot1Q, Ether, IPv6, Raw, conf


def build(s):
    if "raw" in s:
        return bytes.fromhex(s["raw"])
    l3 = s.get("l3", "ipv4")
    payload = s.get("payload", "").encode()
    if l3 == "ether":
        inner, ethertype = Raw(payload), int(s["ethertype"])
    else:
        if l3 == "ipv4":
            ip, ethertype = IP(src=s["ipsrc"], dst=s["ipdst"], **s.get("ip", {})), 0x0800
        elif l3 == "ipv6":
            ip, ethertype = IPv6(src=s["ipsrc"], dst=s["ipdst"], **s.get("ip", {})), 0x86DD
        else:
            raise ValueError(f"unknown l3 {l3!r}")
        if s.get("no_udp"):
            if l3 == "ipv4":
                ip.proto = 17
            else:
                ip.nh = 17
            inner = ip / Raw(payload)
        else:
            inner = ip / UDP(sport=int(s["sport"]), dport=int(s["dport"])) / Raw(payload)
        if s.get("bad_ip_chksum") or s.get("bad_udp_chksum"):
            done = inner.__class__(bytes(inner))
            if s.get("bad_ip_chksum"):
                inner[IP].chksum = (done[IP].chksum + 1) & 0xFFFF
            if s.get("bad_udp_chksum"):
                inner[UDP].chksum = ((done[UDP].chksum + 1) & 0xFFFF) or 1
    tags = s.get("tags", [])
    types = [int(t[0]) for t in tags] + [ethertype]
    pkt = Ether(dst=s["dst"], src=s["src"], type=types[0])
    for i, (_tpid, vid, pcp) in enumerate(tags):
        pkt = pkt / Dot1Q(vlan=int(vid), prio=int(pcp), type=types[i + 1])
    data = bytes(pkt / inner)
    if "truncate" in s:
        data = data[: int(s["truncate"])]
    return data


def main():
    iface = sys.argv[1]
    sock = conf.L2socket(iface=iface)
    try:
        if len(sys.argv) > 2:
            for spec in json.loads(sys.argv[2]):
                sock.send(Raw(build(spec)))
            return
        for line in sys.stdin:
            if not line.strip():
                continue
            specs = json.loads(line)
            for spec in specs:
                sock.send(Raw(build(spec)))
            print(f"sent {len(specs)}", flush=True)
    finally:
        sock.close()


if __name__ == "__main__":
    main()
