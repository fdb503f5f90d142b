"""Compiled batch kernels of the generator: packet synthesis and receive accounting.

Python calls each kernel once per batch; every per-packet step (copying the template,
writing the stepped fields, lengths and checksums, counting sizes) happens here.
The template already carries every field at its start value, so a packet costs a word
copy plus the fields that step. Checksums are exact for every packet: the template's
checksum bases hold everything constant, the kernel adds the words it writes, and the
payload's share comes from a table of running sums, so a 1500-byte packet costs no more
checksum work than a 64-byte one.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow.packet import meta as M
from pktflow.packet.checksum import fold
from pktflow.pktgen.config import (
    F_DST_IP,
    F_DST_PORT,
    F_SRC_IP,
    F_SRC_PORT,
    F_TTL,
    F_VLAN,
    FCS_LEN,
    LAY_ADDR_PSEUDO,
    LAY_COS,
    LAY_FLEN,
    LAY_HDR_LEN,
    LAY_IP_BASE,
    LAY_IPV6,
    LAY_L3,
    LAY_L4,
    LAY_L4_BASE,
    LAY_L4_CSUM,
    LAY_PAYLOAD,
    LAY_PROTO,
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
    _put16(data, b, o, v >> 32)
    _put32(data, b, o + 2, v)


@njit(cache=True, nogil=True)
def synth_batch(data, data64, meta, idx, n, frame, frame64, layout, psums, fields, stepping,
                offsets, cur, cum):
    """Write n packets into the buffers idx[:n] (at each buffer's START): the template,
    then only the fields that step (their bytes and checksum words), lengths when the size
    steps (the size is then the last row of `stepping`), and the IPv4 and L4 checksums.
    Stepping fields take cur[f] and advance it by inc, wrapping past max to min (below min
    to max). cum[k] receives the byte total of packets 0..k; returns the batch's bytes."""
    l3 = layout[LAY_L3]
    l4 = layout[LAY_L4]
    payload_at = layout[LAY_PAYLOAD]
    hdr_len = layout[LAY_HDR_LEN]
    ipv4 = layout[LAY_IPV6] == 0
    proto = layout[LAY_PROTO]
    udp = proto == M.IPPROTO_UDP
    pseudo_len = proto != M.IPPROTO_ICMP
    cos = layout[LAY_COS] << 13
    ip_base = layout[LAY_IP_BASE]
    l4_base = layout[LAY_L4_BASE]
    fixed_len = layout[LAY_FLEN]
    l4_csum_at = l4 + layout[LAY_L4_CSUM]
    addr_pseudo = layout[LAY_ADDR_PSEUDO]
    max_frame = frame.shape[0]
    row_len = data.shape[1]
    word_rows = data64.shape[1] * 8 == row_len
    ns = stepping.shape[0]
    n_writes = ns - 1 if fixed_len == 0 else ns  # the size, when it steps, is the last row
    vals = np.empty(max(ns, 1), dtype=np.int64)
    total = 0
    for k in range(n):
        b = idx[k]
        # Step inline: a helper taking the arrays costs far more than the step itself.
        for j in range(ns):
            f = stepping[j]
            v = cur[f]
            vals[j] = v
            v += fields[f, 3]
            if v > fields[f, 2]:
                v = fields[f, 1]
            elif v < fields[f, 1]:
                v = fields[f, 2]
            cur[f] = v
        flen = fixed_len
        if flen == 0:
            flen = vals[ns - 1] - FCS_LEN
            if flen < hdr_len:
                flen = hdr_len
            if flen > max_frame:
                flen = max_frame
        s = meta[b, M.START]
        if s < 0 or s + flen > row_len:
            s = 0
            meta[b, M.START] = 0
        nwords = (flen + 7) >> 3
        if word_rows and s & 7 == 0 and s + nwords * 8 <= row_len:
            w0 = s >> 3
            for w in range(nwords):
                data64[b, w0 + w] = frame64[w]
        else:
            data[b, s:s + flen] = frame[:flen]
        ipsum = ip_base
        l4sum = l4_base
        for j in range(n_writes):
            f = stepping[j]
            v = vals[j]
            o = s + offsets[f]
            if f == F_SRC_PORT or f == F_DST_PORT:
                _put16(data, b, o, v)
                l4sum += v
            elif f == F_SRC_IP or f == F_DST_IP:
                _put32(data, b, o, v)
                w = (v >> 16) + (v & 0xFFFF)
                ipsum += w
                l4sum += w * addr_pseudo
            elif f == F_TTL:
                data[b, o] = v
                ipsum += v << 8
            elif f == F_VLAN:
                _put16(data, b, o, cos | (v & 0xFFF))
            else:
                _put48(data, b, o, v)
        if fixed_len == 0:
            l4_len = flen - l4
            if ipv4:
                _put16(data, b, s + l3 + 2, flen - l3)
                ipsum += flen - l3
            else:
                _put16(data, b, s + l3 + 4, l4_len)
            if udp:
                _put16(data, b, s + l4 + 4, l4_len)
                l4sum += l4_len
            if pseudo_len:
                l4sum += l4_len
            l4sum += psums[flen - payload_at]
        if ipv4:
            _put16(data, b, s + l3 + 10, 0xFFFF - fold(ipsum))
        csum = 0xFFFF - fold(l4sum)
        if udp and csum == 0:
            csum = 0xFFFF  # zero means "no checksum" in UDP
        _put16(data, b, s + l4_csum_at, csum)
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
