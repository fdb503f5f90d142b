"""The compiled per-packet pass over frames the template synthesiser made: what the
kernel's pktgen changes in every packet (flow destinations, IP id, the pktgen header's
sequence number and time, the UDP checksum rule), and copies for clone_skb/burst."""

from __future__ import annotations

import numpy as np
from numba import njit

from pktflow.packet import meta as M
from pktflow.packet.checksum import checksum_adjust, put_word16, word16


@njit(cache=True, nogil=True)
def _special_dst(a):
    """Addresses a random IPv4 destination skips, as the kernel does."""
    top = a >> 24
    return top == 127 or top == 0 or (a >> 28) == 14 or a == 0xFFFFFFFF \
        or (a & 0xFFFFFF00) == 0xE0000000


@njit(cache=True, nogil=True)
def _next_daddr(cur, dmin, dmax, rnd):
    """The kernel's next IPv4 destination: the next in [dmin, dmax], or a random one below
    dmax that is not loopback, multicast, broadcast or 0.0.0.0/8."""
    if dmin >= dmax:
        return cur
    if rnd:
        a = np.random.randint(dmin, dmax)
        while _special_dst(a):
            a = np.random.randint(dmin, dmax)
        return a
    a = cur + 1
    if a > dmax:
        a = dmin
    return a


@njit(cache=True, nogil=True)
def stamp_batch(data, meta, idx, n, l3, l4, pay, ipv4, st, flows, dmin, dmax, dst_rnd,
                udpcsum, tv_sec, tv_usec, repeat):
    """Write the per-packet fields of the kernel's frames into idx[:n], already made by
    synth_batch: the flow's destination (flows > 0), IPv4 id, pktgen sequence number and
    time, and the UDP checksum (kept exact with UDPCSUM, else zero as the kernel sends).
    `repeat` consecutive frames carry one built packet (clone_skb/burst): same id and
    sequence number. st = [seq, ip_id, curfl, nflows, cur_daddr, lflow, cflows, flow_seq]."""
    cflows = st[6]
    for k in range(n):
        b = np.int64(idx[k])
        at = np.int64(meta[b, M.START])
        ipc = at + l3 + 10
        uc = at + l4 + 6
        ucs = word16(data, b, uc)
        if ipv4 and (cflows > 0 or (dst_rnd and dmin < dmax)):
            if cflows > 0:
                # pick the flow as the kernel's f_pick does; a flow keeps its destination
                fl = st[2]
                if st[7]:
                    if flows[fl, 0] >= st[5]:
                        flows[fl, 0] = 0
                        flows[fl, 1] = 0
                        fl = fl + 1
                        if fl >= cflows:
                            fl = 0
                else:
                    fl = np.random.randint(0, cflows)
                    if flows[fl, 0] > st[5]:
                        flows[fl, 0] = 0
                        flows[fl, 1] = 0
                st[2] = fl
                if flows[fl, 1]:
                    daddr = flows[fl, 2]
                else:
                    daddr = _next_daddr(st[4], dmin, dmax, dst_rnd)
                    st[4] = daddr
                    flows[fl, 1] = 1
                    flows[fl, 2] = daddr
                    st[3] += 1
                flows[fl, 0] += 1
            else:
                daddr = _next_daddr(st[4], dmin, dmax, dst_rnd)
                st[4] = daddr
            for w in range(2):
                o = at + l3 + 16 + 2 * w
                old = word16(data, b, o)
                new = (daddr >> (16 - 16 * w)) & 0xFFFF
                put_word16(data, b, o, new)
                put_word16(data, b, ipc, checksum_adjust(word16(data, b, ipc), old, new))
                ucs = checksum_adjust(ucs, old, new)
        seq = st[0] + k // repeat
        ipid = (st[1] + k // repeat) & 0xFFFF
        if ipv4:
            o = at + l3 + 4
            old = word16(data, b, o)
            put_word16(data, b, o, ipid)
            put_word16(data, b, ipc, checksum_adjust(word16(data, b, ipc), old, ipid))
        vals = (seq >> 16, seq, tv_sec >> 16, tv_sec, tv_usec >> 16, tv_usec)
        for w in range(6):
            o = at + pay + 4 + 2 * w
            old = word16(data, b, o)
            new = vals[w] & 0xFFFF
            put_word16(data, b, o, new)
            ucs = checksum_adjust(ucs, old, new)
        if udpcsum:
            put_word16(data, b, uc, 0xFFFF if ucs == 0 else ucs)
        else:
            put_word16(data, b, uc, 0)
    st[0] += (n + repeat - 1) // repeat
    st[1] += (n + repeat - 1) // repeat


@njit(cache=True, nogil=True)
def repeat_frames(data, meta, idx, n, repeat):
    """Make idx[k] a copy of idx[k // repeat] (from the back, so sources survive):
    clone_skb and burst send one built packet several times."""
    for k in range(n - 1, -1, -1):
        src = idx[k // repeat]
        dst = idx[k]
        if src == dst:
            continue
        ln = meta[src, M.LEN]
        s0 = meta[src, M.START]
        s1 = meta[dst, M.START]
        for i in range(ln):
            data[dst, s1 + i] = data[src, s0 + i]
        meta[dst, M.LEN] = ln

