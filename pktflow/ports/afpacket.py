"""AF_PACKET port driver: `packet:IFACE[,fanout=GROUP][,fanout_mode=hash|lb|cpu]
[,promisc=1][,bypass=1]`.

Two packet sockets per port with TPACKET_V3 rings mapped into our memory: a block-based
receive ring, and a frame-based transmit ring on a send-only socket. A compiled function
moves a whole batch between a ring and the pool in one call; Python pays once per batch
(one `send()` kick per transmitted batch, no system call per received batch). The
transmit ring can also be lent to a generator that writes frames into it in place
(`lend_tx`). Each transmitted frame carries a virtio-net header whose hdr_len is the whole
frame: the kernel then copies the frame into its buffer at once instead of pinning ring
pages as fragments, which a veth or bridge must copy again page by page. PACKET_QDISC_BYPASS hands
frames straight to the driver, PACKET_FANOUT lets several ports (workers) share one
interface, and the kernel's drop counter (PACKET_STATISTICS) lands in `stats.rx_dropped`.
"""

from __future__ import annotations

import errno
import mmap
import socket
import struct
import time

import numpy as np
from numba import njit

from pktflow.packet import meta as M
from pktflow.packet.pool import Batch
from pktflow.ports.base import PortError, PortSpecError, TxLease, register_driver
from pktflow.ports.linux import (
    Interface,
    InterfacePort,
    memory_fence,
    parse_iface_args,
    privilege_error,
    release_mmap,
)

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_VNET_HDR = 15
PACKET_FANOUT = 18
PACKET_TX_HAS_OFF = 19
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
FANOUT_MODES = {"hash": 0, "lb": 1, "cpu": 2}
PACKET_FANOUT_FLAG_IGNORE_OUTGOING = 0x4000

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_SENDING = 2
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
PACKET_OUTGOING = 4

# struct tpacket3_hdr is 48 bytes; on receive a struct sockaddr_ll follows it. A transmit
# slot holds the header, then (PACKET_TX_HAS_OFF, at tp_mac) a 10-byte virtio_net_hdr and
# the frame, placed so that the frame starts 8-byte aligned for the generator's word copies.
TPACKET3_HDRLEN = 48
SLL_PKTTYPE = TPACKET3_HDRLEN + 10
VNET_HDR_LEN = 10
TX_DATA_AT = 64  # the frame's offset in a transmit slot
TX_VNET_AT = TX_DATA_AT - VNET_HDR_LEN

RX_BLOCK_SIZE = 1 << 16
RX_BLOCKS = 256
RX_FRAME_SIZE = 2048
RX_BLOCK_TIMEOUT_MS = 1
TX_FRAME_SIZE = 2048
TX_FRAMES = 1024
TX_BLOCK_SIZE = 1 << 16


@njit(cache=True, nogil=True, inline="always")
def _u32(ring32, offset):
    """The u32 at a byte offset, as int64 (mixing uint32 and int64 would give floats)."""
    return np.int64(ring32[offset >> 2])


@njit(cache=True, nogil=True)
def _rx_v3(ring, ring32, block_size, nblocks, state, data, meta, ts, idx, start, n, port_id,
           max_frame):
    """Copy up to n frames out of the receive ring into the buffers idx[start:start+n].

    state = [block, packet index in block, offset of that packet, frames too big].
    Returns the number of buffers filled; fully read blocks go back to the kernel."""
    got = 0
    while got < n:
        base = state[0] * block_size
        if _u32(ring32, base + 8) & TP_STATUS_USER == 0:
            break
        memory_fence()  # read the block's contents only after seeing it is ours
        num_pkts = _u32(ring32, base + 12)
        if state[1] == 0:
            state[2] = _u32(ring32, base + 16)
        while state[1] < num_pkts and got < n:
            h = base + state[2]
            snaplen = _u32(ring32, h + 12)
            status = _u32(ring32, h + 20)
            mac_off = np.int64(ring[h + 24]) | (np.int64(ring[h + 25]) << 8)
            state[1] += 1
            state[2] += _u32(ring32, h)
            if ring[h + SLL_PKTTYPE] == PACKET_OUTGOING:
                continue
            tagged = status & TP_STATUS_VLAN_VALID != 0
            length = snaplen + (4 if tagged else 0)
            if length > max_frame:
                state[3] += 1
                continue
            b = idx[start + got]
            dst = meta[b, 0]
            src = h + mac_off
            if tagged:
                # The kernel took the 802.1Q tag out of the frame: put it back, so the
                # graph sees the frame as it was on the wire.
                for i in range(12):
                    data[b, dst + i] = ring[src + i]
                tpid = 0x8100
                if status & TP_STATUS_VLAN_TPID_VALID:
                    tpid = np.int64(ring[h + 36]) | (np.int64(ring[h + 37]) << 8)
                tci = _u32(ring32, h + 32) & 0xFFFF
                data[b, dst + 12] = tpid >> 8
                data[b, dst + 13] = tpid & 0xFF
                data[b, dst + 14] = tci >> 8
                data[b, dst + 15] = tci & 0xFF
                data[b, dst + 16:dst + length] = ring[src + 12:src + snaplen]
            else:
                data[b, dst:dst + length] = ring[src:src + snaplen]
            meta[b, M.LEN] = length
            meta[b, M.PORT] = port_id
            ts[b] = _u32(ring32, h + 4) * 1_000_000_000 + _u32(ring32, h + 8)
            got += 1
        if state[1] >= num_pkts:
            memory_fence()  # finish reading before handing the block back
            ring32[(base + 8) >> 2] = TP_STATUS_KERNEL
            state[0] = (state[0] + 1) % nblocks
            state[1] = 0
    return got


@njit(cache=True, nogil=True, inline="always")
def _tx_header(ring, ring32, f, length):
    """Fill the slot header at byte f for a frame of `length` bytes at TX_DATA_AT: the
    data (virtio_net_hdr + frame) starts at tp_mac, and hdr_len asks the kernel to copy
    the whole frame into the socket buffer's linear part."""
    f32 = f >> 2
    ring32[f32] = 0  # tp_next_offset
    ring32[f32 + 3] = length + VNET_HDR_LEN  # tp_snaplen
    ring32[f32 + 4] = length + VNET_HDR_LEN  # tp_len
    ring[f + 24] = TX_VNET_AT  # tp_mac (u16, little endian)
    ring[f + 25] = 0
    v = f + TX_VNET_AT
    ring[v:v + VNET_HDR_LEN] = 0  # no offloads, no segmentation
    ring[v + 2] = length & 0xFF  # hdr_len, little endian
    ring[v + 3] = length >> 8


@njit(cache=True, nogil=True)
def _tx_v3(ring, ring32, tx_base, frame_size, nframes, state, data, meta, idx, n, max_len):
    """Copy the frames of idx[:n] into free transmit-ring slots and mark them for sending.

    state = [next slot]. Returns (packets queued, bytes queued, frames rejected,
    packets consumed); it stops early only when the ring is full."""
    queued = 0
    nbytes = 0
    rejected = 0
    k = 0
    while k < n:
        f = tx_base + state[0] * frame_size
        f32 = f >> 2
        if _u32(ring32, f + 20) & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING):
            break  # slot still owned by the kernel: the ring is full
        b = idx[k]
        k += 1
        start = meta[b, M.START]
        length = meta[b, M.LEN]
        if length < 14 or length > max_len or start < 0:
            rejected += 1
            continue
        d = f + TX_DATA_AT
        ring[d:d + length] = data[b, start:start + length]
        _tx_header(ring, ring32, f, length)
        memory_fence()  # the frame is complete before the kernel may see the request
        ring32[f32 + 5] = TP_STATUS_SEND_REQUEST
        state[0] = (state[0] + 1) % nframes
        queued += 1
        nbytes += length
    return queued, nbytes, rejected, k


@njit(cache=True, nogil=True)
def _tx_lend(ring32, tx_base, frame_size, nframes, state, idx, max_n):
    """Write into idx the slots, from the next one on, that the kernel does not own (at
    most max_n, in ring order, wrapping); returns how many."""
    n = 0
    slot = state[0]
    while n < max_n:
        if _u32(ring32, tx_base + slot * frame_size + 20) & (TP_STATUS_SEND_REQUEST
                                                              | TP_STATUS_SENDING):
            break
        idx[n] = slot
        n += 1
        slot = (slot + 1) % nframes
    return n


@njit(cache=True, nogil=True)
def _tx_commit(ring, ring32, tx_base, frame_size, nframes, state, meta, idx, n, max_len):
    """Mark the frames written in place into the lent slots idx[:n] for sending.

    A frame of a bad length (or moved off its slot's data offset) is refused; the frames
    after it move down a slot, because the kernel stops at the first slot not marked.
    Returns (packets queued, bytes queued, frames refused); state = [next slot]."""
    nbytes = 0
    rejected = 0
    w = 0
    first = state[0]
    for k in range(n):
        s = np.int64(idx[k])
        length = np.int64(meta[s, M.LEN])
        if length < 14 or length > max_len or meta[s, M.START] != TX_DATA_AT:
            rejected += 1
            continue
        slot = (first + w) % nframes
        f = tx_base + slot * frame_size
        if slot != s:
            src = tx_base + s * frame_size + TX_DATA_AT
            ring[f + TX_DATA_AT:f + TX_DATA_AT + length] = ring[src:src + length]
        _tx_header(ring, ring32, f, length)
        nbytes += length
        w += 1
    memory_fence()  # every frame is complete before the kernel may see a request
    for j in range(w):
        ring32[((tx_base + ((first + j) % nframes) * frame_size) >> 2) + 5] = \
            TP_STATUS_SEND_REQUEST
    state[0] = (first + w) % nframes
    return w, nbytes, rejected


class PacketPort(InterfacePort):
    """A Linux interface through an AF_PACKET socket with TPACKET_V3 mmap rings."""

    driver = "packet"
    OPTIONS = {"fanout": int, "fanout_mode": str, "promisc": bool, "bypass": bool}

    def __init__(self, port_id: int, args: str) -> None:
        super().__init__(port_id, args)
        ifname, opts = parse_iface_args("packet", args, self.OPTIONS)
        mode = opts.get("fanout_mode", "hash")
        if mode not in FANOUT_MODES:
            raise PortSpecError(f"packet:{args}: fanout_mode must be one of "
                                f"{', '.join(FANOUT_MODES)}, got {mode}")
        fanout = opts.get("fanout")
        if fanout is not None and not 0 <= fanout < 65536:
            raise PortSpecError(f"packet:{args}: fanout group must be 0..65535, got {fanout}")
        self.iface: Interface | None = None
        self._sock: socket.socket | None = None
        self._ring: mmap.mmap | None = None
        self._tx_sock: socket.socket | None = None
        self._tx_area: mmap.mmap | None = None
        self.iface = Interface(ifname)
        try:
            self._open_socket(opts.get("promisc", True), opts.get("bypass", True),
                              fanout, FANOUT_MODES[mode])
        except BaseException:
            self.close()
            raise
        self._rx_state = np.zeros(4, dtype=np.int64)
        self._tx_state = np.zeros(1, dtype=np.int64)
        # Ethernet header and one VLAN tag; the kernel leaves the MTU check to us, as it
        # does for every socket with a virtio-net header.
        self._max_tx_len = min(self.iface.mtu + 14 + 4, TX_FRAME_SIZE - TX_DATA_AT)
        self._polls = 0

    def _open_socket(self, promisc: bool, bypass: bool, fanout: int | None,
                     fanout_mode: int) -> None:
        try:
            # Protocol 0 receives nothing until bind() names the interface and ETH_P_ALL:
            # created with ETH_P_ALL, the socket would take every interface's frames (another
            # port's, the stats server's on lo) into its ring while the ring is set up.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as e:
            raise privilege_error("AF_PACKET", e) from None
        self._sock = sock
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)  # a bad frame never stalls the ring
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        if bypass:
            sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        rx_frames = RX_BLOCK_SIZE // RX_FRAME_SIZE * RX_BLOCKS
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, struct.pack(
            "7I", RX_BLOCK_SIZE, RX_BLOCKS, RX_FRAME_SIZE, rx_frames, RX_BLOCK_TIMEOUT_MS, 0, 0))
        self._rx_size = RX_BLOCK_SIZE * RX_BLOCKS
        self._ring = mmap.mmap(sock.fileno(), self._rx_size, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE)
        self._ring8 = np.frombuffer(self._ring, dtype=np.uint8)
        self._ring32 = np.frombuffer(self._ring, dtype=np.uint32)
        self._open_tx_socket(bypass)
        sock.bind((self.iface.name, ETH_P_ALL))
        if promisc:
            # Membership ends with the socket, so a killed NF leaves no promiscuous flag.
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                            struct.pack("iHH8s", self.iface.index, PACKET_MR_PROMISC, 0, b""))
        if fanout is not None:
            arg = fanout | ((fanout_mode | PACKET_FANOUT_FLAG_IGNORE_OUTGOING) << 16)
            try:
                sock.setsockopt(SOL_PACKET, PACKET_FANOUT, arg)
            except OSError as e:
                raise PortError(f"packet:{self.args}: cannot join fanout group {fanout}: "
                                f"{e.strerror} (all members need the same fanout_mode)") from None
        sock.setblocking(False)

    def _open_tx_socket(self, bypass: bool) -> None:
        """The send-only socket and its transmit ring. A socket of its own because the
        virtio-net header it sends with would also prefix every received frame and make
        the kernel drop received packets it cannot describe in one."""
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives none
        self._tx_sock = sock
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)  # a bad frame never stalls the ring
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, PACKET_TX_HAS_OFF, 1)
        if bypass:
            sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        tx_blocks = TX_FRAMES * TX_FRAME_SIZE // TX_BLOCK_SIZE
        sock.setsockopt(SOL_PACKET, PACKET_TX_RING, struct.pack(
            "7I", TX_BLOCK_SIZE, tx_blocks, TX_FRAME_SIZE, TX_FRAMES, 0, 0, 0))
        self._tx_area = mmap.mmap(sock.fileno(), TX_FRAMES * TX_FRAME_SIZE, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        self._tx8 = np.frombuffer(self._tx_area, dtype=np.uint8)
        self._tx32 = np.frombuffer(self._tx_area, dtype=np.uint32)
        # The ring seen as pool-like rows for lend_tx: a slot's frame is at TX_DATA_AT.
        self._tx_rows = self._tx8.reshape(TX_FRAMES, TX_FRAME_SIZE)
        self._tx_words = self._tx8.view(np.uint64)
        self._tx_meta = np.full((TX_FRAMES, M.NCOLS), -1, dtype=np.int32)
        self._tx_meta[:, M.START] = TX_DATA_AT
        self._tx_idx = np.zeros(TX_FRAMES, dtype=np.int32)
        sock.bind((self.iface.name, 0))
        sock.setblocking(False)

    @property
    def queued(self) -> int:
        """Frames in blocks the kernel has handed to us and recv() has not read yet."""
        if self._ring is None:
            return 0
        words = RX_BLOCK_SIZE // 4
        status = self._ring32[2:self._rx_size // 4:words]  # block_status of every block
        num_pkts = self._ring32[3:self._rx_size // 4:words]
        ours = (status & TP_STATUS_USER) != 0
        return max(0, int(num_pkts[ours].sum()) - int(self._rx_state[1]))

    @property
    def queue_capacity(self) -> int:
        """The receive ring in full-size frames (it holds more of smaller ones)."""
        return RX_BLOCKS * (RX_BLOCK_SIZE // RX_FRAME_SIZE)

    def recv(self, batch: Batch, max_n: int) -> int:
        pool = self.pool
        self._polls += 1
        block_base = int(self._rx_state[0]) * RX_BLOCK_SIZE
        if self._ring32[(block_base + 8) >> 2] & TP_STATUS_USER == 0:
            if self._polls & 0xFF == 0:
                self.refresh_kernel_stats()
            return 0
        first = batch.n
        avail = pool.alloc_into(batch, max_n)
        got = _rx_v3(self._ring8, self._ring32, RX_BLOCK_SIZE, RX_BLOCKS, self._rx_state,
                     pool.data, pool.meta, pool.ts, batch.idx, first, avail, self.id,
                     pool.max_frame)
        pool.free(batch, first + got)
        if got:
            with self._stats_lock:
                self.stats.rx_packets += got
                self.stats.rx_bytes += int(pool.meta[batch.idx[first:first + got], M.LEN].sum())
        if self._rx_state[3]:
            with self._stats_lock:
                self.stats.rx_errors += int(self._rx_state[3])
            self._rx_state[3] = 0
        if self._polls & 0xFF == 0:
            self.refresh_kernel_stats()
        return got

    def send(self, batch: Batch) -> int:
        pool = self.pool or batch.pool
        done = sent = nbytes = rejected = 0
        for _attempt in range(3):  # a kick frees the ring; give up after a few
            q, b, r, k = _tx_v3(self._tx8, self._tx32, 0, TX_FRAME_SIZE,
                                TX_FRAMES, self._tx_state, pool.data, pool.meta,
                                batch.idx[done:], batch.n - done, self._max_tx_len)
            sent, nbytes, rejected, done = sent + q, nbytes + b, rejected + r, done + k
            if q or done < batch.n:  # a full ring needs a kick too, or it stays full
                self._kick()
            if done == batch.n:
                break
        return self._sent(batch, sent, nbytes, rejected, done)

    lends_tx = True

    def lend_tx(self, max_n: int) -> TxLease:
        """Free slots of the transmit ring, in ring order, to write frames into in place
        (none while the kernel still owns the next slot: backpressure)."""
        max_n = min(max_n, TX_FRAMES)
        n = _tx_lend(self._tx32, 0, TX_FRAME_SIZE, TX_FRAMES, self._tx_state,
                     self._tx_idx, max_n)
        if n < max_n:
            self._kick()  # frames queued but not taken yet (busy device) free their slots
            n = _tx_lend(self._tx32, 0, TX_FRAME_SIZE, TX_FRAMES,
                         self._tx_state, self._tx_idx, max_n)
        return TxLease(self._tx_rows, self._tx_words, self._tx_meta, self._tx_idx, n)

    def commit_tx(self, lease: TxLease, n: int) -> tuple[int, int]:
        """Mark the frames written into `lease.idx[:n]` for sending and kick once."""
        if lease.idx is not self._tx_idx or n > lease.n:
            raise PortError(f"{self.name}: commit_tx needs the port's own last lease "
                            f"(at most its {lease.n} slots), got {n}")
        sent, nbytes, rejected = _tx_commit(self._tx8, self._tx32, 0,
                                            TX_FRAME_SIZE, TX_FRAMES, self._tx_state,
                                            self._tx_meta, self._tx_idx, n, self._max_tx_len)
        if sent:
            self._kick()
        with self._stats_lock:
            self.stats.tx_packets += sent
            self.stats.tx_bytes += nbytes
            self.stats.tx_errors += rejected
        return sent, nbytes

    def _kick(self) -> None:
        """Ask the kernel to transmit every frame marked for sending."""
        try:
            self._tx_sock.send(b"", socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass  # the device queue is busy; the frames stay queued for the next kick
        except OSError as e:
            if e.errno not in (errno.ENOBUFS, errno.ENETDOWN, errno.ENXIO):
                raise

    def refresh_kernel_stats(self) -> None:
        """Add the kernel's receive drops (ring full) since the last call to rx_dropped."""
        if self._sock is None:
            return
        _, drops, _ = struct.unpack("3I", self._sock.getsockopt(SOL_PACKET,
                                                                 PACKET_STATISTICS, 12))
        if drops:
            with self._stats_lock:
                self.stats.rx_dropped += drops

    def flush(self, timeout: float = 1.0) -> None:
        """Wait until the kernel has taken every queued frame (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        busy = TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING
        slots = self._tx32[5::TX_FRAME_SIZE // 4]
        while (slots & busy).any() and time.monotonic() < deadline:
            self._kick()
            time.sleep(0.001)

    def close(self) -> None:
        if self._sock is not None and self._ring is not None:
            try:
                if self._tx_area is not None:
                    self.flush(0.2)
                self.refresh_kernel_stats()
            except OSError:
                pass  # the interface is gone; nothing left to flush or count
        if self._ring is not None:
            self._ring8 = self._ring32 = None
            release_mmap(self._ring)
            self._ring = None
        if self._tx_area is not None:
            self._tx8 = self._tx32 = self._tx_rows = self._tx_words = None
            release_mmap(self._tx_area)
            self._tx_area = None
        for sock in (self._sock, self._tx_sock):
            if sock is not None:
                sock.close()
        self._sock = self._tx_sock = None
        if self.iface is not None:
            self.iface.close()
            self.iface = None


register_driver("packet", PacketPort)
