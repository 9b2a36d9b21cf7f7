#!/usr/bin/env bash
# Install everything xlvs needs to build, test and demo on a fresh Debian machine.
# Idempotent: re-running it only checks that things are present.
set -euo pipefail

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: must run as root (apt-get, netns, XDP)" >&2
  exit 1
fi

APT_PACKAGES=(
  # xsk-rs builds libxdp/libbpf from C; aya-build needs clang for nothing, but bindgen does
  clang llvm m4 make pkg-config libelf-dev zlib1g-dev libclang-dev libpcap-dev
  # lab and tests
  iproute2 ethtool iputils-ping procps psmisc
  nginx-light curl wrk apache2-utils socat tshark netcat-openbsd
  # baselines and tools for later issues
  nftables conntrack
  # promtool checks the metrics exposition
  prometheus
  # health checks: keepalived (config test, VRRP), a DNS server, TLS certificates, md5sum
  keepalived dnsmasq-base openssl coreutils
  # a real kernel peer (IPVS sync, pktgen, bonding): Debian's kernel under qemu
  qemu-system-x86 linux-image-amd64 busybox-static ipvsadm kmod
  # the Debian package: its checks (lintian), man pages rendered (man-db, groff)
  lintian man-db groff-base
  # bonded NICs: Open vSwitch's userspace datapath runs the LACP partner and aggregation
  openvswitch-switch
  # hardening: malformed frames replayed (tcpreplay), the unit's sandbox users (setpriv)
  tcpreplay util-linux
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  grep -q 'install ok installed' <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  log "installing apt packages: ${missing[*]}"
  # Daemons (nginx, ...) must not auto-start: tests start their own inside netns.
  if [ ! -f /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

# Make sure no packaged daemon is running on the host (we run our own in netns).
for svc in nginx prometheus keepalived dnsmasq ovs-vswitchd ovsdb-server; do
  if pgrep -x "$svc" >/dev/null 2>&1 && [ -f "/run/$svc.pid" ]; then
    kill "$(cat "/run/$svc.pid")" 2>/dev/null || true
  fi
done

export PATH="$HOME/.cargo/bin:$PATH"

if ! grep -q '^rust-src' <<<"$(rustup component list --toolchain nightly --installed 2>/dev/null)"; then
  log "adding rust-src to the nightly toolchain"
  rustup component add rust-src --toolchain nightly
else
  log "nightly rust-src present"
fi

if ! grep -q '0\.13\.2' <<<"$(cargo fuzz --version 2>/dev/null)"; then
  log "installing cargo-fuzz 0.13.2 (a few minutes)"
  cargo install --locked cargo-fuzz@0.13.2
else
  log "cargo-fuzz 0.13.2 present"
fi

if ! grep -q '0\.10\.4' <<<"$(bpf-linker --version 2>/dev/null)"; then
  log "installing bpf-linker 0.10.4 (a few minutes)"
  cargo install --locked bpf-linker@0.10.4
else
  log "bpf-linker 0.10.4 present"
fi

log "setup done"
