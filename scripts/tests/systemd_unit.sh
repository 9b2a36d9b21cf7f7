#!/usr/bin/env bash
# The package under a real systemd: Debian's kernel under qemu (TCG) boots this machine's
# systemd 252 as PID 1 (with journald) from an initramfs holding scripts/package.sh's .deb,
# dpkg and the libraries the package depends on. A scenario unit in the guest, with a client
# and a realserver in namespaces of their own on veths (LVS-NAT through xlvsd on both):
#  - `dpkg -i` installs it; /etc/default/xlvs and /etc/xlvs/rules are edited;
#  - `systemctl enable --now xlvsd` returns once xlvsd said READY=1 (Type=notify): active, the
#    services of /etc/xlvs/rules listed, a request through the VIP answered;
#  - the unit's sandbox and capabilities are enough (no CAP_SYS_ADMIN);
#  - `systemctl reload xlvsd` applies a changed rules file;
#  - an upgrade (`dpkg -i` over the installed package: its postinst try-restarts the unit)
#    during a download keeps it (byte-exact, the table saved and restored: the journal says
#    so);
#  - xlvsd SIGKILLed: systemd restarts it (Restart=on-failure), and it serves again;
#  - the journal holds xlvsd's lines with their priorities and no timestamps of its own;
#  - `systemctl stop xlvsd` ends it cleanly.
# Needs root, qemu-system-x86, linux-image-amd64, busybox-static, systemd, curl, ethtool.
# xlvs-test: alone
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/kpeer.sh
. "$HERE/../lib/kpeer.sh"

test_init sd
# The namespace and directory go with lab_down at the end.
NS=xl-$ID-sd
D=$LAB_TMP_ROOT/xlvs-lab-$ID
mkdir -p "$D"
ip netns add "$NS"
TREE=$D/tree

DEB=$(ls "$TESTLIB_ROOT"/target/deb/xlvs_*.deb 2>/dev/null | head -1 || true)
if [ -z "$DEB" ] || [ "$DEB" -ot "$TESTLIB_ROOT/target/release/xlvsd" ] || [ "$DEB" -ot "$TESTLIB_ROOT/packaging/xlvsd.service" ]; then
  log "building the package"
  DEB=$(bash "$TESTLIB_ROOT/scripts/package.sh" | tail -1)
fi
[ -s "$DEB" ] || fail "no package ($DEB)"
log "package: $DEB"

R=$TREE/root
mkdir -p "$R"
# The package goes in as the operator's would, by dpkg in the guest (its Depends: are this
# machine's libraries, copied; a shim stands for init-system-helpers' deb-systemd-invoke,
# which is Perl: it calls systemctl as the real one does without a policy-rc.d).
cp "$DEB" "$R/xlvs.deb"
dpkg-deb -x "$DEB" "$TREE/pkg"
for b in "$TREE/pkg/usr/sbin/xlvsd" "$TREE/pkg/usr/sbin/xlvsadm"; do
  for lib in $(ldd "$b" | grep -o '/[^ ]*' | sort -u); do
    [ -e "$R$lib" ] || install -D -m 0755 "$lib" "$R$lib"
  done
done
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/triggers" "$R/usr/sbin" "$R/sbin"
: >"$R/var/lib/dpkg/status"
: >"$R/var/lib/dpkg/available"
printf '#!/bin/sh\nexit 0\n' >"$R/sbin/ldconfig"
printf '#!/bin/sh\nexit 0\n' >"$R/sbin/start-stop-daemon"
printf '#!/bin/sh\nexec systemctl "$@"\n' >"$R/usr/sbin/deb-systemd-invoke"
chmod 755 "$R/sbin/ldconfig" "$R/sbin/start-stop-daemon" "$R/usr/sbin/deb-systemd-invoke"
# systemd's own units: the targets, journald and its sockets (as Debian ships them).
mkdir -p "$R/lib/systemd/system" "$R/etc/systemd/system/multi-user.target.wants" \
  "$R/lib/systemd/system/sockets.target.wants" "$R/lib/systemd/system/sysinit.target.wants"
cp /lib/systemd/system/*.target "$R/lib/systemd/system/"
for u in systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket; do
  cp "/lib/systemd/system/$u" "$R/lib/systemd/system/"
done
ln -s ../systemd-journald.socket "$R/lib/systemd/system/sockets.target.wants/"
ln -s ../systemd-journald-dev-log.socket "$R/lib/systemd/system/sockets.target.wants/"
ln -s ../systemd-journald.service "$R/lib/systemd/system/sysinit.target.wants/"
ln -sf /lib/systemd/system/multi-user.target "$R/etc/systemd/system/default.target"
cat >"$R/etc/systemd/system/xlvs-scenario.service" <<'EOF'
[Unit]
Description=xlvs unit test scenario
After=basic.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c '/bin/sh /scenario.sh; echo "KPEER-DONE rc=$?" >/dev/console; sync; poweroff -f'
StandardOutput=journal+console
StandardError=journal+console
EOF
ln -s ../xlvs-scenario.service "$R/etc/systemd/system/multi-user.target.wants/"
mkdir -p "$R/etc" "$R/var/log" "$R/root" "$R/www"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\nsystemd-journal:x:101:\nnogroup:x:65534:\n' >"$R/etc/group"
: >"$R/etc/machine-id"
printf 'PRETTY_NAME="xlvs test guest"\nID=debian\n' >"$R/etc/os-release"
head -c 1500000 /dev/urandom >"$R/www/big"
SUM=$(sha256sum "$R/www/big" | awk '{ print $1 }')
echo "small" >"$R/www/index.html"
# PID 1 first: modules, a tmpfs root (systemd's mount namespaces want a real one), systemd.
cat >"$R/sdinit" <<'EOF'
#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do
  case "$m" in
    *.ko.xz) xz -dc "$m" > /tmp/m.ko && insmod /tmp/m.ko ;;
    *.ko.zst) zstd -dc "$m" > /tmp/m.ko 2>/dev/null && insmod /tmp/m.ko ;;
    *) insmod "$m" ;;
  esac
done < /modules
echo KPEER-READY
mkdir -p /newroot
mount -t tmpfs -o size=600m,mode=755 root /newroot
for e in /*; do
  case "$e" in /proc | /sys | /dev | /newroot) ;; *) cp -a "$e" /newroot/ ;; esac
done
mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/run /newroot/tmp
umount /proc /sys /dev
exec switch_root /newroot /lib/systemd/systemd
EOF
chmod 755 "$R/sdinit"

cat >"$D/scenario.sh" <<EOF
#!/bin/sh
SUM=$SUM
EOF
cat >>"$D/scenario.sh" <<'EOF'
set -u
# Installed as an operator installs it, then configured as the operator would edit it.
# (Full paths: busybox's shell prefers its own dpkg applet to the real one.)
/usr/bin/dpkg -i --force-depends /xlvs.deb >/tmp/dpkg.log 2>&1 || { echo "SD-FAIL: dpkg -i: $(tail -5 /tmp/dpkg.log)"; exit 1; }
echo "SD: dpkg -i: $(/usr/bin/dpkg-query -W -f '${Package} ${Version} ${Status}' xlvs)"
sed -i 's|^XLVSD_OPTS=.*|XLVSD_OPTS="--iface vcli0 --iface vrs0 --rules /etc/xlvs/rules --max-conns 65536"|' /etc/default/xlvs
grep -q -- '--iface vcli0' /etc/default/xlvs || { echo "SD-FAIL: the packaged /etc/default/xlvs has no XLVSD_OPTS line"; exit 1; }
cat >/etc/xlvs/rules <<'RULES'
-A -t 192.0.2.100:80 -s rr
-a -t 192.0.2.100:80 -r 10.10.0.11:80 -m -w 1
RULES
EOF
cat >>"$D/scenario.sh" <<'EOF'
set -u
say() { echo "SD: $*"; }
die() { echo "SD-FAIL: $*"; journalctl -u xlvsd --no-pager -n 30 -o cat; systemctl status xlvsd --no-pager 2>&1 | head -20; exit 1; }
ms() { cut -d' ' -f1 /proc/uptime | awk '{ printf "%d", $1 * 1000 }'; }
IP=/sbin/ip
# The lab: a client and a realserver namespace on veths to the director (this guest).
$IP netns add cli; $IP netns add rs
$IP link add vcli0 type veth peer name eth0 netns cli
$IP link add vrs0 type veth peer name eth0 netns rs
$IP addr add 192.0.2.1/24 dev vcli0; $IP addr add 192.0.2.100/32 dev vcli0
$IP addr add 10.10.0.1/24 dev vrs0
$IP link set vcli0 up; $IP link set vrs0 up
$IP -n cli addr add 192.0.2.2/24 dev eth0; $IP -n cli link set eth0 up; $IP -n cli link set lo up
$IP -n rs addr add 10.10.0.11/24 dev eth0; $IP -n rs link set eth0 up; $IP -n rs link set lo up
$IP -n rs route add default via 10.10.0.1
for n in cli rs; do $IP netns exec $n ethtool -K eth0 tx off >/dev/null 2>&1; done
ethtool -K vcli0 tx off >/dev/null 2>&1; ethtool -K vrs0 tx off >/dev/null 2>&1
echo 0 > /proc/sys/net/ipv4/ip_forward
$IP netns exec rs busybox httpd -p 80 -h /www
get() { $IP netns exec cli curl -sS --max-time 10 "$@"; }

say "bpffs: $(grep ' bpf ' /proc/mounts | tr '\n' ' ')"
t=$(ms); systemctl enable --now xlvsd || die "systemctl enable --now xlvsd failed"
say "start: systemctl enable --now returned after $(( $(ms) - t )) ms"
[ "$(systemctl is-active xlvsd)" = active ] || die "not active after start"
journalctl -u xlvsd -o cat | grep -q "xlvsd: ready" || die "start returned before xlvsd's ready line"
L=$(xlvsadm -L -n) || die "xlvsadm -L -n: $L"
echo "$L" | grep -q "192.0.2.100:80" || die "the rules' service is not listed: $L"
[ "$(get -o /dev/null -w '%{http_code}' http://192.0.2.100/)" = 200 ] || die "no answer through the VIP"
say "start: active, service listed, VIP answers"
caps=$(grep CapEff /proc/$(systemctl show -p MainPID --value xlvsd)/status | awk '{ print $2 }')
say "xlvsd's effective capabilities: $caps"
case $(( 0x$caps >> 21 & 1 )) in 1) die "xlvsd runs with CAP_SYS_ADMIN" ;; esac

echo "-a -t 192.0.2.100:80 -r 10.10.0.12:80 -m -w 2" >> /etc/xlvs/rules
systemctl reload xlvsd || die "systemctl reload failed"
sleep 1
xlvsadm -L -n | grep -q "10.10.0.12:80" || die "the reload did not add 10.10.0.12: $(xlvsadm -L -n)"
journalctl -u xlvsd -o cat | grep -qi "reload" || die "the reload was not logged"
sed -i '/10.10.0.12/d' /etc/xlvs/rules
systemctl reload xlvsd; sleep 1
say "reload: a changed rules file applied"

get --limit-rate 150k -o /tmp/big http://192.0.2.100/big & DL=$!
sleep 3
pid1=$(systemctl show -p MainPID --value xlvsd)
# An upgrade: dpkg -i of the package over itself runs prerm upgrade and postinst configure
# with the old version, which try-restarts the unit.
t=$(ms); /usr/bin/dpkg -i --force-depends /xlvs.deb >/tmp/dpkg2.log 2>&1 || die "dpkg -i (upgrade): $(tail -5 /tmp/dpkg2.log)"
say "upgrade: dpkg -i over the installed package returned after $(( $(ms) - t )) ms"
wait $DL || die "the download across the restart failed"
[ "$(sha256sum /tmp/big | cut -d' ' -f1)" = "$SUM" ] || die "the download across the restart is corrupted"
[ "$(systemctl show -p MainPID --value xlvsd)" != "$pid1" ] || die "the upgrade did not restart xlvsd: $(tr "\n" ";" </tmp/dpkg2.log)"
j=$(journalctl -u xlvsd -o cat)
echo "$j" | grep -E "connection table entries saved" | tail -1 | sed 's/^/SD: journal: /'
echo "$j" | grep -E "entries back in" | tail -1 | sed 's/^/SD: journal: /'
echo "$j" | grep -qE "^[0-9]+ connection table entries saved" || die "the stop did not save the table"
echo "$j" | grep -qE "entries back in .* 0 not inserted" || die "the new xlvsd did not restore the table"
say "upgrade: the download went on across the restart, byte-exact"

pid2=$(systemctl show -p MainPID --value xlvsd)
kill -9 "$pid2"
ok=
for i in $(seq 1 100); do
  p=$(systemctl show -p MainPID --value xlvsd)
  if [ "$(systemctl is-active xlvsd)" = active ] && [ "$p" != 0 ] && [ "$p" != "$pid2" ]; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || die "not restarted after SIGKILL: $(systemctl show -p ActiveState,SubState,NRestarts xlvsd)"
say "crash: restarted by systemd ($(systemctl show -p NRestarts xlvsd)), $((i / 10)).$((i % 10)) s after the SIGKILL"
[ "$(get -o /dev/null -w '%{http_code}' http://192.0.2.100/)" = 200 ] || die "no answer through the VIP after the crash restart"

journalctl -u xlvsd -o cat | grep -E '^\[20[0-9][0-9]-' | head -1 | grep -q . && die "xlvsd's journal lines carry their own timestamps"
w=$(journalctl -u xlvsd -p warning -o cat | grep -c . || true)
i=$(journalctl -u xlvsd -p info -o cat | grep -c "XDP attached" || true)
[ "$i" -ge 2 ] || die "no info lines in the journal"
say "journal: $i 'XDP attached' lines at priority info, $w at warning or above: $(journalctl -u xlvsd -p warning -o cat | sort | uniq -c | tr '\n' ';' | cut -c1-400)"

systemctl stop xlvsd
r=$(systemctl show -p Result --value xlvsd)
[ "$(systemctl is-active xlvsd)" = inactive ] || die "still active after stop"
say "stop: inactive, result $r"
exit 0
EOF

log "booting systemd in Debian's kernel under qemu (TCG)"
T0=$(date +%s)
rc=0
KPEER_MODULES="virtio_pci virtio_net veth" KPEER_MEM=1024 KPEER_TREE=$R KPEER_INIT=/sdinit \
  KPEER_BINS="/lib/systemd/systemd /lib/systemd/systemd-journald /usr/bin/systemctl /usr/bin/journalctl /usr/bin/curl /usr/sbin/ethtool /usr/bin/dpkg /usr/bin/dpkg-deb /usr/bin/dpkg-query /usr/bin/dpkg-split /usr/bin/tar" \
  kpeer_boot "$NS" sd0 "$D/scenario.sh" "$D/console" 400 || rc=$?
grep -Eo "SD(-FAIL)?: .*" "$D/console" | tr -d '\r' | sed 's/^/# guest /' || true
grep -q "SD-FAIL" "$D/console" && fail "$(grep -A40 SD-FAIL "$D/console" | tr -d '\r' | head -50)"
[ "$rc" = 0 ] || fail "the guest did not finish its scenario (rc $rc); console tail: $(tail -n 40 "$D/console" | tr -d '\r')"
log "guest run: $(($(date +%s) - T0)) s"
_TEST_DONE=1
echo "PASS $TEST_NAME"
