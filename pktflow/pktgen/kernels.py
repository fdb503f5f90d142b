"""Compiled batch kernels of the generator: packet synthesis and receive accounting.

Python calls each kernel once per batch; every per-packet step (copying the template,
writing the stepped fields, lengths and checksums, counting sizes) happens here.
Checksums are exact for every packet: the headers are summed directly (a few words) and
the payload's share comes from a table of running sums, so a 1500-byte packet costs no
more checksum work than a 64-byte one.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow.packet import meta as M
from pktflow.packet.checksum import fold
from pktflow.pktgen.config import (
    F_DST_IP,
    F_DST_MAC,
    F_DST_PORT,
    F_SIZE,
    F_SRC_IP,
    F_SRC_MAC,
    F_SRC_PORT,
    F_TTL,
    F_VLAN,
    FCS_LEN,
    LAY_COS,
    LAY_HDR_LEN,
    LAY_IP_BASE,
    LAY_IPV6,
    LAY_L3,
    LAY_L4,
    LAY_L4_BASE,
    LAY_PAYLOAD,
    LAY_PROTO,
    LAY_VLAN,
)

# Columns of the receive accumulator (int64), filled by rx_account.
RX_PKTS, RX_BYTES, RX_MIN, RX_MAX, RX_BCAST, RX_MCAST, RX_RUNT = range(7)
RX_HIST = 7  # six buckets: 64, 65-127, 128-255, 256-511, 512-1023, 1024-1518
RX_JUMBO = 13
RX_NCOLS = 14
HIST_LABELS = ("64", "65-127", "128-255", "256-511", "512-1023", "1024-1518")


def new_rx_accumulator() -> np.ndarray:
    acc = np.zeros(RX_NCOLS, dtype=np.int64)
    acc[RX_MIN] = np.iinfo(np.int64).max
    return acc


@njit(cache=True, nogil=True, inline="always")
def _put16(data, b, o, v):
    data[b, o] = (v >> 8) & 255
    data[b, o + 1] = v & 255


@njit(cache=True, nogil=True, inline="always")
def _put32(data, b, o, v):
    data[b, o] = (v >> 24) & 255
    data[b, o + 1] = (v >> 16) & 255
    data[b, o + 2] = (v >> 8) & 255
    data[b, o + 3] = v & 255


@njit(cache=True, nogil=True, inline="always")
def _put48(data, b, o, v):
    for i in range(6):
        data[b, o + i] = (v >> (40 - 8 * i)) & 255


@njit(cache=True, nogil=True)
def _addr6_sum(addr):
    s = 0
    for i in range(0, 16, 2):
        s += (np.int64(addr[i]) << 8) | np.int64(addr[i + 1])
    return s


@njit(cache=True, nogil=True)
def synth_batch(data, data64, meta, idx, n, frame, frame64, layout, psums, fields, cur, ip6_src,
                ip6_dst, cum):
    """Write n packets into the buffers idx[:n] (at each buffer's START): the template
    with this packet's field values, lengths and checksums. A field with inc 0 keeps its
    start value; others take cur[f] and step it, wrapping past max to min (below min to
    max). cum[k] receives the byte total of packets 0..k; returns the batch's bytes."""
    l3 = layout[LAY_L3]
    l4 = layout[LAY_L4]
    payload_at = layout[LAY_PAYLOAD]
    hdr_len = layout[LAY_HDR_LEN]
    has_vlan = layout[LAY_VLAN] != 0
    ipv6 = layout[LAY_IPV6] != 0
    proto = layout[LAY_PROTO]
    cos = layout[LAY_COS]
    ip_base = layout[LAY_IP_BASE]
    l4_base = layout[LAY_L4_BASE]
    max_frame = frame.shape[0]
    nf = fields.shape[0]
    vals = np.empty(nf, dtype=np.int64)
    addr6 = _addr6_sum(ip6_src) + _addr6_sum(ip6_dst) if ipv6 else 0
    total = 0
    for k in range(n):
        b = idx[k]
        for f in range(nf):
            inc = fields[f, 3]
            if inc == 0:
                vals[f] = fields[f, 0]
            else:
                v = cur[f]
                vals[f] = v
                v += inc
                if v > fields[f, 2]:
                    v = fields[f, 1]
                elif v < fields[f, 1]:
                    v = fields[f, 2]
                cur[f] = v
        flen = vals[F_SIZE] - FCS_LEN
        if flen < hdr_len:
            flen = hdr_len
        if flen > max_frame:
            flen = max_frame
        s = meta[b, M.START]
        if s < 0 or s + flen > data.shape[1]:
            s = 0
            meta[b, M.START] = 0
        if s & 7 == 0 and data64.shape[1] * 8 == data.shape[1] and \
                s + ((flen + 7) & ~7) <= data.shape[1]:
            w0 = s >> 3
            for w in range((flen + 7) >> 3):
                data64[b, w0 + w] = frame64[w]
        else:
            data[b, s:s + flen] = frame[:flen]
        _put48(data, b, s, vals[F_DST_MAC])
        _put48(data, b, s + 6, vals[F_SRC_MAC])
        if has_vlan:
            _put16(data, b, s + 14, (cos << 13) | (vals[F_VLAN] & 0xFFF))
        o3 = s + l3
        o4 = s + l4
        l4_len = flen - l4
        if ipv6:
            _put16(data, b, o3 + 4, l4_len)
            data[b, o3 + 7] = vals[F_TTL]
            pseudo = addr6 + l4_len + proto
        else:
            sip = vals[F_SRC_IP]
            dip = vals[F_DST_IP]
            ttl = vals[F_TTL]
            _put16(data, b, o3 + 2, flen - l3)
            data[b, o3 + 8] = ttl
            _put32(data, b, o3 + 12, sip)
            _put32(data, b, o3 + 16, dip)
            addrs = (sip >> 16) + (sip & 0xFFFF) + (dip >> 16) + (dip & 0xFFFF)
            _put16(data, b, o3 + 10,
                   0xFFFF - fold(ip_base + (flen - l3) + (ttl << 8) + proto + addrs))
            pseudo = addrs + l4_len + proto
        payload_sum = psums[flen - payload_at]
        if proto == M.IPPROTO_TCP:
            _put16(data, b, o4, vals[F_SRC_PORT])
            _put16(data, b, o4 + 2, vals[F_DST_PORT])
            sport = vals[F_SRC_PORT]
            dport = vals[F_DST_PORT]
            csum = 0xFFFF - fold(pseudo + l4_base + sport + dport + payload_sum)
            _put16(data, b, o4 + 16, csum)
        elif proto == M.IPPROTO_UDP:
            sport = vals[F_SRC_PORT]
            dport = vals[F_DST_PORT]
            _put16(data, b, o4, sport)
            _put16(data, b, o4 + 2, dport)
            _put16(data, b, o4 + 4, l4_len)
            csum = 0xFFFF - fold(pseudo + sport + dport + l4_len + payload_sum)
            _put16(data, b, o4 + 6, csum if csum != 0 else 0xFFFF)
        elif proto == M.IPPROTO_ICMPV6:
            csum = 0xFFFF - fold(pseudo + l4_base + payload_sum)
            _put16(data, b, o4 + 2, csum)
        else:  # ICMP echo: no pseudo header
            csum = 0xFFFF - fold(l4_base + payload_sum)
            _put16(data, b, o4 + 2, csum)
        meta[b, M.LEN] = flen
        meta[b, M.PORT] = -1
        total += flen
        cum[k] = total
    return total


@njit(cache=True, nogil=True)
def rx_account(data, meta, idx, n, acc):
    """Count n received packets into `acc` (RX_* columns): packets, bytes, min/max size,
    broadcast/multicast, and Pktgen's size buckets, which count the 4-byte FCS."""
    for k in range(n):
        b = idx[k]
        flen = np.int64(meta[b, M.LEN])
        s = meta[b, M.START]
        acc[RX_PKTS] += 1
        acc[RX_BYTES] += flen
        if flen < acc[RX_MIN]:
            acc[RX_MIN] = flen
        if flen > acc[RX_MAX]:
            acc[RX_MAX] = flen
        if flen >= 6 and s >= 0 and (data[b, s] & 1) == 1:
            bcast = True
            for i in range(6):
                if data[b, s + i] != 255:
                    bcast = False
            if bcast:
                acc[RX_BCAST] += 1
            else:
                acc[RX_MCAST] += 1
        wire = flen + FCS_LEN
        if wire < 64:
            acc[RX_RUNT] += 1
        elif wire == 64:
            acc[RX_HIST] += 1
        elif wire <= 127:
            acc[RX_HIST + 1] += 1
        elif wire <= 255:
            acc[RX_HIST + 2] += 1
        elif wire <= 511:
            acc[RX_HIST + 3] += 1
        elif wire <= 1023:
            acc[RX_HIST + 4] += 1
        elif wire <= 1518:
            acc[RX_HIST + 5] += 1
        else:
            acc[RX_JUMBO] += 1
