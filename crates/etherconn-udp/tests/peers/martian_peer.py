#!/usr/bin/env python3
"""Forging peer for etherconn's martian tests: builds UDP frames with scapy (any source MAC,
address and port, IPv4 flags), sends them on an interface and, when asked, sniffs that
interface for the answers a station sends back.

Usage: martian_peer.py IFACE

Reads one JSON object per line from stdin until EOF and prints one JSON object (flushed) per
request:

  {"send": [SPEC, ...], "watch": WATCH}   ->   {"sent": N, "caught": [CAUGHT, ...]}

SPEC, one frame:
  src, dst         MAC addresses
  l3               "ipv4" (default) or "ipv6"
  ipsrc, ipdst     IP addresses
  sport, dport     UDP ports
  payload          UDP payload, a string
  ip               extra scapy IP()/IPv6() field values, e.g. {"flags": 4} (the reserved bit)

WATCH (optional): sniff while sending, keep the UDP frames whose source MAC is "from_mac",
and stop "grace_ms" after one whose payload is "until" arrived, or after "timeout_ms".
CAUGHT: {"src", "dst", "ipsrc", "ipdst", "sport", "dport", "payload"} of each kept frame.
"""
import json
import sys
import threading
import time

from scapy.all import IP, UDP, AsyncSniffer, Ether, IPv6, Raw, conf


def build(s):
    extra = s.get("ip", {})
    if s.get("l3", "ipv4") == "ipv4":
        ip = IP(src=s["ipsrc"], dst=s["ipdst"], **extra)
    else:
        ip = IPv6(src=s["ipsrc"], dst=s["ipdst"], **extra)
    udp = UDP(sport=int(s["sport"]), dport=int(s["dport"]))
    return bytes(Ether(src=s["src"], dst=s["dst"]) / ip / udp / Raw(s["payload"].encode()))


def describe(p):
    ip = p[IP] if IP in p else p[IPv6]
    return {
        "src": p[Ether].src,
        "dst": p[Ether].dst,
        "ipsrc": ip.src,
        "ipdst": ip.dst,
        "sport": p[UDP].sport,
        "dport": p[UDP].dport,
        # Raw only: Ethernet padding after the datagram is a Padding layer.
        "payload": (p[Raw].load if Raw in p else b"").decode("utf-8", "replace"),
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
        return Ether in p and UDP in p and p[Ether].src.lower() == from_mac

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
