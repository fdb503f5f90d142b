"""Batch header parsing: fills each packet's L3/L4 offsets, protocol ids and flags.

`parse_packet` never reads past the frame (`meta[b, START] + meta[b, LEN]`) and never
raises: where a header is cut short or inconsistent it sets an F_BAD_* flag and leaves the
deeper layers absent (offset -1). `parse_batch` runs it over a batch in one native call.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from pktflow.packet import meta as M

MAX_IPV6_EXT = 8  # extension headers followed before giving up (loops, long chains)


@njit(cache=True, nogil=True, inline="always")
def _u16(data, b, o):
    return (np.int32(data[b, o]) << 8) | np.int32(data[b, o + 1])


@intrinsic
def borrowed(typingctx, arr):  # type: ignore[no-untyped-def]
    """A view of array `arr` that carries no reference count, for use inside the caller.

    Numba counts references to array arguments of a compiled function that returns early,
    as `_parse` does, when it cannot prune the counting: two atomic increments and
    decrements per packet, which cost more than the parse itself. On a borrowed view those
    operations find no count and return at once. The caller's argument keeps the array
    alive, so the view must not outlive the call."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        src = context.make_array(arr)(context, builder, value=args[0])
        view = context.make_array(arr)(context, builder)
        for name in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(view, name, getattr(src, name))
        view.meminfo = cgutils.get_null_value(view.meminfo.type)
        view.parent = cgutils.get_null_value(view.parent.type)
        return view._getvalue()

    return arr(arr), codegen


@njit(cache=True, nogil=True, inline="always")
def _parse(data, meta, b):
    start = meta[b, M.START]
    end = start + meta[b, M.LEN]
    if end > data.shape[1]:
        end = data.shape[1]  # a corrupt LEN must not send the parser out of the row
    for c in (M.L3, M.L4, M.PAYLOAD, M.PROTO, M.MPLS, M.TUNNEL):
        meta[b, c] = -1
    meta[b, M.ETYPE] = -1
    meta[b, M.NVLAN] = 0
    flags = 0
    if start < 0 or end - start < M.ETH_HLEN:
        flags |= M.F_BAD_L2
        meta[b, M.FLAGS] = flags
        return flags
    o = start + 12
    etype = _u16(data, b, o)
    nvlan = 0
    while (etype == M.ETYPE_VLAN or etype == M.ETYPE_QINQ) and nvlan < 2:
        if o + 6 > end:
            flags |= M.F_BAD_L2
            meta[b, M.FLAGS] = flags
            return flags
        flags |= M.F_VLAN if nvlan == 0 else M.F_QINQ
        nvlan += 1
        o += 4
        etype = _u16(data, b, o)
    meta[b, M.NVLAN] = nvlan
    o += 2  # first byte after the ethertype
    if etype == M.ETYPE_MPLS or etype == M.ETYPE_MPLS_MC:
        meta[b, M.MPLS] = o
        flags |= M.F_MPLS
        bottom = False
        while not bottom:
            if o + 4 > end:
                flags |= M.F_BAD_L2
                meta[b, M.FLAGS] = flags
                return flags
            bottom = (data[b, o + 2] & 1) == 1
            o += 4
        # No ethertype under MPLS: guess from the IP version nibble, as routers do.
        if o < end and (data[b, o] >> 4) == 4:
            etype = M.ETYPE_IPV4
        elif o < end and (data[b, o] >> 4) == 6:
            etype = M.ETYPE_IPV6
        else:
            etype = -1
    meta[b, M.ETYPE] = etype

    l4 = -1
    proto = -1
    if etype == M.ETYPE_IPV4:
        if o + 20 > end:
            flags |= M.F_BAD_L3
            meta[b, M.FLAGS] = flags
            return flags
        ihl = np.int32(data[b, o] & 15) * 4
        total = _u16(data, b, o + 2)
        if (data[b, o] >> 4) != 4 or ihl < 20 or o + ihl > end or total < ihl or o + total > end:
            flags |= M.F_BAD_L3
            meta[b, M.FLAGS] = flags
            return flags
        meta[b, M.L3] = o
        flags |= M.F_IPV4
        if ihl > 20:
            flags |= M.F_IPV4_OPTIONS
        proto = np.int32(data[b, o + 9])
        if (_u16(data, b, o + 6) & 0x1FFF) != 0:
            flags |= M.F_FRAGMENT
        l4 = o + ihl
        end = o + total  # Ethernet padding is not part of the IP packet
    elif etype == M.ETYPE_IPV6:
        if o + 40 > end:
            flags |= M.F_BAD_L3
            meta[b, M.FLAGS] = flags
            return flags
        plen = _u16(data, b, o + 4)
        if (data[b, o] >> 4) != 6 or o + 40 + plen > end:
            flags |= M.F_BAD_L3
            meta[b, M.FLAGS] = flags
            return flags
        meta[b, M.L3] = o
        flags |= M.F_IPV6
        end = o + 40 + plen
        nh = np.int32(data[b, o + 6])
        p = o + 40
        hops = 0
        # Skipped (RFC 8200 4.1, IANA): hop-by-hop 0, routing 43, fragment 44, AH 51,
        # destination options 60, mobility 135, HIP 139, shim6 140. ESP (50) ends the chain.
        while (nh == 0 or nh == 43 or nh == 44 or nh == 60 or nh == 51 or nh == 135
               or nh == 139 or nh == 140):
            hops += 1
            if hops > MAX_IPV6_EXT or p + 8 > end:
                flags |= M.F_BAD_L3
                meta[b, M.FLAGS] = flags
                return flags
            flags |= M.F_IPV6_EXT
            if nh == 44:
                if (_u16(data, b, p + 2) & 0xFFF8) != 0:
                    flags |= M.F_FRAGMENT
                ext_len = 8
            elif nh == 51:
                ext_len = (np.int32(data[b, p + 1]) + 2) * 4
                if ext_len < 12:  # shorter than AH's own fixed fields (RFC 4302)
                    flags |= M.F_BAD_L3
                    meta[b, M.FLAGS] = flags
                    return flags
            else:
                ext_len = (np.int32(data[b, p + 1]) + 1) * 8
            nh = np.int32(data[b, p])
            p += ext_len
        if p > end:
            flags |= M.F_BAD_L3
            meta[b, M.FLAGS] = flags
            return flags
        proto = nh
        l4 = p
    elif etype == M.ETYPE_ARP:
        if o + 28 > end:
            flags |= M.F_BAD_L3
        else:
            meta[b, M.L3] = o
            flags |= M.F_ARP
        meta[b, M.FLAGS] = flags
        return flags
    else:
        meta[b, M.FLAGS] = flags
        return flags

    meta[b, M.PROTO] = proto
    if flags & M.F_FRAGMENT:
        meta[b, M.FLAGS] = flags
        return flags
    meta[b, M.L4] = l4
    if proto == M.IPPROTO_TCP:
        if l4 + 20 > end:
            flags |= M.F_BAD_L4
            meta[b, M.L4] = -1
        else:
            doff = np.int32(data[b, l4 + 12] >> 4) * 4
            if doff < 20 or l4 + doff > end:
                flags |= M.F_BAD_L4
                meta[b, M.L4] = -1
            else:
                flags |= M.F_TCP
                meta[b, M.PAYLOAD] = l4 + doff
    elif proto == M.IPPROTO_UDP:
        if l4 + 8 > end:
            flags |= M.F_BAD_L4
            meta[b, M.L4] = -1
        elif _u16(data, b, l4 + 4) < 8 or l4 + _u16(data, b, l4 + 4) > end:
            flags |= M.F_BAD_L4  # UDP length field disagrees with the IP length
            meta[b, M.L4] = -1
        else:
            flags |= M.F_UDP
            meta[b, M.PAYLOAD] = l4 + 8
            if _u16(data, b, l4 + 2) == M.VXLAN_PORT and l4 + 16 <= end:
                flags |= M.F_VXLAN
                meta[b, M.TUNNEL] = l4 + 8
    elif proto == M.IPPROTO_ICMP:
        if l4 + 8 > end:
            flags |= M.F_BAD_L4
            meta[b, M.L4] = -1
        else:
            flags |= M.F_ICMP
            meta[b, M.PAYLOAD] = l4 + 8
    elif proto == M.IPPROTO_ICMPV6:
        if l4 + 4 > end:
            flags |= M.F_BAD_L4
            meta[b, M.L4] = -1
        else:
            flags |= M.F_ICMP6
            meta[b, M.PAYLOAD] = l4 + 4
    elif proto == M.IPPROTO_GRE:
        if l4 + 4 > end:
            flags |= M.F_BAD_L4
            meta[b, M.L4] = -1
        else:
            g = _u16(data, b, l4)
            # Optional words after the base header: checksum+offset (C or RFC 1701's R),
            # key (K), sequence number (S).
            glen = 4 + 4 * ((((g >> 15) | (g >> 14)) & 1) + ((g >> 13) & 1) + ((g >> 12) & 1))
            if l4 + glen > end:
                flags |= M.F_BAD_L4
                meta[b, M.L4] = -1
            else:
                flags |= M.F_GRE
                meta[b, M.PAYLOAD] = l4 + glen
    else:
        meta[b, M.PAYLOAD] = l4
    meta[b, M.FLAGS] = flags
    return flags


@njit(cache=True, nogil=True)
def parse_packet(data, meta, b):
    """Parse one packet in place; returns its FLAGS value."""
    return _parse(data, meta, b)


@njit(cache=True, nogil=True)
def parse_batch(data, meta, idx, n):
    """Parse every packet of a batch; returns how many were marked malformed."""
    # Inlined over borrowed views: no reference counting per packet (3x faster).
    data_view = borrowed(data)
    meta_view = borrowed(meta)
    bad = 0
    for k in range(n):
        if _parse(data_view, meta_view, idx[k]) & M.F_MALFORMED:
            bad += 1
    return bad
