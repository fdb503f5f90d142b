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
    RANDOM_STEP,
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


# Offsets into the flat byte view are unsigned: Numba then skips its negative-index
# handling, which otherwise costs as much as the stores themselves.
_U1, _U2, _U3, _U7 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(7)


@njit(cache=True, nogil=True, inline="always")
def _put16(d, o, v):
    d[o] = v >> 8
    d[o + _U1] = v


@njit(cache=True, nogil=True, inline="always")
def _put32(d, o, v):
    d[o] = v >> 24
    d[o + _U1] = v >> 16
    d[o + _U2] = v >> 8
    d[o + _U3] = v


@njit(cache=True, nogil=True, inline="always")
def _put48(d, o, v):
    _put16(d, o, v >> 32)
    _put32(d, o + _U2, v)


@njit(cache=True, nogil=True, inline="always")
def _next(v, inc, lo, hi):
    """The value after v: v + inc, wrapping past hi to lo (below lo to hi); a uniform
    draw from [lo, hi] when inc is RANDOM_STEP."""
    if inc == RANDOM_STEP:
        return np.random.randint(lo, hi + 1)
    v += inc
    if v > hi:
        return lo
    if v < lo:
        return hi
    return v


@njit(cache=True, nogil=True, inline="always")
def _fold(s):
    """Fold a ones'-complement sum below 2**32 (every sum here is) to 16 bits."""
    s = (s & 0xFFFF) + (s >> 16)
    return (s & 0xFFFF) + (s >> 16)


@njit(cache=True, nogil=True)
def _row(fields, cur, offsets, f):
    """Field f as scalars: (steps, current value, inc, min, max, unsigned offset)."""
    return (offsets[f] >= 0, cur[f], fields[f, 3], fields[f, 1], fields[f, 2],
            np.uint64(max(offsets[f], 0)))


@njit(cache=True, nogil=True)
def synth_batch(data, words, meta, idx, n, frame, frame64, layout, psums, fields, offsets,
                cur, cum):
    """Write n packets into the buffers idx[:n] (at each buffer's START): the template,
    then only the fields that step (offsets[f] >= 0: their bytes and checksum words), the
    lengths when the size steps (layout[LAY_FLEN] == 0), and the IPv4 and L4 checksums.
    A stepping field takes cur[f], which then advances by inc, wrapping past max to min
    (below min to max). cum[k] receives the byte total of packets 0..k; returns the
    batch's bytes. `words` is `words_view(data)`."""
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
    addr_pseudo = layout[LAY_ADDR_PSEUDO]
    ip_len_at = np.uint64(l3 + (2 if ipv4 else 4))
    ip_csum_at = np.uint64(l3 + 10)
    udp_len_at = np.uint64(l4 + 4)
    l4_csum_at = np.uint64(l4 + layout[LAY_L4_CSUM])
    max_frame = frame.shape[0]
    row_len = data.shape[1]
    d = data.reshape(-1)
    # Every field in scalars (kept in registers across the packet loop) and one branch
    # per field: far cheaper than looping over a table of the stepping fields.
    dmac_on, dmac, dmac_inc, dmac_lo, dmac_hi, dmac_at = _row(fields, cur, offsets, F_DST_MAC)
    smac_on, smac, smac_inc, smac_lo, smac_hi, smac_at = _row(fields, cur, offsets, F_SRC_MAC)
    dip_on, dip, dip_inc, dip_lo, dip_hi, dip_at = _row(fields, cur, offsets, F_DST_IP)
    sip_on, sip, sip_inc, sip_lo, sip_hi, sip_at = _row(fields, cur, offsets, F_SRC_IP)
    dp_on, dp, dp_inc, dp_lo, dp_hi, dp_at = _row(fields, cur, offsets, F_DST_PORT)
    sp_on, sp, sp_inc, sp_lo, sp_hi, sp_at = _row(fields, cur, offsets, F_SRC_PORT)
    ttl_on, ttl, ttl_inc, ttl_lo, ttl_hi, ttl_at = _row(fields, cur, offsets, F_TTL)
    vlan_on, vlan, vlan_inc, vlan_lo, vlan_hi, vlan_at = _row(fields, cur, offsets, F_VLAN)
    size, size_inc, size_lo, size_hi = cur[F_SIZE], fields[F_SIZE, 3], fields[F_SIZE, 1], \
        fields[F_SIZE, 2]
    total = 0
    for k in range(n):
        b = np.int64(idx[k])
        flen = fixed_len
        if flen == 0:
            flen = min(max(size - FCS_LEN, hdr_len), max_frame)
            size = _next(size, size_inc, size_lo, size_hi)
        s = np.int64(meta[b, M.START])
        if s < 0 or s + flen > row_len:
            s = 0
            meta[b, M.START] = 0
        at = np.uint64(b * row_len + s)
        nwords = (flen + 7) >> 3
        if at & _U7 == 0 and s + nwords * 8 <= row_len:
            w0 = at >> _U3
            for w in range(nwords):
                words[w0 + np.uint64(w)] = frame64[w]
        else:
            for i in range(flen):
                d[at + np.uint64(i)] = frame[i]
        ipsum = ip_base
        l4sum = l4_base
        if dmac_on:
            _put48(d, at + dmac_at, dmac)
            dmac = _next(dmac, dmac_inc, dmac_lo, dmac_hi)
        if smac_on:
            _put48(d, at + smac_at, smac)
            smac = _next(smac, smac_inc, smac_lo, smac_hi)
        if dip_on:
            _put32(d, at + dip_at, dip)
            w = (dip >> 16) + (dip & 0xFFFF)
            ipsum += w
            l4sum += w * addr_pseudo
            dip = _next(dip, dip_inc, dip_lo, dip_hi)
        if sip_on:
            _put32(d, at + sip_at, sip)
            w = (sip >> 16) + (sip & 0xFFFF)
            ipsum += w
            l4sum += w * addr_pseudo
            sip = _next(sip, sip_inc, sip_lo, sip_hi)
        if dp_on:
            _put16(d, at + dp_at, dp)
            l4sum += dp
            dp = _next(dp, dp_inc, dp_lo, dp_hi)
        if sp_on:
            _put16(d, at + sp_at, sp)
            l4sum += sp
            sp = _next(sp, sp_inc, sp_lo, sp_hi)
        if ttl_on:
            d[at + ttl_at] = ttl
            ipsum += ttl << 8
            ttl = _next(ttl, ttl_inc, ttl_lo, ttl_hi)
        if vlan_on:
            _put16(d, at + vlan_at, cos | (vlan & 0xFFF))
            vlan = _next(vlan, vlan_inc, vlan_lo, vlan_hi)
        if fixed_len == 0:
            l4_len = flen - l4
            if ipv4:
                _put16(d, at + ip_len_at, flen - l3)
                ipsum += flen - l3
            else:
                _put16(d, at + ip_len_at, l4_len)
            if udp:
                _put16(d, at + udp_len_at, l4_len)
                l4sum += l4_len
            if pseudo_len:
                l4sum += l4_len
            l4sum += psums[flen - payload_at]
        if ipv4:
            _put16(d, at + ip_csum_at, 0xFFFF - _fold(ipsum))
        csum = 0xFFFF - _fold(l4sum)
        if udp and csum == 0:
            csum = 0xFFFF  # zero means "no checksum" in UDP
        _put16(d, at + l4_csum_at, csum)
        meta[b, M.LEN] = flen
        meta[b, M.PORT] = -1
        total += flen
        cum[k] = total
    cur[F_DST_MAC], cur[F_SRC_MAC], cur[F_DST_IP], cur[F_SRC_IP] = dmac, smac, dip, sip
    cur[F_DST_PORT], cur[F_SRC_PORT], cur[F_TTL], cur[F_VLAN] = dp, sp, ttl, vlan
    cur[F_SIZE] = size
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
