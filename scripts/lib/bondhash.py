"""The Linux bonding driver's transmit hash (bond_xmit_hash, Linux 6.1), written for the
tests from the kernel's description, apart from xlvs's Rust one: the ports word and the
IPv4 addresses are loaded as they lie in the frame on a little-endian machine, folded, and
layer3+4 drops the lowest bit. Members are chosen as members[hash % count]."""

import ipaddress
import struct


def _le32(b):
    return struct.unpack("<I", b)[0]


def _fold(h, shift_out):
    h ^= h >> 16
    h ^= h >> 8
    return h >> 1 if shift_out else h


def _addrs(src, dst):
    return _le32(ipaddress.IPv4Address(src).packed) ^ _le32(ipaddress.IPv4Address(dst).packed)


def layer34(src, dst, sport, dport):
    """TCP or UDP (not a fragment)."""
    return _fold(_le32(struct.pack(">HH", sport, dport)) ^ _addrs(src, dst), True)


def layer34_icmp_echo(src, dst, icmp_type, code, ident):
    """An ICMP echo with a non-zero identifier: its type, code and id instead of ports."""
    return _fold(_le32(struct.pack(">BBH", icmp_type, code, ident)) ^ _addrs(src, dst), True)


def layer23(src_mac, dst_mac, src, dst):
    """IPv4: the last bytes of both MACs and the ethertype, then the addresses."""
    s = int(src_mac.split(":")[5], 16)
    d = int(dst_mac.split(":")[5], 16)
    return _fold(s ^ d ^ 0x0800 ^ _addrs(src, dst), False)
