#!/usr/bin/env bash
# Cross-checks the golden frames (made by scapy, see make_golden.py) with a second independent
# decoder, tshark, including its IPv4 header and UDP checksum validation:
#   - every valid frame: no checksum that tshark reports bad or illegal; IPv4 header checksums
#     and non-zero UDP checksums reported good; UDP checksum 0 over IPv4 reported "not present";
#     destination/source MAC, VLAN ids, IP addresses and UDP ports as golden.json says; the
#     tag stack (up to three) as tshark layers it: one vlan/ieee8021ad layer per tag, outermost
#     first, the outer TPID in eth.type, the type field behind each 802.1Q-layer tag (tshark
#     has no field for the one behind an 802.1ad tag) and every tag's priority;
#   - the invalid frames that are invalid because of a checksum: reported bad/illegal by tshark.
# Exits non-zero on any disagreement.
#
# Usage: bash check_golden_tshark.sh   (from any directory; needs tshark and python3)
#
# tshark's *.checksum.status values (epan/proto.h, checked on tshark 4.0.17 against these very
# frames): 0 = bad, 1 = good, 2 = unverified, 3 = not present, 4 = illegal.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v tshark >/dev/null || { echo "check_golden_tshark: tshark not installed" >&2; exit 1; }

fields=(frame.number ip.checksum.status udp.checksum.status eth.dst eth.src ieee8021ad.id vlan.id
    ip.src ip.dst ipv6.src ipv6.dst udp.srcport udp.dstport frame.protocols eth.type vlan.etype
    vlan.priority ieee8021ad.priority)
args=()
for f in "${fields[@]}"; do args+=(-e "$f"); done

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
# -n: no name resolution; the root warning on stderr is harmless.
tshark -n -r "$here/golden.pcap" \
    -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE \
    -T fields -E separator=/t -E occurrence=a -E aggregator=, "${args[@]}" \
    >"$out" 2> >(grep -v 'Running as user "root"' >&2)

"${PYTHON:-python3}" - "$here/golden.json" "$out" <<'PY'
import json
import sys

GOOD, BAD, NOT_PRESENT, ILLEGAL = "1", "0", "3", "4"
FIELDS = ["frame", "ip_ck", "udp_ck", "eth_dst", "eth_src", "ad_id", "vlan_id",
          "ip_src", "ip_dst", "ip6_src", "ip6_dst", "sport", "dport", "protocols", "eth_type",
          "vlan_etype", "vlan_pcp", "ad_pcp"]

# Invalid frames whose fault tshark can see as a checksum verdict: (field, allowed statuses).
CHECKSUM_FAULTS = {
    "ipv4_bad_header_checksum": ("ip_ck", {BAD}),
    "ipv4_udp_bad_checksum": ("udp_ck", {BAD}),
    "ipv6_udp_bad_checksum": ("udp_ck", {BAD}),
    "ipv6_udp_checksum_zero": ("udp_ck", {ILLEGAL}),
}

golden = json.load(open(sys.argv[1]))
rows = [dict(zip(FIELDS, line.rstrip("\n").split("\t"))) for line in open(sys.argv[2])]
errors = []
if len(rows) != len(golden):
    errors.append(f"tshark read {len(rows)} frames, golden.json has {len(golden)}")


def first(value):
    # Inner values first would be wrong for tunnels; none of these frames nests IP in IP.
    return value.split(",")[0] if value else ""


checked = 0
for g, r in zip(golden, rows):
    name = g["name"]

    def expect(what, got, want):
        if got != want:
            errors.append(f"frame {r['frame']} {name}: {what}: tshark says {got!r}, golden says {want!r}")

    if not g["valid"]:
        if name in CHECKSUM_FAULTS:
            field, allowed = CHECKSUM_FAULTS[name]
            if r.get(field, "") not in allowed:
                errors.append(f"frame {r['frame']} {name}: tshark {field} status {r.get(field)!r}, expected one of {sorted(allowed)}")
            checked += 1
        continue
    for field in ("ip_ck", "udp_ck"):
        for status in filter(None, r[field].split(",")):
            if status in (BAD, ILLEGAL):
                errors.append(f"frame {r['frame']} {name}: valid frame but tshark {field} status {status}")
    expect("eth.dst", r["eth_dst"], g["dst_mac"])
    expect("eth.src", r["eth_src"], g["src_mac"])
    ad = [str(v["id"]) for v in g["vlans"] if v["tpid"] == 0x88A8]
    other = [str(v["id"]) for v in g["vlans"] if v["tpid"] != 0x88A8]
    expect("ieee8021ad.id", r["ad_id"], ",".join(ad))
    expect("vlan.id", r["vlan_id"], ",".join(other))
    # The stack's shape: tshark names an 802.1ad tag ieee8021ad and every other one vlan.
    kinds = [p for p in r["protocols"].split(":") if p in ("vlan", "ieee8021ad")]
    want_kinds = ["ieee8021ad" if v["tpid"] == 0x88A8 else "vlan" for v in g["vlans"]]
    expect("tag layers", kinds, want_kinds)
    tpids = [v["tpid"] for v in g["vlans"]]
    expect("eth.type", int(r["eth_type"], 16), tpids[0] if tpids else g["ethertype"])
    nexts = tpids[1:] + [g["ethertype"]]
    expect("vlan.etype", r["vlan_etype"],
           ",".join(f"0x{n:04x}" for t, n in zip(tpids, nexts) if t != 0x88A8))
    expect("vlan.priority", r["vlan_pcp"],
           ",".join(str(v["pcp"]) for v in g["vlans"] if v["tpid"] != 0x88A8))
    expect("ieee8021ad.priority", r["ad_pcp"],
           ",".join(str(v["pcp"]) for v in g["vlans"] if v["tpid"] == 0x88A8))
    ip = g["ip"]
    if ip and ip["version"] == 4:
        expect("ip.checksum.status", first(r["ip_ck"]), GOOD)
        expect("ip.src", first(r["ip_src"]), ip["src"])
        expect("ip.dst", first(r["ip_dst"]), ip["dst"])
    elif ip and ip["version"] == 6:
        expect("ipv6.src", first(r["ip6_src"]), ip["src"])
        expect("ipv6.dst", first(r["ip6_dst"]), ip["dst"])
    udp = g["udp"]
    if udp:
        want = NOT_PRESENT if udp["checksum"] == 0 else GOOD
        expect("udp.checksum.status", first(r["udp_ck"]), want)
        expect("udp.srcport", first(r["sport"]), str(udp["src_port"]))
        expect("udp.dstport", first(r["dport"]), str(udp["dst_port"]))
    checked += 1

for e in errors:
    print("check_golden_tshark:", e, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"check_golden_tshark: {checked} frames agree with tshark (checksums, MACs, VLANs, IPs, ports)")
PY
