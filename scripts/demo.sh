#!/usr/bin/env bash
# The README's "main job" command.
#
# For now it runs the parse-and-build example (examples/parse_and_build.rs): it builds UDP frames
# with several VLAN stacks into a buffer and classifies them back. Once the perf tool exists
# (DESIGN.md section 8: its own namespace + veth testbed, N endpoints through a chosen relay and
# the kernel UDP baseline in the same run), this script becomes its front end and will need root.
#
# Usage: sudo bash scripts/demo.sh [ARGS...]   (ARGS are passed to the example)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# sudo resets PATH (and sometimes HOME): find the rustup toolchain of root or of the sudo caller.
if ! command -v cargo >/dev/null 2>&1; then
    for home in "${HOME:-/root}" "$(getent passwd "${SUDO_USER:-}" 2>/dev/null | cut -d: -f6)"; do
        if [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ]; then
            export PATH="$home/.cargo/bin:$PATH"
            export RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}" CARGO_HOME="${CARGO_HOME:-$home/.cargo}"
            break
        fi
    done
fi
command -v cargo >/dev/null 2>&1 || { echo "demo.sh: cargo not found" >&2; exit 1; }

exec cargo run --release --example parse_and_build -- "$@"
