#!/usr/bin/env bash
# The README's "main job" command: etherconn-perf on a veth testbed it creates itself.
#
# Installs what the testbed needs (iproute2, ethtool: scripts/setup-debian.sh), then runs
# `etherconn-perf bench`: two network namespaces joined by a veth pair, the AF_PACKET relay with
# N emulated endpoints and, in the same run, the kernel UDP socket baseline on the same pair,
# printing packets/s, bits/s, loss and the ratio to the kernel. The testbed is removed on exit,
# Ctrl-C included. Needs root (namespaces, AF_PACKET).
#
# Usage: sudo bash scripts/demo.sh [BENCH ARGS...]   e.g. --endpoints 1,1000 --payload 64,1400
#        (see `cargo run --release -p etherconn-perf -- bench --help` and docs/performance-tool.md)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1; then
    for home in "${HOME:-/root}" "$(getent passwd "${SUDO_USER:-}" 2>/dev/null | cut -d: -f6)"; do
        if [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ]; then
            export PATH="$home/.cargo/bin:$PATH"
            break
        fi
    done
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: etherconn-perf creates network namespaces and opens AF_PACKET sockets; run it as root (sudo bash scripts/demo.sh)" >&2
    exit 1
fi
if [ "${ETHERCONN_SKIP_SETUP:-0}" != 1 ]; then
    bash scripts/setup-debian.sh
fi
exec cargo run --release -p etherconn-perf -- bench "$@"
