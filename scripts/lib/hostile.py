#!/usr/bin/env python3
"""Malformed and hostile frames for scripts/tests/hostile.sh, one pcap per category.

    hostile.py OUTDIR SIDE DST_MAC SRC_MAC SRC_IP DST_IP SPORT DPORT [DST_IP6 SRC_IP6]

SIDE is "vip" (frames from a client to VIP:DPORT) or "rs" (frames from a realserver
RIP:SPORT to a client, as LVS-NAT replies are steered). Each category's frames go to
OUTDIR/NN-name.pcap; the frames are built by hand (no scapy), their checksums right unless
the category is about a wrong one.
"""
import os
import struct
import sys


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ip4(s):
    return bytes(int(x) for x in s.split("."))


def ip6(s):
    import ipaddress
    return ipaddress.IPv6Address(s).packed


def tcp_seg(src, dst, sport, dport, flags, payload=b"", win=65535, seq=1000, ack=0,
            bad_csum=False, pseudo6=False):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, win, 0, 0)
    seg = hdr + payload
    if pseudo6:
        ph = src + dst + struct.pack("!IxxxB", len(seg), 6)
    else:
        ph = src + dst + struct.pack("!xBH", 6, len(seg))
    c = csum(ph + seg)
    if bad_csum:
        c ^= 0x5A5A
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def ipv4(src, dst, payload, proto=6, ttl=64, ident=1, frag=0, options=b"", ihl=None,
         tot_len=None, bad_csum=False):
    hl = 5 + len(options) // 4
    h = struct.pack("!BBHHHBBH4s4s", (4 << 4) | (ihl if ihl is not None else hl), 0,
                    tot_len if tot_len is not None else 20 + len(options) + len(payload),
                    ident, frag, ttl, proto, 0, src, dst) + options
    c = csum(h)
    if bad_csum:
        c ^= 0x5A5A
    return h[:10] + struct.pack("!H", c) + h[12:] + payload


def eth(dst, src, etype, payload, tags=()):
    out = dst + src
    for tpid, vid in tags:
        out += struct.pack("!HH", tpid, vid)
    return out + struct.pack("!H", etype) + payload


def pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", 1, i, len(fr), len(fr)))
            f.write(fr)


def main():
    out, side = sys.argv[1], sys.argv[2]
    dmac, smac = mac(sys.argv[3]), mac(sys.argv[4])
    src, dst = ip4(sys.argv[5]), ip4(sys.argv[6])
    sport, dport = int(sys.argv[7]), int(sys.argv[8])
    v6 = len(sys.argv) > 10
    os.makedirs(out, exist_ok=True)
    SYN, ACK, FIN, RST, PSH, URG = 0x02, 0x10, 0x01, 0x04, 0x08, 0x20
    first = SYN if side == "vip" else SYN | ACK
    port = [sport]

    def nxt():
        # A fresh source port (client side) per frame, so no frame rides another's connection.
        port[0] = 1024 + (port[0] + 1 - 1024) % 60000
        return port[0] if side == "vip" else sport

    def seg(flags, payload=b"", **kw):
        sp = nxt()
        return tcp_seg(src, dst, sp, dport, flags, payload, **kw)

    def frame(ip_payload, **kw):
        return eth(dmac, smac, 0x0800, ipv4(src, dst, ip_payload, **kw))

    cats = []
    base = frame(seg(first))
    cats.append(("truncated", [base[:n] for n in range(1, len(base))]))
    cats.append(("bad-ihl", [frame(seg(first), ihl=h) for h in (0, 1, 4, 6, 15)]))
    nops = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    cats.append(("ip-options", [frame(seg(first), options=nops * k) for k in (1, 2, 10)]))
    cats.append(("bad-total-length",
                 [frame(seg(first), tot_len=t) for t in (0, 10, 19, 20, 39, 41, 1500, 65535)]))
    cats.append(("ttl", [frame(seg(first), ttl=t) for t in (0, 1)]))
    # Fragments of one datagram (TCP to DPORT, 64 bytes of payload): tiny first fragments
    # without the ports, overlapping ones, out of order, a second fragment alone.
    dgram = seg(first, b"x" * 64)
    frags = []
    ident = 0x4242
    frags.append(frame(dgram[:8], ident=ident, frag=0x2000))                # tiny: no flags/ports
    frags.append(frame(dgram[8:], ident=ident, frag=1))                     # its rest
    frags.append(frame(dgram[24:], ident=ident + 1, frag=3))                # second, no first
    frags.append(frame(dgram[:24], ident=ident + 1, frag=0x2000))           # first, after it
    frags.append(frame(dgram[:32], ident=ident + 2, frag=0x2000))           # overlapping:
    frags.append(frame(dgram[16:], ident=ident + 2, frag=2))                # 16.. over ..32
    frags.append(frame(dgram[:16], ident=ident + 3, frag=0x2000 | 0x1FFF))  # offset at the end
    cats.append(("fragments", frags))
    seg2 = seg(first)
    cats.append(("vlan", [
        eth(dmac, smac, 0x0800, ipv4(src, dst, seg2), tags=[(0x8100, 42)]),
        eth(dmac, smac, 0x0800, ipv4(src, dst, seg2), tags=[(0x88A8, 7), (0x8100, 42)]),
        eth(dmac, smac, 0x0800, ipv4(src, dst, seg2), tags=[(0x8100, 1), (0x8100, 2), (0x8100, 3)]),
        eth(dmac, smac, 0x8100, b"\x00"),                       # a tag cut short
    ]))
    # Every combination of the six classic flags.
    cats.append(("tcp-flags", [frame(seg(f)) for f in range(64)]))
    cats.append(("zero-window", [frame(seg(first, win=0)), frame(seg(ACK, win=0))]))
    cats.append(("bad-checksums", [frame(seg(first), bad_csum=True),
                                   frame(seg(first, bad_csum=True)),
                                   frame(seg(first, bad_csum=True), bad_csum=True)]))
    cats.append(("not-ip", [eth(dmac, smac, 0x88CC, b"\x00" * 46),     # LLDP-like
                            eth(dmac, smac, 0x0806, b"\x00" * 28),     # an empty ARP
                            eth(dmac, smac, 0x86DD, b"\x60" + b"\0" * 10)]))  # IPv6 cut short
    if v6:
        d6, s6 = ip6(sys.argv[9]), ip6(sys.argv[10])

        def frame6(nh, ext, l4):
            return eth(dmac, smac, 0x86DD,
                       struct.pack("!IHBB", 6 << 28, len(ext) + len(l4), nh, 64) + s6 + d6
                       + ext + l4)

        t = tcp_seg(s6, d6, nxt(), dport, first, pseudo6=True)
        hbh = b"\x06\x00" + b"\x01\x04\x00\x00\x00\x00"     # hop-by-hop, next TCP, PadN
        dst_opts = b"\x06\x00" + b"\x01\x04\x00\x00\x00\x00"
        chain = b"\x3c\x00" + b"\x01\x04\x00\x00\x00\x00"   # hop-by-hop → destination options
        frag6 = struct.pack("!BBHI", 6, 0, 0, 77)          # an atomic fragment header
        cats.append(("ipv6-ext", [
            frame6(0, hbh, t),
            frame6(60, dst_opts, t),
            frame6(0, chain + dst_opts, t),
            frame6(44, frag6, t),
            frame6(0, b"\x3c\x00", t[:10]),                 # a chain cut short
            frame6(59, b"", b""),                           # no next header
        ]))
    for i, (name, frames) in enumerate(cats):
        pcap(os.path.join(out, "%02d-%s.pcap" % (i, name)), frames)
        print("%02d-%s %d" % (i, name, len(frames)))


if __name__ == "__main__":
    main()
