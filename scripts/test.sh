#!/usr/bin/env bash
# etherconn's test command (the README's "Tests" command, and what .ci/run runs).
#
# Installs the system packages the tests need (scripts/setup-debian.sh), then runs, in order:
# the golden-frame checks (scapy regeneration, tshark cross-check), the XDP object check
# (etherconnkern/build.sh reproduces the committed object), rustfmt, clippy with warnings
# denied, every test target, the doctests, rustdoc with warnings denied, every fuzz target for
# a few seconds (ETHERCONN_FUZZ_SECONDS, default 5; installs cargo-fuzz if missing), and a
# build of etherconn-core with its default features (the no_std, parser-only configuration).
#
# Run it as root: the relay tests create network namespaces and veth pairs. As root it sets
# ETHERCONN_REQUIRE_ROOT_TESTS=1 so that a root-only test fails instead of skipping.
# ETHERCONN_SKIP_SETUP=1 skips the package installation (for a machine already set up).
#
# Usage: sudo bash scripts/test.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"

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
command -v cargo >/dev/null 2>&1 || { echo "test.sh: cargo not found" >&2; exit 1; }

started=$SECONDS
section() { printf '\n==== %s (at %ds) ====\n' "$*" "$((SECONDS - started))"; }
on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '\n==== FAILED (exit %d) after %ds ====\n' "$rc" "$((SECONDS - started))" >&2
    fi
}
trap on_exit EXIT

if [ "$(id -u)" -eq 0 ]; then
    export ETHERCONN_REQUIRE_ROOT_TESTS=1
    echo "running as root: ETHERCONN_REQUIRE_ROOT_TESTS=1 (root-only tests must run, not skip)"
else
    echo "not root: tests that need root will skip with a reason"
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

section "setup: system packages and scapy (scripts/setup-debian.sh)"
if [ "${ETHERCONN_SKIP_SETUP:-0}" = 1 ]; then
    echo "skipped (ETHERCONN_SKIP_SETUP=1)"
else
    bash scripts/setup-debian.sh
fi

section "golden frames: committed files match make_golden.py (scapy)"
golden="$repo/crates/etherconn-core/tests/data"
regen="$(mktemp -d)"
"${PYTHON:-python3}" "$golden/make_golden.py" --out "$regen"
for f in golden.pcap golden.json golden_frames.rs; do
    if ! cmp -s "$golden/$f" "$regen/$f"; then
        echo "$f is not what make_golden.py produces; rerun it and commit the result" >&2
        rm -rf "$regen"
        exit 1
    fi
done
rm -rf "$regen"
echo "golden.pcap, golden.json, golden_frames.rs are current"

section "golden frames: tshark agrees (checksums, MACs, VLANs, addresses, ports)"
bash "$golden/check_golden_tshark.sh"

section "etherconnkern: the committed XDP object is what etherconnkern/build.sh makes of its source"
kern="$(mktemp -d)"
bash etherconnkern/build.sh "$kern/etherconn.bpf.o"
if cmp -s "$kern/etherconn.bpf.o" etherconnkern/etherconn.bpf.o; then
    echo "byte for byte the same: the XDP tests below run the rebuilt object as well"
    rm -rf "$kern"
else
    # Drift (the source changed without a rebuild) or another clang: show how the rebuilt
    # object fares in the XDP tests, then fail either way.
    echo "etherconnkern/etherconn.bpf.o differs from a rebuild of etherconn.bpf.c;" \
        "running the XDP tests with the rebuilt object, then failing" >&2
    cp etherconnkern/etherconn.bpf.o "$kern/committed.o"
    cp "$kern/etherconn.bpf.o" etherconnkern/etherconn.bpf.o
    cargo test -p etherconn-xdp || true
    cp "$kern/committed.o" etherconnkern/etherconn.bpf.o
    rm -rf "$kern"
    echo "rebuild it with etherconnkern/build.sh and commit the result" >&2
    exit 1
fi

section "house rules: no import circles, no library source file over 600 lines before its tests"
python3 scripts/check-module-cycles.py
oversized=0
while IFS= read -r f; do
    # Lines before the file's `#[cfg(test)]` module: the code a reader has to hold in their head.
    n="$(awk '/^#\[cfg\(test\)\]/ { exit } { n++ } END { print n + 0 }' "$f")"
    if [ "$n" -gt 600 ]; then
        echo "$f: $n lines before its tests (limit 600): split it by concern" >&2
        oversized=1
    fi
done < <(find crates -path '*/src/*.rs' -not -path '*/target/*')
[ "$oversized" -eq 0 ] || exit 1
echo "every crates/*/src file is at most 600 lines before its tests"

section "cargo fmt --all -- --check"
cargo fmt --all -- --check

section "cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

section "cargo test --workspace --all-targets"
cargo test --workspace --all-targets

section "cargo test --workspace --doc"
cargo test --workspace --doc

section "cargo test -p etherconn-udp --features tokio (async API)"
cargo test -p etherconn-udp --features tokio

section "cargo test --features pcap --test pcap_feature (the facade's libpcap relay)"
cargo test --features pcap --test pcap_feature

section "cargo test -p etherconn-perf --features xdp --test bench_smoke -- bench_xdp (bench over the AF_XDP relay)"
cargo test -p etherconn-perf --features xdp --test bench_smoke -- bench_xdp

section "cargo doc --workspace --no-deps (RUSTDOCFLAGS=-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# Every fuzz target for a few seconds from the seed corpus, so that a crash on a known input (the
# seeds include inputs that once failed) or a shallow new one stops CI. Long runs are recorded in
# docs/fuzzing.md. The fuzz crate is outside the workspace (its own lock file and build flags).
section "fuzz: every target for ${ETHERCONN_FUZZ_SECONDS:=5} s from the seed corpus (cargo fuzz, no sanitizer)"
if ! cargo fuzz --version 2>/dev/null | grep -q '0\.13\.2'; then
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
fuzz_corpus="$(mktemp -d)"
python3 fuzz/make-corpus.py --out "$fuzz_corpus"
(
    cd fuzz
    cargo fuzz build --sanitizer none
    for target in $(cargo fuzz list); do
        echo "-- $target"
        # Seeds are read from the corpus directory but new inputs go to a scratch one, so the
        # generated seeds stay as made.
        mkdir -p "$fuzz_corpus/new-$target"
        log="$fuzz_corpus/$target.log"
        if ! cargo fuzz run --sanitizer none "$target" "$fuzz_corpus/new-$target" "$fuzz_corpus/$target" -- \
            -max_total_time="$ETHERCONN_FUZZ_SECONDS" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
            tail -n 60 "$log" >&2
            echo "fuzz target $target failed (the crash input is under fuzz/artifacts/$target)" >&2
            exit 1
        fi
        grep -E '^(INFO: seed corpus|stat::number_of_executed_units|stat::new_units_added)' "$log" || true
    done
)
rm -rf "$fuzz_corpus"

# etherconn-core's default features are no_std. The host target with std available still proves
# that it compiles without std (a bare-metal target would need `rustup target add`, which this
# environment cannot do); the dependency tree proves the parser pulls in no relay runtime.
section "etherconn-core alone: no_std build, and no runtime crate in its dependency tree"
cargo build -p etherconn-core
core_deps="$(cargo tree -p etherconn-core -e normal --prefix none)"
echo "$core_deps"
if grep -Eq '^(ahash|crossbeam|etherconn-relay)' <<<"$core_deps"; then
    echo "etherconn-core depends on a runtime crate with its default features" >&2
    exit 1
fi

printf '\n==== all checks passed in %ds ====\n' "$((SECONDS - started))"
