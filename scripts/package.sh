#!/usr/bin/env bash
# Builds the Debian package target/deb/xlvs_VERSION_ARCH.deb with dpkg-deb from the release
# build: dpkg-deb because the package is a handful of files and the workspace already
# builds them (cargo-deb would be one more tool to install for the same result, and a
# debian/ source tree with debhelper would rebuild everything inside dpkg-buildpackage).
#   scripts/package.sh            # prints the .deb's path last
# Layout: /usr/sbin/{xlvsd,xlvsadm} (the XDP object is built into xlvsd), the unit
# /lib/systemd/system/xlvsd.service, /etc/default/xlvs and /etc/xlvs/rules (conffiles),
# /etc/xlvs/keepalived-{nat,dr}-pair.conf (examples, conffiles), man pages xlvsd(8) and
# xlvsadm(8) generated from the programs' --help (packaging/man.py), /usr/share/doc/xlvs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked --quiet 2>&1 | grep -v '^warning: xlvs-control@' || true
VERSION=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
ARCH=$(dpkg --print-architecture)
PKG=xlvs_${VERSION}_$ARCH
STAGE=$ROOT/target/deb/$PKG
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN"
inst() { # MODE SRC DEST
  install -D -m "$1" "$2" "$STAGE/$3"
}
for b in xlvsd xlvsadm; do
  inst 755 "target/release/$b" "usr/sbin/$b"
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$STAGE/usr/sbin/$b"
done
inst 644 packaging/xlvsd.service lib/systemd/system/xlvsd.service
inst 644 packaging/etc/default-xlvs etc/default/xlvs
inst 644 packaging/etc/rules etc/xlvs/rules
inst 644 docs/keepalived/nat-pair.conf etc/xlvs/keepalived-nat-pair.conf
inst 644 docs/keepalived/dr-pair.conf etc/xlvs/keepalived-dr-pair.conf
mkdir -p "$STAGE/usr/share/man/man8"
target/release/xlvsd --help >"$STAGE/xlvsd.help"
target/release/xlvsadm --help >"$STAGE/xlvsadm.help"
for m in xlvsd xlvsadm; do
  python3 packaging/man.py "$m" "$STAGE/$m.help" "$VERSION" >"$STAGE/usr/share/man/man8/$m.8"
  rm "$STAGE/$m.help"
  gzip -9n "$STAGE/usr/share/man/man8/$m.8"
done
DOC=$STAGE/usr/share/doc/xlvs
inst 644 packaging/copyright usr/share/doc/xlvs/copyright
gzip -9nc packaging/changelog >"$DOC/changelog.gz"
chmod 644 "$DOC/changelog.gz"
for f in README.md docs/ARCHITECTURE.md docs/BENCHMARKS.md; do
  gzip -9nc "$f" >"$DOC/$(basename "$f").gz"
  chmod 644 "$DOC/$(basename "$f").gz"
done
inst 644 docs/keepalived/nat-pair.conf usr/share/doc/xlvs/keepalived/nat-pair.conf
inst 644 docs/keepalived/dr-pair.conf usr/share/doc/xlvs/keepalived/dr-pair.conf
for s in postinst prerm postrm; do inst 755 "packaging/$s" "DEBIAN/$s"; done
printf '%s\n' /etc/default/xlvs /etc/xlvs/rules /etc/xlvs/keepalived-nat-pair.conf \
  /etc/xlvs/keepalived-dr-pair.conf >"$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | awk '{ print $1 }')
cat >"$STAGE/DEBIAN/control" <<CONTROL
Package: xlvs
Version: $VERSION
Architecture: $ARCH
Maintainer: xlvs maintainers <maintainers@xlvs.example.org>
Installed-Size: $SIZE
Depends: libc6 (>= 2.34), libelf1, zlib1g, libgcc-s1
Recommends: keepalived
Suggests: ipvsadm
Section: net
Priority: optional
Homepage: https://github.com/xlvs/xlvs
Description: Linux Virtual Server director with an XDP and AF_XDP data plane
 xlvs forwards the traffic of Linux Virtual Server (LVS) services in userspace:
 an XDP program steers the frames of virtual services into AF_XDP sockets, and
 worker threads schedule connections as IPVS does (rr, wrr, lc, wlc, sed, nq,
 sh, mh) and rewrite them for LVS-NAT or LVS-DR.
 .
 xlvsadm administers it with ipvsadm's syntax and output. Director pairs sync
 their connections in the Linux IPVS sync format and fail over with keepalived
 VRRP without resetting established connections.
CONTROL
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
  xargs -0 md5sum >DEBIAN/md5sums)
chmod 644 "$STAGE/DEBIAN/md5sums" "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/conffiles"
find "$STAGE" -type d -exec chmod 755 {} +
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "target/deb/$PKG.deb" >/dev/null
echo "target/deb/$PKG.deb"
