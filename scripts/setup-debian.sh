#!/usr/bin/env bash
# Installs what etherconn's tests need on Debian 12 (and derivatives such as Ubuntu): network
# namespace/veth tooling, the independent peers (tshark, dnsmasq, scapy), capture tools, and
# libpcap-dev, which the `pcap` crate under etherconn-pcap links (the workspace's tests build it).
#
# Idempotent and quick to rerun: apt is only touched when a package is missing, pip only when
# scapy is missing or at another version. Needs root (re-runs itself with sudo when available).
#
# Usage: sudo bash scripts/setup-debian.sh
set -euo pipefail

# Debian packages (the commands below prove most are installed; dpkg proves the -dev ones).
# g++: libfuzzer-sys compiles libFuzzer (C++) for the fuzz targets that test.sh runs briefly.
APT_PACKAGES=(iproute2 ethtool tshark dnsmasq-base iputils-ping tcpdump g++ libpcap-dev)
# The `xdp` feature: libbpf-sys and libxdp-sys build libbpf and libxdp from source (clang for
# bindgen and libxdp's own BPF objects, m4, pkg-config, libelf, zlib); clang, llvm and
# libbpf-dev also rebuild etherconnkern/etherconn.bpf.o (etherconnkern/build.sh).
APT_PACKAGES+=(clang llvm m4 pkg-config libelf-dev zlib1g-dev libbpf-dev)
# The independent frame encoder/decoder for the golden frames and the VLAN/QinQ peer tests.
# Pinned so that tests/data/make_golden.py regenerates the committed files byte for byte.
SCAPY_VERSION="2.8.0"
PYTHON="${PYTHON:-python3}"

log() { printf 'setup-debian: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        log "not root; re-running with sudo"
        exec sudo -E env "PATH=$PATH" bash "$0" "$@"
    fi
    log "must run as root (and sudo is not installed)" >&2
    exit 1
fi

# --- Debian packages ------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    # Only a system python without pip lands here (pyenv/venv pythons bring their own).
    missing+=(python3-pip)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    log "apt packages already installed: ${APT_PACKAGES[*]}"
else
    log "installing with apt-get: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark's postinst asks whether non-root users may capture; answer it up front.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

for cmd in ip ethtool tshark dnsmasq ping tcpdump g++ clang llvm-strip m4 pkg-config; do
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/sbin/$cmd" ]; then
        log "'$cmd' still not found after installing" >&2
        exit 1
    fi
done

# --- scapy (PyPI) ---------------------------------------------------------------------------
installed_scapy="$("$PYTHON" -c 'import scapy; print(scapy.VERSION)' 2>/dev/null || true)"
if [ "$installed_scapy" = "$SCAPY_VERSION" ]; then
    log "scapy $SCAPY_VERSION already installed for $("$PYTHON" -c 'import sys; print(sys.executable)')"
else
    pip_args=(install --quiet --disable-pip-version-check --root-user-action=ignore "scapy==$SCAPY_VERSION")
    # A distribution's own python (PEP 668, e.g. Debian 12 /usr/bin/python3, Ubuntu 24.04)
    # refuses pip installs outside a venv; pyenv and venv pythons do not. Only then override it.
    if "$PYTHON" - <<'PY'
import os, sys, sysconfig
in_venv = sys.prefix != sys.base_prefix
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if (not in_venv and os.path.exists(marker)) else 1)
PY
    then
        pip_args+=(--break-system-packages)
    fi
    log "installing scapy $SCAPY_VERSION (found: ${installed_scapy:-none}): $PYTHON -m pip ${pip_args[*]}"
    "$PYTHON" -m pip "${pip_args[@]}"
    "$PYTHON" -c "import scapy; assert scapy.VERSION == '$SCAPY_VERSION', scapy.VERSION"
fi

log "done"
