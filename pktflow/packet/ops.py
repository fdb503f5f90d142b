"""Packet operations beyond single fields, shared by both faces of the packet API.

Each operation is one Numba function `f(data, meta, b, *args)`. `PACKET_METHODS[name]`
backs `pkt.name(*args)` and `LAYER_METHODS[(layer, name)]` backs `pkt.layer.name(*args)`,
in interpreted code (through `view.py`) and in compiled user functions (through the
flow compiler's rewrite) alike. Operations never raise: one that cannot apply to a packet
(no headroom, header absent, too short) returns False and leaves the packet as it was.
`OP_ARG_KINDS` names the arguments that take addresses, so the object API also accepts
address text for them (`pkt.push_ipv4("111.22.3.0", "3.22.111.0", 4)`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from pktflow.packet import checksum as C
from pktflow.packet import meta as M
from pktflow.packet.checksum import put_word16, word16
from pktflow.packet.parse import parse_packet

DEFAULT_TTL = 64


@njit(cache=True, nogil=True, inline="always")
def _get32(data, b, o):
    return (word16(data, b, o) << 16) | word16(data, b, o + 2)


@njit(cache=True, nogil=True, inline="always")
def _put32(data, b, o, v):
    put_word16(data, b, o, (v >> 16) & 0xFFFF)
    put_word16(data, b, o + 2, v & 0xFFFF)


# ---------------------------------------------------------------- raw bytes


@njit(cache=True, nogil=True)
def _frame_pos(meta, b, offset, size):
    """Absolute position of `size` bytes at frame `offset`, -1 if not inside the frame."""
    if offset < 0 or offset + size > meta[b, M.LEN] or meta[b, M.START] < 0:
        return -1
    return meta[b, M.START] + offset


@njit(cache=True, nogil=True)
def get_u8(data, meta, b, offset):
    """The byte at frame `offset`, -1 outside the frame."""
    o = _frame_pos(meta, b, offset, 1)
    return np.int64(-1) if o < 0 else np.int64(data[b, o])


@njit(cache=True, nogil=True)
def get_u16(data, meta, b, offset):
    """The big-endian 16-bit word at frame `offset`, -1 outside the frame."""
    o = _frame_pos(meta, b, offset, 2)
    return np.int64(-1) if o < 0 else word16(data, b, o)


@njit(cache=True, nogil=True)
def get_u32(data, meta, b, offset):
    """The big-endian 32-bit word at frame `offset`, -1 outside the frame."""
    o = _frame_pos(meta, b, offset, 4)
    return np.int64(-1) if o < 0 else _get32(data, b, o)


@njit(cache=True, nogil=True)
def set_u8(data, meta, b, offset, value):
    """Write a byte at frame `offset` (for headers not parsed yet); False outside."""
    o = _frame_pos(meta, b, offset, 1)
    if o >= 0:
        data[b, o] = np.uint8(value & 255)
    return o >= 0


@njit(cache=True, nogil=True)
def set_u16(data, meta, b, offset, value):
    """Write a big-endian 16-bit word at frame `offset`; False outside the frame."""
    o = _frame_pos(meta, b, offset, 2)
    if o >= 0:
        put_word16(data, b, o, value)
    return o >= 0


@njit(cache=True, nogil=True)
def set_u32(data, meta, b, offset, value):
    """Write a big-endian 32-bit word at frame `offset`; False outside the frame."""
    o = _frame_pos(meta, b, offset, 4)
    if o >= 0:
        _put32(data, b, o, value)
    return o >= 0


# ---------------------------------------------------------------- encapsulation


@njit(cache=True, nogil=True)
def _open_gap(data, meta, b, offset, nbytes):
    """Insert `nbytes` zero bytes at frame `offset` by moving the bytes before it into the
    headroom (so the payload never moves); False when it does not fit."""
    start = meta[b, M.START]
    length = meta[b, M.LEN]
    if nbytes < 0 or offset < 0 or offset > length or start - nbytes < 0:
        return False
    if start + length > data.shape[1]:
        return False
    new = start - nbytes
    for i in range(offset):  # ascending is safe: the copy moves toward the front
        data[b, new + i] = data[b, start + i]
    data[b, new + offset:start + offset] = 0
    meta[b, M.START] = new
    meta[b, M.LEN] = length + nbytes
    return True


@njit(cache=True, nogil=True)
def _close_gap(data, meta, b, offset, nbytes):
    """Remove `nbytes` at frame `offset` by moving the bytes before it back; False when
    the frame is too short."""
    start = meta[b, M.START]
    length = meta[b, M.LEN]
    if nbytes < 0 or offset < 0 or offset + nbytes > length or start < 0:
        return False
    if start + length > data.shape[1]:
        return False
    for i in range(offset - 1, -1, -1):  # descending: the copy moves toward the back
        data[b, start + nbytes + i] = data[b, start + i]
    meta[b, M.START] = start + nbytes
    meta[b, M.LEN] = length - nbytes
    return True


@njit(cache=True, nogil=True)
def encapsulate(data, meta, b, offset, nbytes):
    """Insert `nbytes` zeroed bytes at frame `offset` using the headroom, then re-parse.

    Returns False (packet unchanged) when the headroom is too small or offset is past the
    end. The new bytes are zero until written (`set_u8`/`set_u16`/`set_u32` at frame
    offsets); call `parse` again to see the new header. `push_ipv4` does all of it.
    """
    if not _open_gap(data, meta, b, offset, nbytes):
        return False
    parse_packet(data, meta, b)
    return True


@njit(cache=True, nogil=True)
def decapsulate(data, meta, b, offset, nbytes):
    """Remove `nbytes` at frame `offset` (the bytes before it move back), then re-parse.

    Returns False (packet unchanged) when offset + nbytes is past the end of the frame.
    """
    if not _close_gap(data, meta, b, offset, nbytes):
        return False
    parse_packet(data, meta, b)
    return True


@njit(cache=True, nogil=True)
def _l2_length(meta, b):
    """Bytes before the L3 header (Ethernet and VLAN tags), -1 if unknown or MPLS."""
    f = meta[b, M.FLAGS]
    if f & (M.F_BAD_L2 | M.F_MPLS) or meta[b, M.START] < 0:
        return -1
    return M.ETH_HLEN + 4 * meta[b, M.NVLAN]


@njit(cache=True, nogil=True)
def push_ipv4(data, meta, b, src, dst, proto):
    """Put a new outer IPv4 header (src, dst, protocol `proto`, TTL 64, lengths and
    checksum filled) right after Ethernet/VLAN; for IP-in-IP tunnels. False if no room."""
    l2 = _l2_length(meta, b)
    # The outer length covers the inner IP packet, not Ethernet padding after it.
    inner_end = C.ip_end(data, meta, b)
    inner_len = meta[b, M.LEN] - l2 if inner_end < 0 else inner_end - meta[b, M.L3]
    if l2 < 0 or not _open_gap(data, meta, b, l2, 20):
        return False
    s = meta[b, M.START]
    o = s + l2
    data[b, o] = 0x45
    put_word16(data, b, o + 2, inner_len + 20)
    data[b, o + 8] = DEFAULT_TTL
    data[b, o + 9] = np.uint8(proto & 255)
    _put32(data, b, o + 12, src)
    _put32(data, b, o + 16, dst)
    put_word16(data, b, o - 2, M.ETYPE_IPV4)
    parse_packet(data, meta, b)
    C.ipv4_update_checksum(data, meta, b)
    return True


@njit(cache=True, nogil=True)
def pop_ipv4(data, meta, b):
    """Remove the outer IPv4 header of an IP-in-IP (4) or IPv6-in-IPv4 (41) packet and
    restore the ethertype; False for anything else."""
    l2 = _l2_length(meta, b)
    f = meta[b, M.FLAGS]
    if l2 < 0 or (f & M.F_IPV4) == 0:
        return False
    proto = meta[b, M.PROTO]
    if proto == M.IPPROTO_IPIP:
        etype = M.ETYPE_IPV4
    elif proto == M.IPPROTO_IPV6:
        etype = M.ETYPE_IPV6
    else:
        return False
    ihl = np.int64(data[b, meta[b, M.L3]] & 15) * 4
    if not _close_gap(data, meta, b, l2, ihl):
        return False
    put_word16(data, b, meta[b, M.START] + l2 - 2, etype)
    parse_packet(data, meta, b)
    return True


# ---------------------------------------------------------------- construction


@njit(cache=True, nogil=True)
def _init_frame(data, meta, b, length, etype):
    """Zero a `length`-byte frame at the packet's START and set its ethertype."""
    start = meta[b, M.START]
    if start < 0 or length < M.ETH_HLEN or start + length > data.shape[1]:
        return False
    data[b, start:start + length] = 0
    put_word16(data, b, start + 12, etype)
    meta[b, M.LEN] = length
    return True


@njit(cache=True, nogil=True)
def init_ether(data, meta, b, length):
    """Make an all-zero `length`-byte Ethernet frame (ethertype 0) at START; parse it."""
    if not _init_frame(data, meta, b, length, 0):
        return False
    parse_packet(data, meta, b)
    return True


@njit(cache=True, nogil=True)
def _init_ip(data, meta, b, version, proto, l4len, payload_len):
    l3len = 20 if version == 4 else 40
    etype = M.ETYPE_IPV4 if version == 4 else M.ETYPE_IPV6
    if payload_len < 0 or not _init_frame(
        data, meta, b, M.ETH_HLEN + l3len + l4len + payload_len, etype
    ):
        return False
    o = meta[b, M.START] + M.ETH_HLEN
    if version == 4:
        data[b, o] = 0x45
        put_word16(data, b, o + 2, l3len + l4len + payload_len)
        data[b, o + 8] = DEFAULT_TTL
        data[b, o + 9] = proto
    else:
        data[b, o] = 0x60
        put_word16(data, b, o + 4, l4len + payload_len)
        data[b, o + 6] = proto
        data[b, o + 7] = DEFAULT_TTL
    l4 = o + l3len
    if proto == M.IPPROTO_TCP:
        data[b, l4 + 12] = 0x50  # data offset: 5 words, no options
    elif proto == M.IPPROTO_UDP:
        put_word16(data, b, l4 + 4, l4len + payload_len)
    elif proto == M.IPPROTO_ICMP:
        data[b, l4] = 8  # echo request
    elif proto == M.IPPROTO_ICMPV6:
        data[b, l4] = 128  # echo request
    parse_packet(data, meta, b)
    return True


@njit(cache=True, nogil=True)
def init_ipv4_udp(data, meta, b, payload_len):
    """Ethernet/IPv4/UDP with `payload_len` zero bytes: versions, lengths, TTL 64 set,
    addresses, ports and checksums zero (call `update_checksums` after filling)."""
    return _init_ip(data, meta, b, 4, M.IPPROTO_UDP, 8, payload_len)


@njit(cache=True, nogil=True)
def init_ipv4_tcp(data, meta, b, payload_len):
    """Ethernet/IPv4/TCP (data offset 5) with `payload_len` zero bytes; as init_ipv4_udp."""
    return _init_ip(data, meta, b, 4, M.IPPROTO_TCP, 20, payload_len)


@njit(cache=True, nogil=True)
def init_ipv4_icmp(data, meta, b, payload_len):
    """Ethernet/IPv4/ICMP echo request with `payload_len` zero bytes; as init_ipv4_udp."""
    return _init_ip(data, meta, b, 4, M.IPPROTO_ICMP, 8, payload_len)


@njit(cache=True, nogil=True)
def init_ipv6_udp(data, meta, b, payload_len):
    """Ethernet/IPv6/UDP (hop limit 64) with `payload_len` zero bytes."""
    return _init_ip(data, meta, b, 6, M.IPPROTO_UDP, 8, payload_len)


@njit(cache=True, nogil=True)
def init_ipv6_tcp(data, meta, b, payload_len):
    """Ethernet/IPv6/TCP (hop limit 64, data offset 5) with `payload_len` zero bytes."""
    return _init_ip(data, meta, b, 6, M.IPPROTO_TCP, 20, payload_len)


@njit(cache=True, nogil=True)
def init_ipv6_icmp6(data, meta, b, payload_len):
    """Ethernet/IPv6/ICMPv6 echo request with `payload_len` zero bytes."""
    return _init_ip(data, meta, b, 6, M.IPPROTO_ICMPV6, 8, payload_len)


# ---------------------------------------------------------------- field rewrites (NAT)


@njit(cache=True, nogil=True)
def _adjust_at(data, b, o, old, new, is_udp):
    """Incrementally fix the checksum word at `o` after a 32-bit value changed."""
    csum = word16(data, b, o)
    if is_udp and csum == 0:
        return  # UDP over IPv4 without a checksum stays without one
    c = C.checksum_adjust32(csum, old, new)
    if is_udp and c == 0:
        c = 0xFFFF
    put_word16(data, b, o, c)


@njit(cache=True, nogil=True)
def _l4_adjust(data, meta, b, old, new):
    """Fix the TCP/UDP checksum after a pseudo-header or port value changed."""
    f = meta[b, M.FLAGS]
    if f & M.F_TCP:
        _adjust_at(data, b, meta[b, M.L4] + C.TCP_CSUM_OFF, old, new, False)
    elif f & M.F_UDP:
        _adjust_at(data, b, meta[b, M.L4] + C.UDP_CSUM_OFF, old, new, True)


@njit(cache=True, nogil=True)
def _ipv4_rewrite(data, meta, b, at, addr):
    if (meta[b, M.FLAGS] & M.F_IPV4) == 0:
        return False
    o = meta[b, M.L3]
    old = _get32(data, b, o + at)
    new = np.int64(addr) & 0xFFFFFFFF
    _put32(data, b, o + at, new)
    _adjust_at(data, b, o + 10, old, new, False)
    _l4_adjust(data, meta, b, old, new)
    return True


@njit(cache=True, nogil=True)
def ipv4_rewrite_src(data, meta, b, addr):
    """Set the IPv4 source and fix the IPv4 and TCP/UDP checksums incrementally (RFC 1624)."""
    return _ipv4_rewrite(data, meta, b, 12, addr)


@njit(cache=True, nogil=True)
def ipv4_rewrite_dst(data, meta, b, addr):
    """Set the IPv4 destination and fix the IPv4 and TCP/UDP checksums incrementally."""
    return _ipv4_rewrite(data, meta, b, 16, addr)


@njit(cache=True, nogil=True)
def _port_rewrite(data, meta, b, flag, at, port):
    if (meta[b, M.FLAGS] & flag) == 0:
        return False
    o = meta[b, M.L4] + at
    old = word16(data, b, o)
    new = np.int64(port) & 0xFFFF
    put_word16(data, b, o, new)
    _l4_adjust(data, meta, b, old, new)
    return True


@njit(cache=True, nogil=True)
def tcp_rewrite_src_port(data, meta, b, port):
    """Set the TCP source port and fix the TCP checksum incrementally."""
    return _port_rewrite(data, meta, b, M.F_TCP, 0, port)


@njit(cache=True, nogil=True)
def tcp_rewrite_dst_port(data, meta, b, port):
    """Set the TCP destination port and fix the TCP checksum incrementally."""
    return _port_rewrite(data, meta, b, M.F_TCP, 2, port)


@njit(cache=True, nogil=True)
def udp_rewrite_src_port(data, meta, b, port):
    """Set the UDP source port and fix the UDP checksum incrementally (0 stays 0)."""
    return _port_rewrite(data, meta, b, M.F_UDP, 0, port)


@njit(cache=True, nogil=True)
def udp_rewrite_dst_port(data, meta, b, port):
    """Set the UDP destination port and fix the UDP checksum incrementally (0 stays 0)."""
    return _port_rewrite(data, meta, b, M.F_UDP, 2, port)


# ---------------------------------------------------------------- registries

PACKET_METHODS: dict[str, Callable] = {
    "parse": parse_packet,
    "update_checksums": C.update_packet_checksums,
    "checksums_ok": C.checksums_ok,
    "get_u8": get_u8,
    "get_u16": get_u16,
    "get_u32": get_u32,
    "set_u8": set_u8,
    "set_u16": set_u16,
    "set_u32": set_u32,
    "encapsulate": encapsulate,
    "decapsulate": decapsulate,
    "push_ipv4": push_ipv4,
    "pop_ipv4": pop_ipv4,
    "init_ether": init_ether,
    "init_ipv4_udp": init_ipv4_udp,
    "init_ipv4_tcp": init_ipv4_tcp,
    "init_ipv4_icmp": init_ipv4_icmp,
    "init_ipv6_udp": init_ipv6_udp,
    "init_ipv6_tcp": init_ipv6_tcp,
    "init_ipv6_icmp6": init_ipv6_icmp6,
}

LAYER_METHODS: dict[tuple[str, str], Callable] = {
    ("ipv4", "rewrite_src"): ipv4_rewrite_src,
    ("ipv4", "rewrite_dst"): ipv4_rewrite_dst,
    ("tcp", "rewrite_src_port"): tcp_rewrite_src_port,
    ("tcp", "rewrite_dst_port"): tcp_rewrite_dst_port,
    ("udp", "rewrite_src_port"): udp_rewrite_src_port,
    ("udp", "rewrite_dst_port"): udp_rewrite_dst_port,
}
for _layer in ("ipv4", "tcp", "udp", "icmp", "icmp6"):
    LAYER_METHODS[(_layer, "compute_checksum")] = getattr(C, f"{_layer}_checksum")
    LAYER_METHODS[(_layer, "update_checksum")] = getattr(C, f"{_layer}_update_checksum")
    LAYER_METHODS[(_layer, "checksum_ok")] = getattr(C, f"{_layer}_checksum_ok")

# Arguments that are addresses: the object API parses text for them.
OP_ARG_KINDS: dict[str | tuple[str, str], tuple[str, ...]] = {
    "push_ipv4": ("ipv4", "ipv4", "uint"),
    ("ipv4", "rewrite_src"): ("ipv4",),
    ("ipv4", "rewrite_dst"): ("ipv4",),
}
