#!/usr/bin/env bash
# Rebuilds etherconn.bpf.o from etherconn.bpf.c (needs clang and libbpf's headers: apt clang
# libbpf-dev, see scripts/setup-debian.sh). The object is committed so that building the
# `xdp` feature needs no BPF toolchain; CI rebuilds it and runs the XDP tests with both.
#
# Usage: etherconnkern/build.sh [OUTPUT]   (default: etherconnkern/etherconn.bpf.o)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/etherconn.bpf.o}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac  # the compiler runs from $here
CLANG="${CLANG:-clang}"
arch_include="/usr/include/$(uname -m)-linux-gnu"
# -g keeps the BTF that libbpf needs for the maps' definitions (and the relay's layout test);
# llvm-strip -g then drops the DWARF, which makes the object smaller. The BTF line info still
# names the source file, joined to the compilation directory: compiled from this directory by
# a relative name with the compilation directory recorded as ".", that name is the same in
# every checkout, so the object is reproducible wherever the repository is cloned.
cd "$here"
"$CLANG" -O2 -g -target bpf -D__TARGET_ARCH_x86 -fdebug-compilation-dir=. \
    -I. -I"$arch_include" \
    -Wall -Werror \
    -c etherconn.bpf.c -o "$out"
STRIP="${LLVM_STRIP:-$(command -v llvm-strip || command -v llvm-strip-14 || true)}"
if [ -n "$STRIP" ]; then
    "$STRIP" -g "$out"
fi
echo "built $out"
