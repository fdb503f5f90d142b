"""Memory ports: virtual wires between ports of one process (`mem:NAME`).

The two ports that open the same NAME are connected back to back: what one sends, the
other receives. Each port owns a bounded receive ring of buffer indices. When both ends
share a pool, sending moves indices only; across pools the frames are copied into the
receiver's pool in one compiled call per batch. A full ring drops the overflow, counts it
in the sender's `tx_dropped` and frees the buffers, as a real queue would.

The ring is single-producer single-consumer and takes no lock per batch: only the peer's
send() moves `head` and only this port's recv() moves `tail`, each after its compiled call
has copied the indices, and Python's GIL orders those plain integer stores. So, as for
every driver, send() and recv() may each be called from one thread at a time.

Spec: `mem:NAME[,ring=N][,mac=02:00:00:00:00:01]`. `ring` sizes this port's receive ring
(default 2048 packets); `mac` overrides the address derived from NAME and the side.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from numba import njit

from pktflow.packet import meta as M
from pktflow.packet.addr import AddressError, MACAddr
from pktflow.packet.pool import Batch, Pool
from pktflow.ports.base import Port, PortError, PortSpecError, register_driver, stable_mac

DEFAULT_RING = 2048
MAX_RING = 1 << 22


@njit(cache=True, nogil=True)
def _ring_push(ring, head, meta, idx, n):
    """Copy `idx[:n]` into the ring from position `head`; return their byte total."""
    size = ring.shape[0]
    total = 0
    for k in range(n):
        b = idx[k]
        ring[(head + k) % size] = b
        total += meta[b, M.LEN]
    return total


@njit(cache=True, nogil=True)
def _ring_pop(ring, tail, n, out, at, meta, ts, port_id, now):
    """Move n indices from the ring into `out[at:]`, stamping them as received on
    `port_id` at `now`; parse results of the sender's graph are cleared. Returns bytes."""
    size = ring.shape[0]
    total = 0
    for k in range(n):
        b = ring[(tail + k) % size]
        out[at + k] = b
        start = meta[b, M.START]
        length = meta[b, M.LEN]
        meta[b, :] = -1
        meta[b, M.START] = start
        meta[b, M.LEN] = length
        meta[b, M.FLAGS] = 0
        meta[b, M.NVLAN] = 0
        meta[b, M.USER] = 0
        meta[b, M.PORT] = port_id
        ts[b] = now
        total += length
    return total


@njit(cache=True, nogil=True)
def _copy_frames(src_data, src_meta, src_idx, n, dst_data, dst_meta, dst_idx, dst_headroom):
    """Copy n frames into buffers of another pool, keeping each frame's START when it fits.
    Frames too large for the destination are skipped; returns how many were copied (the
    copies fill `dst_idx[:count]`, so the unused destination buffers are the tail)."""
    dst_size = dst_data.shape[1]
    j = 0
    for k in range(n):
        s = src_idx[k]
        src_start = src_meta[s, M.START]
        length = src_meta[s, M.LEN]
        if length < 0 or src_start < 0 or src_start + length > src_data.shape[1]:
            continue
        start = src_start
        if start + length > dst_size:
            start = dst_headroom
            if start + length > dst_size:
                continue
        d = dst_idx[j]
        dst_data[d, start:start + length] = src_data[s, src_start:src_start + length]
        dst_meta[d, M.START] = start
        dst_meta[d, M.LEN] = length
        j += 1
    return j


class _Ring:
    """One port's receive ring: buffer indices of the receiving port's pool."""

    def __init__(self, size: int) -> None:
        self.slots = np.empty(size, dtype=np.int32)
        self.size = size
        self.head = 0  # packets ever pushed; written by the sending port only
        self.tail = 0  # packets ever popped; written by the receiving port only
        self.lock = threading.Lock()  # taken once per batch by send/recv, and by open/close
        self.pool: Pool | None = None  # set when the owning port is opened
        self.closed = False

    def __len__(self) -> int:
        return self.head - self.tail


class _Wire:
    """A named cable with two ends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ends: list[MemoryPort | None] = [None, None]


_wires: dict[str, _Wire] = {}
_wires_lock = threading.Lock()


def wire_names() -> list[str]:
    """Names of the wires that have at least one open end (for diagnostics and tests)."""
    with _wires_lock:
        return sorted(_wires)


def reset_wires() -> None:
    """Close every memory port of the process, so a next test or tutorial step starts from
    free names."""
    with _wires_lock:
        ports = [p for w in _wires.values() for p in w.ends if p is not None]
    for p in ports:
        p.close()


def derived_mac(name: str, side: int) -> MACAddr:
    """The default MAC of end `side` (0 for the first opener, 1 for the second) of a wire."""
    return stable_mac(f"mem:{name}/{side}")


def _parse_args(args: str) -> tuple[str, int, MACAddr | None]:
    name, *options = [part.strip() for part in args.split(",")]
    if not name:
        raise PortSpecError(f'bad memory port "mem:{args}": expected mem:NAME[,ring=N][,mac=M]')
    ring, mac = DEFAULT_RING, None
    for opt in options:
        key, eq, value = opt.partition("=")
        if key == "ring" and eq:
            if not value.isdigit() or not 1 <= int(value) <= MAX_RING:
                raise PortSpecError(f'bad memory port "mem:{args}": ring="{value}" must be '
                                    f"a whole number of packets from 1 to {MAX_RING}")
            ring = int(value)
        elif key == "mac" and eq:
            try:
                mac = MACAddr(value)
            except AddressError as e:
                raise PortSpecError(f'bad memory port "mem:{args}": mac: {e}') from None
        else:
            raise PortSpecError(f'bad memory port "mem:{args}": unknown option "{opt}" '
                                f"(known: ring=N, mac=XX:XX:XX:XX:XX:XX)")
    return name, ring, mac


class MemoryPort(Port):
    """One end of a memory wire. Attaches to its wire when created, so a third port on the
    same name fails at configuration time; `close()` detaches and frees the name."""

    driver = "mem"

    def __init__(self, port_id: int, args: str) -> None:
        super().__init__(port_id, args)
        self.wire_name, ring_size, mac = _parse_args(args)
        self._ring = _Ring(ring_size)
        self._scratch: Batch | None = None  # destination buffers for cross-pool copies
        with _wires_lock:
            wire = _wires.get(self.wire_name)
            if wire is None:
                wire = _wires[self.wire_name] = _Wire(self.wire_name)
            if None not in wire.ends:
                raise PortError(
                    f'memory wire "{self.wire_name}" already has two ports '
                    f"({wire.ends[0].id} and {wire.ends[1].id}); a wire joins exactly two: "
                    f"use another name for port {port_id}"
                )
            self.side = wire.ends.index(None)
            wire.ends[self.side] = self
        self._wire: _Wire | None = wire
        self._mac = mac if mac is not None else derived_mac(self.wire_name, self.side)

    @property
    def mac(self) -> MACAddr:
        return self._mac

    @property
    def name(self) -> str:
        return f"mem:{self.wire_name}"

    @property
    def link_up(self) -> bool:
        """True while a peer is attached and open (a cable with something at its far end)."""
        peer = self.peer
        return peer is not None and peer.pool is not None

    @property
    def peer(self) -> MemoryPort | None:
        """The port at the other end of the wire, if any."""
        wire = self._wire
        return None if wire is None else wire.ends[1 - self.side]

    @property
    def queued(self) -> int:
        """Packets waiting in this port's receive ring."""
        return len(self._ring)

    @property
    def queue_capacity(self) -> int:
        return self._ring.size

    def open(self, pool: Pool) -> None:
        if self._wire is None:
            raise PortError(f"port {self.id} ({self.name}) is closed; create a new port")
        ring = self._ring
        with ring.lock:
            if len(ring) and ring.pool is not pool:
                raise PortError(f"port {self.id} ({self.name}): cannot switch pools while "
                                f"{len(ring)} packets are queued")
            ring.pool = pool
        super().open(pool)

    def send(self, batch: Batch) -> int:
        n = batch.n
        if n == 0:
            return 0
        wire = self._wire
        peer = None if wire is None else wire.ends[1 - self.side]
        ring = None if peer is None else peer._ring
        pool = None if ring is None else ring.pool
        if pool is None or ring.closed:
            self._drop(batch, 0)  # a cable to nowhere
            return 0
        if batch.pool is not pool:
            batch = self._copy_to(batch, pool)
            n = batch.n
            if n == 0:
                return 0
        # One lock per batch (not per packet): a ring must never see two writers or a
        # close() in the middle of a push, whichever threads a graph or generator uses.
        with ring.lock:
            head = ring.head
            room = 0 if ring.closed else ring.size - (head - ring.tail)
            take = n if n <= room else room
            if take > 0:
                nbytes = _ring_push(ring.slots, head, pool.meta, batch.idx, take)
                ring.head = head + take  # publish only after the indices are in the slots
        if take > 0:
            stats = self.stats
            stats.tx_packets += take
            stats.tx_bytes += nbytes
        else:
            take = 0
        if take < n:
            self._drop(batch, take)
        batch.n = 0
        return take

    def _drop(self, batch: Batch, keep: int) -> None:
        """Count and free the packets of `batch` from position `keep` on."""
        dropped = batch.n - keep
        if dropped > 0:
            self.stats.tx_dropped += dropped
            batch.pool.free(batch, keep)
        batch.n = 0

    def _copy_to(self, batch: Batch, dst_pool: Pool) -> Batch:
        """Copy `batch` into fresh buffers of `dst_pool` and free the originals; returns the
        copies. Frames the peer's pool has no room or no buffer for are counted as dropped."""
        n = batch.n
        scratch = self._scratch
        if scratch is None or scratch.pool is not dst_pool or scratch.capacity < n:
            scratch = self._scratch = Batch(dst_pool, max(n, 256))
        scratch.n = 0
        got = dst_pool.alloc_into(scratch, n)
        src = batch.pool
        copied = _copy_frames(src.data, src.meta, batch.idx, got, dst_pool.data, dst_pool.meta,
                              scratch.idx, dst_pool.headroom)
        self.stats.tx_dropped += n - copied
        dst_pool.free(scratch, copied)
        src.free(batch)
        return scratch

    def recv(self, batch: Batch, max_n: int) -> int:
        ring = self._ring
        if ring.head == ring.tail:
            return 0  # nothing waiting: no lock taken on an idle poll
        with ring.lock:  # one reader at a time, and never beside close()
            tail = ring.tail
            waiting = ring.head - tail
            at = batch.n
            take = len(batch.idx) - at
            if max_n < take:
                take = max_n
            if waiting < take:
                take = waiting
            if take <= 0:
                return 0
            pool = ring.pool
            if batch.pool is not pool:
                raise PortError(f"port {self.id} ({self.name}): recv into a batch of pool "
                                f'"{batch.pool.name}" but the port was opened on another pool')
            nbytes = _ring_pop(ring.slots, tail, take, batch.idx, at, pool.meta, pool.ts,
                               self.id, time.time_ns())
            ring.tail = tail + take  # frees the slots for the sender only after the copy
        batch.n = at + take
        stats = self.stats
        stats.rx_packets += take
        stats.rx_bytes += nbytes
        return take

    def close(self) -> None:
        """Detach from the wire (freeing the name once both ends are closed) and return
        any packets still queued to the pool, counted as rx_dropped."""
        wire = self._wire
        if wire is None:
            return
        with _wires_lock:
            wire.ends[self.side] = None
            if wire.ends == [None, None] and _wires.get(wire.name) is wire:
                del _wires[wire.name]
        self._wire = None
        ring = self._ring
        # Under the ring's lock: a recv or a peer's send in progress finishes first; a
        # peer that sends after this sees `closed` and counts its packets as dropped.
        with ring.lock:
            ring.closed = True
            left = len(ring)
            if left and ring.pool is not None:
                drain = Batch(ring.pool, left)
                _ring_pop(ring.slots, ring.tail, left, drain.idx, 0, ring.pool.meta,
                          ring.pool.ts, self.id, 0)
                drain.n = left
                ring.pool.free(drain)
            ring.tail = ring.head
        self.stats.rx_dropped += left


register_driver("mem", MemoryPort)
