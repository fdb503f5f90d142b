"""AF_XDP port driver: `xdp:IFACE[,queue=Q][,mode=copy|zerocopy|auto]`.

One AF_XDP socket per port, bound to one queue of the interface, with its own UMEM (a
page-aligned area of frames the kernel writes received frames into and reads transmitted
frames from) and the four rings the kernel shares with us: fill and RX for receiving,
TX and completion for sending. The rings' producer/consumer logic runs in compiled
functions over NumPy views of the mapped rings, a whole batch per call, with memory fences
where the kernel's ring protocol needs ordering. An XDP program (`pktflow.ports.bpf`) sends
the queue's frames to the socket; it is attached as a BPF link, so closing the port, or the
process dying, detaches it.

Zero-copy needs driver support (veth has none): `mode=auto` and `mode=zerocopy` fall back
to copy mode with a log line when the kernel refuses it.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import struct
import time

import numpy as np
from numba import njit

from pktflow.packet import meta as M
from pktflow.packet.pool import Batch
from pktflow.ports.base import PortError, PortSpecError, register_driver
from pktflow.ports.bpf import BpfError, XskRedirect
from pktflow.ports.linux import (
    Interface,
    InterfacePort,
    log,
    memory_fence,
    parse_iface_args,
    privilege_error,
    release_mmap,
)

AF_XDP = 44
SOL_XDP = 283
XDP_MMAP_OFFSETS = 1
XDP_RX_RING = 2
XDP_TX_RING = 3
XDP_UMEM_REG = 4
XDP_UMEM_FILL_RING = 5
XDP_UMEM_COMPLETION_RING = 6
XDP_STATISTICS = 7
XDP_MAX_TX_SKB_BUDGET = 9
XDP_COPY = 1 << 1
XDP_ZEROCOPY = 1 << 2
XDP_PGOFF_RX_RING = 0
XDP_PGOFF_TX_RING = 0x80000000
XDP_UMEM_PGOFF_FILL_RING = 0x100000000
XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000

FRAME_SIZE = 2048
# Entries of the fill and RX rings (= UMEM frames that receive) and of the TX and
# completion rings (= frames that transmit). The receive side is the larger: a reader
# starved of CPU for a moment (a loaded machine, a generator busy sending) must not lose
# a burst, as a 16 MiB AF_PACKET ring does not.
RX_RING_SIZE = 8192
TX_RING_SIZE = 2048
MASK32 = 0xFFFFFFFF
MODES = ("auto", "copy", "zerocopy")

_libc = ctypes.CDLL(None, use_errno=True)


@njit(cache=True, nogil=True)
def _rx(umem, rx_prod, rx_cons, rx_desc, fill_prod, fill_desc, mask, data, meta, ts, idx,
        start, n, port_id, max_frame, now, frame_mask, errors):
    """Copy up to n received frames from the UMEM into idx[start:start+n] and give their
    UMEM frames straight back to the fill ring. Returns the number of buffers filled."""
    cons = np.int64(rx_cons[0])
    ready = (np.int64(rx_prod[0]) - cons) & MASK32
    memory_fence()  # read descriptors only after reading the producer index
    take = min(ready, n)
    fprod = np.int64(fill_prod[0])
    got = 0
    for i in range(take):
        d = (cons + i) & mask
        addr = np.int64(rx_desc[2 * d])
        length = np.int64(rx_desc[2 * d + 1] & MASK32)
        if length <= max_frame:
            b = idx[start + got]
            dst = meta[b, 0]
            data[b, dst:dst + length] = umem[addr:addr + length]
            meta[b, M.LEN] = length
            meta[b, M.PORT] = port_id
            ts[b] = now
            got += 1
        else:
            errors[0] += 1
        fill_desc[(fprod + i) & mask] = addr & frame_mask
    memory_fence()  # finish reading frames and writing fill entries before publishing
    rx_cons[0] = np.uint32((cons + take) & MASK32)
    fill_prod[0] = np.uint32((fprod + take) & MASK32)
    return got


@njit(cache=True, nogil=True)
def _reclaim(comp_prod, comp_cons, comp_desc, mask, free, nfree):
    """Move completed TX frames from the completion ring to the free stack; returns the
    new free count."""
    cons = np.int64(comp_cons[0])
    done = (np.int64(comp_prod[0]) - cons) & MASK32
    memory_fence()
    for i in range(done):
        free[nfree[0]] = comp_desc[(cons + i) & mask]
        nfree[0] += 1
    memory_fence()
    comp_cons[0] = np.uint32((cons + done) & MASK32)
    return done


@njit(cache=True, nogil=True)
def _tx(umem, tx_prod, tx_desc, mask, free, nfree, data, meta, idx, n, max_len):
    """Copy the frames of idx[:n] into free UMEM frames and post them on the TX ring.
    Returns (packets posted, bytes posted, frames rejected, packets consumed); it stops
    early only when no UMEM frame is free."""
    prod = np.int64(tx_prod[0])
    posted = 0
    nbytes = 0
    rejected = 0
    k = 0
    while k < n and nfree[0] > 0:
        b = idx[k]
        k += 1
        start = meta[b, M.START]
        length = meta[b, M.LEN]
        if length < 14 or length > max_len or start < 0:
            rejected += 1
            continue
        nfree[0] -= 1
        addr = np.int64(free[nfree[0]])
        umem[addr:addr + length] = data[b, start:start + length]
        d = (prod + posted) & mask
        tx_desc[2 * d] = addr
        tx_desc[2 * d + 1] = length  # len in the low half, options 0
        posted += 1
        nbytes += length
    memory_fence()  # descriptors and frames are complete before the producer moves
    tx_prod[0] = np.uint32((prod + posted) & MASK32)
    return posted, nbytes, rejected, k


class _Ring:
    """One mapped ring: producer and consumer indices and the descriptor array."""

    def __init__(self, fd: int, offsets: tuple[int, int, int, int], pgoff: int,
                 entry_words: int, entries: int) -> None:
        producer, consumer, desc, _flags = offsets
        size = desc + entries * 8 * entry_words
        self.map = mmap.mmap(fd, size, mmap.MAP_SHARED | mmap.MAP_POPULATE,
                             mmap.PROT_READ | mmap.PROT_WRITE, offset=pgoff)
        self.prod = np.frombuffer(self.map, np.uint32, 1, producer)
        self.cons = np.frombuffer(self.map, np.uint32, 1, consumer)
        self.desc = np.frombuffer(self.map, np.uint64, entries * entry_words, desc)

    def close(self) -> None:
        self.prod = self.cons = self.desc = None
        release_mmap(self.map)


class _SockaddrXdp(ctypes.Structure):
    _fields_ = [("family", ctypes.c_uint16), ("flags", ctypes.c_uint16),
                ("ifindex", ctypes.c_uint32), ("queue_id", ctypes.c_uint32),
                ("shared_umem_fd", ctypes.c_uint32)]


# One redirect program per interface and namespace in this process, shared by the ports
# bound to its queues.
_programs: dict[tuple[int, int], tuple[XskRedirect, int]] = {}


class XdpPort(InterfacePort):
    """A Linux interface queue through an AF_XDP socket."""

    driver = "xdp"
    OPTIONS = {"queue": int, "mode": str}

    def __init__(self, port_id: int, args: str) -> None:
        super().__init__(port_id, args)
        ifname, opts = parse_iface_args("xdp", args, self.OPTIONS)
        self.queue = opts.get("queue", 0)
        mode = opts.get("mode", "auto")
        if mode not in MODES:
            raise PortSpecError(f"xdp:{args}: mode must be one of {', '.join(MODES)}, "
                                f"got {mode}")
        if not 0 <= self.queue < 64:
            raise PortSpecError(f"xdp:{args}: queue must be 0..63, got {self.queue}")
        self.iface: Interface | None = None
        self._sock: socket.socket | None = None
        self._umem: mmap.mmap | None = None
        self._rings: list[_Ring] = []
        self._program_key: tuple[int, int] | None = None
        self.iface = Interface(ifname)
        try:
            self._open(mode)
        except BaseException:
            self.close()
            raise
        self._max_tx_len = self.iface.mtu + 14 + 4

    def _open(self, mode: str) -> None:
        try:
            sock = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
        except PermissionError as e:
            raise privilege_error("AF_XDP", e) from None
        except OSError as e:
            raise PortError(f"this kernel has no AF_XDP sockets ({e.strerror}): use "
                            f"packet:{self.iface.name}") from None
        self._sock = sock
        fd = sock.fileno()
        nframes = RX_RING_SIZE + TX_RING_SIZE
        self._umem = mmap.mmap(-1, nframes * FRAME_SIZE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._umem_view = np.frombuffer(self._umem, dtype=np.uint8)
        try:
            sock.setsockopt(SOL_XDP, XDP_UMEM_REG, struct.pack(
                "QQIIII", self._umem_view.ctypes.data, len(self._umem), FRAME_SIZE, 0, 0, 0))
        except OSError as e:
            raise PortError(f"xdp:{self.args}: cannot register the UMEM: {e.strerror} "
                            f"(needs root or CAP_IPC_LOCK for locked memory)") from None
        for opt, entries in ((XDP_UMEM_FILL_RING, RX_RING_SIZE), (XDP_RX_RING, RX_RING_SIZE),
                             (XDP_UMEM_COMPLETION_RING, TX_RING_SIZE),
                             (XDP_TX_RING, TX_RING_SIZE)):
            sock.setsockopt(SOL_XDP, opt, entries)
        try:
            # Newer kernels let one send() move more than 32 frames in copy mode.
            sock.setsockopt(SOL_XDP, XDP_MAX_TX_SKB_BUDGET, TX_RING_SIZE)
        except OSError:
            pass
        off = struct.unpack("16Q", sock.getsockopt(SOL_XDP, XDP_MMAP_OFFSETS, 128))
        self.rx = _Ring(fd, off[0:4], XDP_PGOFF_RX_RING, 2, RX_RING_SIZE)
        self._rings.append(self.rx)
        self.tx = _Ring(fd, off[4:8], XDP_PGOFF_TX_RING, 2, TX_RING_SIZE)
        self._rings.append(self.tx)
        self.fill = _Ring(fd, off[8:12], XDP_UMEM_PGOFF_FILL_RING, 1, RX_RING_SIZE)
        self._rings.append(self.fill)
        self.comp = _Ring(fd, off[12:16], XDP_UMEM_PGOFF_COMPLETION_RING, 1, TX_RING_SIZE)
        self._rings.append(self.comp)
        # Frames 0..RX_RING_SIZE-1 receive, the rest transmit.
        self.fill.desc[:] = np.arange(RX_RING_SIZE, dtype=np.uint64) * FRAME_SIZE
        self.fill.prod[0] = RX_RING_SIZE
        self._tx_free = np.arange(nframes - 1, RX_RING_SIZE - 1, -1,
                                  dtype=np.uint64) * FRAME_SIZE
        self._tx_nfree = np.array([TX_RING_SIZE], dtype=np.int64)
        self._errors = np.zeros(1, dtype=np.int64)
        self._polls = 0
        self._attach_program()
        self.zerocopy = self._bind(mode)
        _programs[self._program_key][0].add_socket(self.queue, fd)
        sock.setblocking(False)

    def _attach_program(self) -> None:
        key = (os.fstat(self.iface.netns.fd).st_ino, self.iface.index)
        prog, users = _programs.get(key, (None, 0))
        if prog is None:
            try:
                prog = XskRedirect(self.iface)
            except BpfError as e:
                raise PortError(f"xdp:{self.args}: {e}") from None
        _programs[key] = (prog, users + 1)
        self._program_key = key

    def _bind(self, mode: str) -> bool:
        """Bind to the queue, zero-copy first unless told otherwise; True if zero-copy."""
        tries = [XDP_ZEROCOPY, XDP_COPY] if mode != "copy" else [XDP_COPY]
        for flags in tries:
            addr = _SockaddrXdp(AF_XDP, flags, self.iface.index, self.queue, 0)
            if _libc.bind(self._sock.fileno(), ctypes.byref(addr), ctypes.sizeof(addr)) == 0:
                return flags == XDP_ZEROCOPY
            err = ctypes.get_errno()
            if flags == XDP_ZEROCOPY and err in (errno.EOPNOTSUPP, errno.EINVAL):
                log.info("xdp:%s: zero-copy not supported by %s, falling back to copy mode",
                         self.args, self.iface.name)
                continue
            raise PortError(f"xdp:{self.args}: cannot bind to {self.iface.name} queue "
                            f"{self.queue}: {os.strerror(err)}"
                            + (" (that queue does not exist)" if err == errno.EINVAL else ""))
        raise AssertionError("unreachable")

    @property
    def queued(self) -> int:
        """Frames in the RX ring waiting for recv()."""
        if not self._rings:
            return 0
        return (int(self.rx.prod[0]) - int(self.rx.cons[0])) & MASK32

    @property
    def queue_capacity(self) -> int:
        return RX_RING_SIZE

    def recv(self, batch: Batch, max_n: int) -> int:
        self._polls += 1
        if self._polls & 0xFF == 0:
            # Kernel drops (RX ring full) show in the statistics while the port runs.
            self.refresh_kernel_stats()
        if self.rx.prod[0] == self.rx.cons[0]:
            return 0
        pool = self.pool
        first = batch.n
        avail = pool.alloc_into(batch, max_n)
        got = _rx(self._umem_view, self.rx.prod, self.rx.cons, self.rx.desc, self.fill.prod,
                  self.fill.desc, RX_RING_SIZE - 1, pool.data, pool.meta, pool.ts, batch.idx,
                  first, avail, self.id, pool.max_frame, time.time_ns(), -FRAME_SIZE,
                  self._errors)
        pool.free(batch, first + got)
        with self._stats_lock:
            self.stats.rx_packets += got
            self.stats.rx_bytes += int(pool.meta[batch.idx[first:first + got], M.LEN].sum())
            self.stats.rx_errors += int(self._errors[0])
        self._errors[0] = 0
        return got

    def send(self, batch: Batch) -> int:
        pool = self.pool or batch.pool
        done = sent = nbytes = rejected = 0
        for _attempt in range(4):  # completions free UMEM frames; give up after a few
            _reclaim(self.comp.prod, self.comp.cons, self.comp.desc, TX_RING_SIZE - 1,
                     self._tx_free, self._tx_nfree)
            q, b, r, k = _tx(self._umem_view, self.tx.prod, self.tx.desc, TX_RING_SIZE - 1,
                             self._tx_free, self._tx_nfree, pool.data, pool.meta,
                             batch.idx[done:], batch.n - done, self._max_tx_len)
            sent, nbytes, rejected, done = sent + q, nbytes + b, rejected + r, done + k
            self._kick()
            if done == batch.n:
                break
        return self._sent(batch, sent, nbytes, rejected, done)

    def _kick(self, rounds: int = 64) -> None:
        """Make the kernel transmit what the TX ring holds; copy mode sends a budget of
        frames per call, so call again while it says there is more."""
        for _ in range(rounds):
            if self.tx.cons[0] == self.tx.prod[0]:
                return
            try:
                self._sock.send(b"", socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                if e.errno in (errno.EBUSY, errno.ENOBUFS, errno.ENETDOWN, errno.ENXIO):
                    return
                raise

    def kernel_stats(self) -> dict[str, int]:
        """The socket's XDP_STATISTICS counters (drops the graph never saw)."""
        raw = self._sock.getsockopt(SOL_XDP, XDP_STATISTICS, 48)
        names = ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
                 "rx_fill_ring_empty_descs", "tx_ring_empty_descs")
        return dict(zip(names, struct.unpack(f"{len(raw) // 8}Q", raw), strict=False))

    def refresh_kernel_stats(self) -> None:
        """Copy the kernel's drop counters into stats (they count since the socket opened)."""
        k = self.kernel_stats()
        with self._stats_lock:
            self.stats.rx_dropped = k["rx_dropped"] + k.get("rx_ring_full", 0)

    def close(self) -> None:
        if self._sock is not None and self._rings:
            try:
                self._kick()
                self.refresh_kernel_stats()
            except OSError:
                pass  # the interface is gone
        key, self._program_key = self._program_key, None
        if key in _programs:
            prog, users = _programs[key]
            prog.remove_socket(self.queue)
            if users <= 1:
                prog.close()
                del _programs[key]
            else:
                _programs[key] = (prog, users - 1)
        for ring in self._rings:
            ring.close()
        self._rings = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._umem is not None:
            self._umem_view = None
            release_mmap(self._umem)
            self._umem = None
        if self.iface is not None:
            self.iface.close()
            self.iface = None


register_driver("xdp", XdpPort)
