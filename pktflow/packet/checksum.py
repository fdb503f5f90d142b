"""Internet checksums (RFC 1071) of the parsed headers, full and incremental (RFC 1624).

Every function here is a Numba function over a pool's arrays, so compiled kernels and the
object API (through `ops.py`) share them. Per-header operations take `(data, meta, b)` and
check the parser's flags first: on a packet without that header they do nothing and return
False instead of touching bytes outside the frame. They trust the lengths the parser
validated (IPv4 total length, IPv6 payload length), so call `parse` after editing headers
that change lengths.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow.packet import meta as M

# Where each L4 header keeps its checksum word.
TCP_CSUM_OFF = 16
UDP_CSUM_OFF = 6
ICMP_CSUM_OFF = 2


@njit(cache=True, nogil=True, inline="always")
def word16(data, b, o):
    return (np.int64(data[b, o]) << 8) | np.int64(data[b, o + 1])


@njit(cache=True, nogil=True, inline="always")
def put_word16(data, b, o, value):
    data[b, o] = np.uint8((value >> 8) & 255)
    data[b, o + 1] = np.uint8(value & 255)


@njit(cache=True, nogil=True)
def ones_sum(data, b, lo, hi):
    """Sum of the big-endian 16-bit words of data[b, lo:hi] (odd tail padded), unfolded."""
    s = np.int64(0)
    i = lo
    # Four bytes a step: the 64-bit accumulator cannot overflow for any frame size.
    while i + 3 < hi:
        s += (np.int64(data[b, i]) << 8) + np.int64(data[b, i + 1])
        s += (np.int64(data[b, i + 2]) << 8) + np.int64(data[b, i + 3])
        i += 4
    while i + 1 < hi:
        s += (np.int64(data[b, i]) << 8) + np.int64(data[b, i + 1])
        i += 2
    if i < hi:
        s += np.int64(data[b, i]) << 8
    return s


@njit(cache=True, nogil=True, inline="always")
def fold(s):
    """Fold a ones'-complement sum to 16 bits."""
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@njit(cache=True, nogil=True)
def checksum_adjust(csum, old_word, new_word):
    """RFC 1624 eqn. 3: the checksum after one 16-bit word changed from old to new."""
    s = (~np.int64(csum) & 0xFFFF) + (~np.int64(old_word) & 0xFFFF) + (np.int64(new_word) & 0xFFFF)
    return ~fold(s) & 0xFFFF


@njit(cache=True, nogil=True)
def checksum_adjust32(csum, old_value, new_value):
    """RFC 1624 for a 32-bit field (an IPv4 address or a TCP sequence number)."""
    c = checksum_adjust(csum, (old_value >> 16) & 0xFFFF, (new_value >> 16) & 0xFFFF)
    return checksum_adjust(c, old_value & 0xFFFF, new_value & 0xFFFF)


@njit(cache=True, nogil=True)
def ipv4_checksum(data, meta, b):
    """The IPv4 header checksum this packet should carry (-1 without IPv4)."""
    if (meta[b, M.FLAGS] & M.F_IPV4) == 0:
        return -1
    o = meta[b, M.L3]
    ihl = np.int64(data[b, o] & 15) * 4
    s = ones_sum(data, b, o, o + 10) + ones_sum(data, b, o + 12, o + ihl)
    return ~fold(s) & 0xFFFF


@njit(cache=True, nogil=True)
def ipv4_update_checksum(data, meta, b):
    """Recompute and write the IPv4 header checksum; False without IPv4."""
    c = ipv4_checksum(data, meta, b)
    if c < 0:
        return False
    put_word16(data, b, meta[b, M.L3] + 10, c)
    return True


@njit(cache=True, nogil=True)
def ipv4_checksum_ok(data, meta, b):
    """True when the IPv4 header checksum is right (False without IPv4)."""
    if (meta[b, M.FLAGS] & M.F_IPV4) == 0:
        return False
    o = meta[b, M.L3]
    return fold(ones_sum(data, b, o, o + np.int64(data[b, o] & 15) * 4)) == 0xFFFF


@njit(cache=True, nogil=True)
def ip_end(data, meta, b):
    """End of the IP packet (Ethernet padding excluded), -1 without IP."""
    o = meta[b, M.L3]
    f = meta[b, M.FLAGS]
    if o < 0:
        return -1
    if f & M.F_IPV4:
        return o + word16(data, b, o + 2)
    if f & M.F_IPV6:
        return o + 40 + word16(data, b, o + 4)
    return -1


@njit(cache=True, nogil=True)
def _l4_sum(data, meta, b, csum_off, pseudo):
    """Ones' sum over the L4 segment without its checksum word, plus the pseudo-header
    (IPv4 or IPv6 per the packet) when `pseudo`; -1 if it cannot be computed."""
    f = meta[b, M.FLAGS]
    l4 = meta[b, M.L4]
    end = ip_end(data, meta, b)
    if l4 < 0 or end < l4 + csum_off + 2:
        return np.int64(-1)
    o = meta[b, M.L3]
    if f & M.F_IPV4 and (data[b, o + 6] & 0x20) != 0:
        return np.int64(-1)  # first fragment: the checksum covers data not in this packet
    s = ones_sum(data, b, l4, l4 + csum_off) + ones_sum(data, b, l4 + csum_off + 2, end)
    if pseudo:
        length = end - l4
        if f & M.F_IPV4:
            s += ones_sum(data, b, o + 12, o + 20) + meta[b, M.PROTO] + length
        else:
            s += ones_sum(data, b, o + 8, o + 40) + meta[b, M.PROTO]
            s += (length >> 16) + (length & 0xFFFF)
    return s


@njit(cache=True, nogil=True)
def _l4_checksum(data, meta, b, flag, csum_off, pseudo):
    if (meta[b, M.FLAGS] & flag) == 0:
        return np.int64(-1)
    s = _l4_sum(data, meta, b, csum_off, pseudo)
    if s < 0:
        return s
    c = ~fold(s) & 0xFFFF
    if flag == M.F_UDP and c == 0:
        c = 0xFFFF  # RFC 768: a computed zero is sent as all ones (zero means "none")
    return c


@njit(cache=True, nogil=True)
def _l4_ok(data, meta, b, flag, csum_off, pseudo):
    if (meta[b, M.FLAGS] & flag) == 0:
        return False
    s = _l4_sum(data, meta, b, csum_off, pseudo)
    if s < 0:
        return False
    stored = word16(data, b, meta[b, M.L4] + csum_off)
    if flag == M.F_UDP and stored == 0:
        return (meta[b, M.FLAGS] & M.F_IPV4) != 0  # optional over IPv4, mandatory over IPv6
    # Summing in the stored value also accepts 0x0000 for 0xFFFF (one number in ones' compl.)
    return fold(s + stored) == 0xFFFF


@njit(cache=True, nogil=True)
def _l4_update(data, meta, b, flag, csum_off, pseudo):
    c = _l4_checksum(data, meta, b, flag, csum_off, pseudo)
    if c < 0:
        return False
    put_word16(data, b, meta[b, M.L4] + csum_off, c)
    return True


@njit(cache=True, nogil=True)
def tcp_checksum(data, meta, b):
    """The TCP checksum (IPv4 or IPv6 pseudo-header) this packet should carry, or -1."""
    return _l4_checksum(data, meta, b, M.F_TCP, TCP_CSUM_OFF, True)


@njit(cache=True, nogil=True)
def tcp_update_checksum(data, meta, b):
    """Recompute and write the TCP checksum; False without TCP or on a first fragment."""
    return _l4_update(data, meta, b, M.F_TCP, TCP_CSUM_OFF, True)


@njit(cache=True, nogil=True)
def tcp_checksum_ok(data, meta, b):
    """True when the TCP checksum is right."""
    return _l4_ok(data, meta, b, M.F_TCP, TCP_CSUM_OFF, True)


@njit(cache=True, nogil=True)
def udp_checksum(data, meta, b):
    """The UDP checksum this packet should carry (never 0), or -1."""
    return _l4_checksum(data, meta, b, M.F_UDP, UDP_CSUM_OFF, True)


@njit(cache=True, nogil=True)
def udp_update_checksum(data, meta, b):
    """Recompute and write the UDP checksum; False without UDP or on a first fragment."""
    return _l4_update(data, meta, b, M.F_UDP, UDP_CSUM_OFF, True)


@njit(cache=True, nogil=True)
def udp_checksum_ok(data, meta, b):
    """True when the UDP checksum is right (or absent, 0, over IPv4)."""
    return _l4_ok(data, meta, b, M.F_UDP, UDP_CSUM_OFF, True)


@njit(cache=True, nogil=True)
def icmp_checksum(data, meta, b):
    """The ICMP (v4, no pseudo-header) checksum this packet should carry, or -1."""
    return _l4_checksum(data, meta, b, M.F_ICMP, ICMP_CSUM_OFF, False)


@njit(cache=True, nogil=True)
def icmp_update_checksum(data, meta, b):
    """Recompute and write the ICMP checksum; False without ICMP."""
    return _l4_update(data, meta, b, M.F_ICMP, ICMP_CSUM_OFF, False)


@njit(cache=True, nogil=True)
def icmp_checksum_ok(data, meta, b):
    """True when the ICMP checksum is right."""
    return _l4_ok(data, meta, b, M.F_ICMP, ICMP_CSUM_OFF, False)


@njit(cache=True, nogil=True)
def icmp6_checksum(data, meta, b):
    """The ICMPv6 checksum (IPv6 pseudo-header) this packet should carry, or -1."""
    return _l4_checksum(data, meta, b, M.F_ICMP6, ICMP_CSUM_OFF, True)


@njit(cache=True, nogil=True)
def icmp6_update_checksum(data, meta, b):
    """Recompute and write the ICMPv6 checksum; False without ICMPv6."""
    return _l4_update(data, meta, b, M.F_ICMP6, ICMP_CSUM_OFF, True)


@njit(cache=True, nogil=True)
def icmp6_checksum_ok(data, meta, b):
    """True when the ICMPv6 checksum is right."""
    return _l4_ok(data, meta, b, M.F_ICMP6, ICMP_CSUM_OFF, True)


@njit(cache=True, nogil=True)
def update_packet_checksums(data, meta, b):
    """Recompute every checksum the packet carries (IPv4, then its L4); True if any."""
    done = ipv4_update_checksum(data, meta, b)
    f = meta[b, M.FLAGS]
    if f & M.F_TCP:
        done |= tcp_update_checksum(data, meta, b)
    elif f & M.F_UDP:
        done |= udp_update_checksum(data, meta, b)
    elif f & M.F_ICMP:
        done |= icmp_update_checksum(data, meta, b)
    elif f & M.F_ICMP6:
        done |= icmp6_update_checksum(data, meta, b)
    return done


@njit(cache=True, nogil=True)
def checksums_ok(data, meta, b):
    """True when every checksum the packet carries is right (vacuously for ARP)."""
    f = meta[b, M.FLAGS]
    if f & M.F_IPV4 and not ipv4_checksum_ok(data, meta, b):
        return False
    if f & M.F_TCP:
        return tcp_checksum_ok(data, meta, b)
    if f & M.F_UDP:
        return udp_checksum_ok(data, meta, b)
    if f & M.F_ICMP:
        return icmp_checksum_ok(data, meta, b)
    if f & M.F_ICMP6:
        return icmp6_checksum_ok(data, meta, b)
    return True


@njit(cache=True, nogil=True)
def update_checksums(data, meta, idx, n):
    """Recompute every checksum of the first `n` packets of a batch; returns how many."""
    count = 0
    for k in range(n):
        if update_packet_checksums(data, meta, idx[k]):
            count += 1
    return count
