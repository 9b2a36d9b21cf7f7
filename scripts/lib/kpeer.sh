# shellcheck shell=bash
# A real Linux kernel as a test peer: Debian's kernel (linux-image-amd64, with the ip_vs,
# pktgen and bonding modules this machine's kernel lacks) booted under qemu (TCG) from a small
# busybox initramfs, its NIC a tap in a test namespace. Source it from bash.
#
#   kpeer_base                  builds (once, cached) the base initramfs; prints its path
#   kpeer_boot NS TAP SCRIPT OUT [SECONDS]
#                               boots the guest in netns NS with its eth0 on tap TAP (which
#                               this creates in NS; enslave it to a bridge yourself), runs
#                               SCRIPT (a file: /bin/sh in the guest, busybox + /sbin/ip +
#                               ipvsadm, modules loaded) and powers off; the serial console
#                               goes to OUT. Returns 0 if the guest printed "KPEER-DONE rc=0"
#                               within SECONDS (default 120), else 1. Runs in the background
#                               if you put it there (`kpeer_boot ... &`): every loop is bounded
#                               by SECONDS (qemu is killed then). TAP may be a comma-separated
#                               list: one virtio NIC per tap, eth0, eth1... in that order
#                               (KPEER_NIC_OPTS: extra virtio-net-pci options for every NIC).
#                               KPEER_BINS: more binaries for the guest (stripped, with their
#                               shared libraries, at the same paths); KPEER_MEM: its memory
#                               in MiB (default 512); KPEER_MONITOR: a unix socket path for
#                               qemu's monitor (e.g. `set_link n1 off`: NIC 1 loses carrier).
#                               KPEER_TREE: a directory whose files join the guest's root;
#                               KPEER_INIT: the guest's first program instead of /init (e.g.
#                               one that hands over to systemd, see systemd_unit.sh).
#
# The guest's /init loads the modules, prints "KPEER-READY", runs the script, prints
# "KPEER-DONE rc=N" and powers off. Gotcha: busybox's shell prefers its own `ip` applet; the
# guest has iproute2 at /sbin/ip (use the full path for netns or bridge commands).
# Needs root, qemu-system-x86, linux-image-amd64, busybox-static, ipvsadm, kmod (setup.sh).

KPEER_CACHE=${KPEER_CACHE:-/var/cache/xlvs-kpeer}
# Modules the guest loads (with their dependencies, in order).
KPEER_MODULES=${KPEER_MODULES:-"virtio_pci virtio_net veth ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sh ip_vs_mh"}

_kpeer_err() { printf 'kpeer: %s\n' "$*" >&2; }

# The guest kernel: the newest Debian kernel image installed.
kpeer_kernel() {
  local v
  v=$(find /boot -maxdepth 1 -name 'vmlinuz-*-amd64' -printf '%f\n' 2>/dev/null | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
  [ -n "$v" ] || { _kpeer_err "no /boot/vmlinuz-*-amd64 (install linux-image-amd64)"; return 1; }
  printf '%s\n' "$v"
}

# Copies binary $1 and the shared libraries it needs into root $2.
_kpeer_bin() {
  local bin=$1 root=$2 lib
  install -D -m 0755 "$bin" "$root$bin" || return 1
  for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' | sort -u); do
    [ -e "$root$lib" ] || install -D -m 0755 "$lib" "$root$lib" || return 1
  done
}

kpeer_base() {
  local kver out root m path order tmp
  kver=$(kpeer_kernel) || return 1
  # The cache is per kernel and module list (and this script's /init).
  out="$KPEER_CACHE/base-$kver-$(printf '%s' "$KPEER_MODULES" | cat - "${BASH_SOURCE[0]}" | md5sum | cut -c1-8).cpio.gz"
  if [ -s "$out" ]; then
    printf '%s\n' "$out"
    return 0
  fi
  mkdir -p "$KPEER_CACHE" || return 1
  tmp=$(mktemp -d "$KPEER_CACHE/build.XXXXXX") || return 1
  root=$tmp/root
  mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,run,etc,lib/modules} || return 1
  install -m 0755 /bin/busybox "$root/bin/busybox" || { _kpeer_err "busybox-static missing"; rm -rf "$tmp"; return 1; }
  for a in $("$root/bin/busybox" --list); do
    case $a in ip | busybox) ;; *) ln -sf busybox "$root/bin/$a" ;; esac
  done
  _kpeer_bin "$(command -v ipvsadm)" "$root" || { _kpeer_err "ipvsadm missing"; rm -rf "$tmp"; return 1; }
  _kpeer_bin /usr/bin/ip "$root" 2>/dev/null || _kpeer_bin /sbin/ip "$root" || { rm -rf "$tmp"; return 1; }
  [ -e "$root/sbin/ip" ] || ln -sf /usr/bin/ip "$root/sbin/ip"
  # Modules with their dependencies, in load order, once each.
  order=$tmp/order
  : >"$order"
  for m in $KPEER_MODULES; do
    modprobe -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }' >>"$order" ||
      { _kpeer_err "no module $m for $kver"; rm -rf "$tmp"; return 1; }
  done
  : >"$root/modules"
  awk '!seen[$0]++' "$order" | while read -r path; do
    install -D -m 0644 "$path" "$root$path" || exit 1
    printf '%s\n' "$path" >>"$root/modules"
  done || { rm -rf "$tmp"; return 1; }
  cat >"$root/init" <<'INIT'
#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
while read -r m; do
  case "$m" in
    *.ko.xz) xz -dc "$m" > /tmp/m.ko && insmod /tmp/m.ko ;;
    *.ko.zst) zstd -dc "$m" > /tmp/m.ko 2>/dev/null && insmod /tmp/m.ko ;;
    *) insmod "$m" ;;
  esac
done < /modules
/sbin/ip link set lo up
echo KPEER-READY
sh /scenario.sh
echo "KPEER-DONE rc=$?"
poweroff -f
INIT
  chmod 0755 "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$tmp/base.cpio.gz" || { rm -rf "$tmp"; return 1; }
  mv "$tmp/base.cpio.gz" "$out" && rm -rf "$tmp"
  printf '%s\n' "$out"
}

kpeer_boot() {
  local ns=$1 tap=$2 script=$3 out=$4 secs=${5:-120} base kver dir pid i rc=1
  base=$(kpeer_base) || return 1
  kver=$(kpeer_kernel) || return 1
  dir=$(mktemp -d) || return 1
  # The scenario, appended to the base as a second cpio archive (the kernel reads both).
  mkdir -p "$dir/root" && install -m 0755 "$script" "$dir/root/scenario.sh" || { rm -rf "$dir"; return 1; }
  local b
  for b in ${KPEER_BINS:-}; do
    _kpeer_bin "$b" "$dir/root" && strip "$dir/root$b" || { rm -rf "$dir"; return 1; }
  done
  if [ -n "${KPEER_TREE:-}" ]; then
    cp -a "$KPEER_TREE/." "$dir/root/" || { rm -rf "$dir"; return 1; }
  fi
  (cd "$dir/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$dir/scenario.cpio.gz" || { rm -rf "$dir"; return 1; }
  cat "$base" "$dir/scenario.cpio.gz" >"$dir/initrd.gz"
  local nics=() t n=0
  for t in ${tap//,/ }; do
    ip -n "$ns" tuntap add dev "$t" mode tap 2>/dev/null || true
    ip -n "$ns" link set "$t" up || { rm -rf "$dir"; return 1; }
    nics+=(-netdev "tap,id=n$n,ifname=$t,script=no,downscript=no"
      -device "virtio-net-pci,netdev=n$n,mac=52:54:00:12:$(printf '%02x:%02x' "$n" $((RANDOM % 256)))${KPEER_NIC_OPTS:+,$KPEER_NIC_OPTS}")
    n=$((n + 1))
  done
  ip netns exec "$ns" qemu-system-x86_64 -accel tcg -cpu max -m "${KPEER_MEM:-512}" -smp 1 \
    -kernel "/boot/vmlinuz-$kver" -initrd "$dir/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 rdinit=${KPEER_INIT:-/init}" -nographic -no-reboot \
    "${nics[@]}" ${KPEER_MONITOR:+-monitor "unix:$KPEER_MONITOR,server=on,wait=off"} \
    </dev/null >"$out" 2>&1 &
  pid=$!
  for ((i = 0; i < secs * 10; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    sleep 0.2
    kill -9 "$pid" 2>/dev/null
    _kpeer_err "guest still running after ${secs}s (killed); console in $out"
  fi
  wait "$pid" 2>/dev/null
  grep -q 'KPEER-DONE rc=0' "$out" && rc=0
  rm -rf "$dir"
  return "$rc"
}
