#!/usr/bin/env bash
# DORA/s of dhcp_fleet and, as the baseline, Kea's perfdhcp, against one DHCP server on a veth
# testbed this script makes (two network namespaces, removed on exit).
#
#   bash crates/etherconn-dhcp-fleet/scripts/bench.sh SERVER CLIENT CLIENTS [WINDOW]
#
#   SERVER: dnsmasq | dnsmasq-ro (dnsmasq --leasefile-ro) | kea (memfile, not persisted)
#   CLIENT: fleet | perfdhcp
#   CLIENTS: number of clients (distinct MACs); WINDOW: fleet window (default 64), or for
#            perfdhcp the offered rate in DORA/s (default 20000)
#   further arguments go to dhcp_fleet (e.g. --rto-ms 200)
#
# Each run starts a fresh server (empty lease table). Needs root, dnsmasq (dnsmasq-base),
# kea-dhcp4 (kea-dhcp4-server) and perfdhcp (kea-admin); builds dhcp_fleet in release mode.
# All traffic stays between the two namespaces.
set -euo pipefail

server="${1:?server: dnsmasq | dnsmasq-ro | kea}"
client="${2:?client: fleet | perfdhcp}"
clients="${3:?number of clients}"
window="${4:-}"
shift $(($# < 4 ? $# : 4))
extra=("$@") # more dhcp_fleet options, e.g. --rto-ms 200

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
tag="dfb$$"
nsa="${tag}a"
nsb="${tag}b"
ifa="${tag}x"
ifb="${tag}y"
dir="$(mktemp -d "/tmp/dhcp-fleet-bench.XXXXXX")"
server_pid=""

cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    for ns in "$nsa" "$nsb"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns delete "$ns" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

if [ "$client" = fleet ]; then
    (cd "$root" && cargo build -q --release -p etherconn-dhcp-fleet --bin dhcp_fleet)
fi

ip netns add "$nsa"
ip netns add "$nsb"
ip -n "$nsa" link add "$ifa" type veth peer name "$ifb" netns "$nsb"
for pair in "$nsa:$ifa" "$nsb:$ifb"; do
    ns="${pair%%:*}"; ifname="${pair#*:}"
    ip netns exec "$ns" sysctl -q -w "net.ipv6.conf.$ifname.disable_ipv6=1" || true
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$ifname" up
done
ip -n "$nsa" addr add 10.88.0.1/16 dev "$ifa"
# perfdhcp needs an address of its own (it acts as a relay agent: giaddr, unicast to the
# server); the fleet needs none.
ip -n "$nsb" addr add 10.88.0.2/16 dev "$ifb"

case "$server" in
    dnsmasq | dnsmasq-ro)
        ro=()
        [ "$server" = dnsmasq-ro ] && ro=(--leasefile-ro)
        ip netns exec "$nsa" dnsmasq --no-daemon --conf-file=/dev/null --port=0 --no-ping \
            --no-resolv --dhcp-authoritative --dhcp-range=10.88.0.10,10.88.255.250,255.255.0.0,1h \
            --dhcp-lease-max=70000 --dhcp-leasefile="$dir/leases" --pid-file="$dir/pid" \
            --interface="$ifa" --bind-interfaces --quiet-dhcp --log-facility="$dir/server.log" \
            "${ro[@]}" 2>>"$dir/server.stderr" &
        server_pid=$!
        ;;
    kea)
        cat >"$dir/kea.json" <<JSON
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "$ifa" ], "dhcp-socket-type": "raw" },
    "lease-database": { "type": "memfile", "persist": false },
    "valid-lifetime": 3600,
    "subnet4": [ { "id": 1, "subnet": "10.88.0.0/16",
                   "pools": [ { "pool": "10.88.0.10 - 10.88.255.250" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "WARN",
                   "output_options": [ { "output": "$dir/server.log" } ] } ]
} }
JSON
        KEA_LOCKFILE_DIR="$dir" KEA_PIDFILE_DIR="$dir" \
            ip netns exec "$nsa" kea-dhcp4 -c "$dir/kea.json" 2>>"$dir/server.stderr" &
        server_pid=$!
        ;;
    *) echo "unknown server $server" >&2; exit 2 ;;
esac

# Wait for the server's UDP port 67 (0x0043) in namespace a (Kea's raw socket shows no UDP
# port: give it a moment instead).
for _ in $(seq 100); do
    if grep -q ':0043 00000000:0000' "/proc/$server_pid/net/udp" 2>/dev/null; then break; fi
    sleep 0.05
done
sleep 0.5
kill -0 "$server_pid" 2>/dev/null || { echo "server did not start:" >&2; cat "$dir/server.log" >&2; exit 1; }

echo "== $server, $client, $clients clients, ${window:-default} window/rate ${extra[*]}, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
case "$client" in
    fleet)
        ip netns exec "$nsb" "$root/target/release/dhcp_fleet" --iface "$ifb" \
            --clients "$clients" --window "${window:-64}" --json "${extra[@]}" \
            | tee "$dir/fleet.json" \
            | python3 -c 'import json,sys; r=json.load(sys.stdin)["report"]; print("fleet: leased %d/%d failed %d naks %d retransmits %d DORA/s %.0f (%.2f s) p50 %.1f ms p99 %.1f ms" % (r["leased"], r["clients"], r["failed"], r["counters"]["naks"], r["counters"]["retransmits"], r["setups_per_sec"], r["dora_secs"], r["setup_times"]["p50_ms"], r["setup_times"]["p99_ms"]) + "".join(" %s %d" % (k, n) for k, n in r["failures_by_reason"]))'
        ;;
    perfdhcp)
        # -R distinct clients, -n exchanges, -r offered rate; -p caps the run time. With
        # PERFDHCP_SPREAD_MACS=1 the MACs come from a file of the fleet's spread MACs instead
        # of perfdhcp's consecutive ones (perfdhcp picks one at random per exchange).
        macs=()
        if [ "${PERFDHCP_SPREAD_MACS:-0}" = 1 ]; then
            python3 -c "
for i in range($clients):
    v = (i * 0x9e3779b97f4a7c15) & ((1 << 40) - 1)
    print('02:' + ':'.join('%02x' % ((v >> s) & 0xff) for s in (32, 24, 16, 8, 0)))
" >"$dir/macs"
            macs=(-M "$dir/macs")
        fi
        ip netns exec "$nsb" perfdhcp -4 -l "$ifb" -R "$clients" -n "$clients" "${macs[@]}" \
            -r "${window:-20000}" -p 60 -d 2 10.88.0.1 >"$dir/perfdhcp.txt" 2>&1 || true
        # One line: the achieved rate, then sent/received/drops of DISCOVER-OFFER and
        # REQUEST-ACK.
        awk '/^Rate:/ {rate=$2} /^sent packets/ {s=s" sent "$3} /^received packets/ {s=s" recv "$3}
             /^drops ratio/ {s=s" drop "$3"%"} END {print "perfdhcp: DORA/s " rate " |" s}' \
            "$dir/perfdhcp.txt"
        [ "${server#dnsmasq}" != "$server" ] \
            && echo "perfdhcp: dnsmasq NAKs: $(grep -c DHCPNAK "$dir/server.log" || true)"
        ;;
    *) echo "unknown client $client" >&2; exit 2 ;;
esac
