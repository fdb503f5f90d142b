"""Compiled per-batch helpers of the flow engine: one native call per batch, never per packet.

`split_batch` sorts a batch into output buckets by the verdicts a node kernel wrote;
`partition_verdicts` gives the partitioner's exact N/M sequence across batches;
`copy_packets` makes independent copies of frames for the copier.
"""

from __future__ import annotations

from numba import njit

from pktflow.flow.kinds import VERDICT_ERROR
from pktflow.packet import meta as M


@njit(cache=True, nogil=True)
def split_batch(idx, n, verdict, vmap, buckets, counts):
    """Put `idx[k]` into bucket `vmap[verdict[k]]`, keeping order within each bucket.

    Buckets 0..nb-3 are the node's outputs, nb-2 collects VERDICT_ERROR (the function
    raised) and nb-1 verdicts outside `vmap` (a splitter index out of range)."""
    nb = buckets.shape[0]
    err = nb - 2
    bad = nb - 1
    nmap = vmap.shape[0]
    for s in range(nb):
        counts[s] = 0
    for k in range(n):
        v = verdict[k]
        if v == VERDICT_ERROR:
            s = err
        elif v < 0 or v >= nmap:
            s = bad
        else:
            s = vmap[v]
        buckets[s, counts[s]] = idx[k]
        counts[s] += 1


@njit(cache=True, nogil=True)
def partition_verdicts(n, pos, first, second, verdict):
    """Verdict 0 for `first` packets, then 1 for `second`, repeating from cycle position
    `pos`; returns the position after this batch so the next batch continues exactly."""
    cycle = first + second
    for k in range(n):
        verdict[k] = 0 if pos < first else 1
        pos += 1
        if pos >= cycle:
            pos = 0
    return pos


@njit(cache=True, nogil=True)
def copy_packets(data, meta, ts, src, dst, n):
    """Copy frame bytes, metadata and timestamp of `src[k]` into `dst[k]` (same offsets)."""
    width = data.shape[1]
    for k in range(n):
        s = src[k]
        d = dst[k]
        meta[d, :] = meta[s, :]
        ts[d] = ts[s]
        start = meta[s, M.START]
        end = start + meta[s, M.LEN]
        if start < 0:
            start = 0
        if end > width:
            end = width
        if end > start:
            data[d, start:end] = data[s, start:end]


@njit(cache=True, nogil=True)
def stamp(ts, idx, n, now):
    """Set the timestamp of every packet of a batch (generated packets)."""
    for k in range(n):
        ts[idx[k]] = now


@njit(cache=True, nogil=True)
def ring_put(slots, head, idx, n):
    """Copy `idx[:n]` into a circular array from absolute position `head`."""
    size = slots.shape[0]
    for k in range(n):
        slots[(head + k) % size] = idx[k]


@njit(cache=True, nogil=True)
def ring_get(slots, tail, out, at, n):
    """Copy n entries from absolute position `tail` of a circular array into `out[at:]`."""
    size = slots.shape[0]
    for k in range(n):
        out[at + k] = slots[(tail + k) % size]
