"""Packet buffers and batches, held in NumPy arrays.

A `Pool` owns `data` (one row of bytes per buffer), `meta` (one int32 row of metadata per
buffer, columns in `meta.py`) and `ts` (receive or send time in ns). A `Batch` is a vector
of buffer indices into one pool: flows pass batches around without copying packet bytes,
and compiled kernels take `(pool.data, pool.meta, batch.idx, batch.n)`.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit

from pktflow.packet import meta as M

DEFAULT_BUFFERS = 16384
DEFAULT_BUFSIZE = 2048
DEFAULT_HEADROOM = 128
DEFAULT_BATCH = 256


class PoolExhausted(RuntimeError):
    """No free buffer is left; raise the pool size or drain the graph faster."""


@njit(cache=True, nogil=True)
def _reset_meta(meta, idx, n, headroom):
    # Explicit stores: a row-slice assignment per packet costs more than the stores.
    for k in range(n):
        b = idx[k]
        meta[b, M.START] = headroom
        meta[b, M.LEN] = 0
        meta[b, M.PORT] = -1
        meta[b, M.L3] = -1
        meta[b, M.L4] = -1
        meta[b, M.PAYLOAD] = -1
        meta[b, M.ETYPE] = -1
        meta[b, M.PROTO] = -1
        meta[b, M.FLAGS] = 0
        meta[b, M.MPLS] = -1
        meta[b, M.TUNNEL] = -1
        meta[b, M.OUT] = -1
        meta[b, M.NVLAN] = 0
        meta[b, M.USER] = 0


@njit(cache=True, nogil=True)
def _pop(free, nfree, out, start, n):
    take = min(n, nfree)
    for k in range(take):
        out[start + k] = free[nfree - 1 - k]
    return take


@njit(cache=True, nogil=True)
def _push(free, nfree, idx, start, n):
    for k in range(n):
        free[nfree + k] = idx[start + k]
    return nfree + n


class Pool:
    """A fixed set of packet buffers, each `bufsize` bytes with `headroom` in front.

    `headroom` bytes before each fresh packet leave room to prepend headers (encapsulation)
    without moving the payload. The largest frame is `bufsize - headroom` bytes.
    """

    def __init__(
        self,
        buffers: int = DEFAULT_BUFFERS,
        bufsize: int = DEFAULT_BUFSIZE,
        headroom: int = DEFAULT_HEADROOM,
        name: str = "pool",
    ) -> None:
        if buffers < 1 or bufsize < 64 or not 0 <= headroom < bufsize - 60:
            raise ValueError(
                f"bad pool geometry: buffers={buffers} bufsize={bufsize} headroom={headroom}"
            )
        self.name = name
        self.buffers = buffers
        self.bufsize = bufsize
        self.headroom = headroom
        self.data = np.zeros((buffers, bufsize), dtype=np.uint8)
        self.meta = np.full((buffers, M.NCOLS), -1, dtype=np.int32)
        self.ts = np.zeros(buffers, dtype=np.int64)
        self._free = np.arange(buffers - 1, -1, -1, dtype=np.int32)
        self._nfree = buffers
        self._lock = threading.Lock()

    @property
    def max_frame(self) -> int:
        return self.bufsize - self.headroom

    @property
    def available(self) -> int:
        return self._nfree

    def alloc_into(self, batch: Batch, n: int) -> int:
        """Append up to `n` fresh buffers to `batch`; returns how many it got (may be 0)."""
        n = min(n, batch.capacity - batch.n)
        with self._lock:
            got = _pop(self._free, self._nfree, batch.idx, batch.n, n)
            self._nfree -= got
        _reset_meta(self.meta, batch.idx[batch.n:], got, self.headroom)
        batch.n += got
        return got

    def alloc(self, n: int, capacity: int | None = None) -> Batch:
        """A new batch of `n` fresh buffers; raises PoolExhausted if fewer are free."""
        batch = Batch(self, capacity or max(n, 1))
        if self.alloc_into(batch, n) != n:
            self.free(batch)
            raise PoolExhausted(f"{self.name}: asked for {n} buffers, {self._nfree} free")
        return batch

    def free(self, batch: Batch, start: int = 0) -> None:
        """Return `batch`'s buffers from position `start` on to the pool."""
        count = batch.n - start
        if count <= 0:
            return
        with self._lock:
            self._nfree = _push(self._free, self._nfree, batch.idx, start, count)
        batch.n = start

    # Convenience for Python code (tests, tools): one packet at a time.
    def write(self, b: int, frame: bytes, start: int | None = None) -> None:
        """Put `frame` into buffer `b` (at the headroom unless `start` is given)."""
        start = self.headroom if start is None else start
        if start + len(frame) > self.bufsize:
            raise ValueError(
                f"frame of {len(frame)} bytes does not fit a {self.bufsize}-byte buffer "
                f"at offset {start}"
            )
        self.data[b, start:start + len(frame)] = np.frombuffer(frame, dtype=np.uint8)
        self.meta[b, M.START] = start
        self.meta[b, M.LEN] = len(frame)

    def read(self, b: int) -> bytes:
        """The frame held in buffer `b`."""
        s, n = int(self.meta[b, M.START]), int(self.meta[b, M.LEN])
        return self.data[b, s:s + n].tobytes()


class Batch:
    """Up to `capacity` buffer indices of one pool; `idx[:n]` are the packets."""

    __slots__ = ("pool", "idx", "n")

    def __init__(self, pool: Pool, capacity: int = DEFAULT_BATCH) -> None:
        self.pool = pool
        self.idx = np.empty(capacity, dtype=np.int32)
        self.n = 0

    @property
    def capacity(self) -> int:
        return len(self.idx)

    def __len__(self) -> int:
        return self.n

    def frames(self) -> list[bytes]:
        """Every packet's bytes (a Python object per packet: for tools and tests only)."""
        return [self.pool.read(int(b)) for b in self.idx[: self.n]]

    def __repr__(self) -> str:
        return f"<Batch {self.n}/{self.capacity} of {self.pool.name}>"


_default_pool: Pool | None = None
_default_lock = threading.Lock()


def default_pool() -> Pool:
    """The process-wide pool that ports, generators and graphs share unless told otherwise.

    Sharing one pool lets memory ports hand packets from a generator to an NF by index.
    """
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = Pool(name="default")
        return _default_pool
