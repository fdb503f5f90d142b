"""pcap and pcapng files: stream records straight into pool buffers, write batches out.

`PcapReader` reads classic pcap (microsecond or nanosecond timestamps, either byte order)
and pcapng (several sections and interfaces, per-interface timestamp resolution and
offset, enhanced, simple and obsolete packet blocks). It reads the file in large chunks
and one compiled call per batch copies the records into pool buffers, so large files never
sit in memory and no Python object is made per packet. Only Ethernet captures are
accepted; another link type is a `PcapError` that names it.

`PcapWriter` writes classic pcap (microsecond or nanosecond), one compiled call per batch
to lay the records out; tcpdump and tshark read its files.

Bad files raise `PcapError` with the file name and byte offset. Records before the damage
are delivered first: the error comes from the call that has nothing good left to give.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numba import njit

from pktflow.packet import meta as M
from pktflow.packet.pool import Batch

LINKTYPE_ETHERNET = 1
MAX_RECORD = 262144  # the largest snap length tcpdump and Wireshark use
MAX_BLOCK = 16 << 20  # pcapng blocks above this are treated as corruption
CHUNK = 1 << 20

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
PCAPNG_IDB = 1

LINKTYPE_NAMES = {
    0: "BSD loopback", 1: "Ethernet", 101: "raw IP", 105: "802.11", 113: "Linux cooked (SLL)",
    127: "802.11 radiotap", 228: "raw IPv4", 229: "raw IPv6", 276: "Linux cooked v2 (SLL2)",
}

# Kernel results: why a scan stopped.
_FULL = 0  # the batch is full
_NEED_DATA = 1  # the next record is not wholly in the chunk; `aux` = bytes it needs
_CORRUPT = 2  # a record or block header is impossible; `aux` = the bad length or id
_PY_BLOCK = 3  # a pcapng section header or interface block: Python parses it
_BAD_LINK = 4  # a pcapng packet on a non-Ethernet interface; `aux` = interface id


class PcapError(ValueError):
    """A capture file cannot be read or written; the message names the file and offset."""


def linktype_name(linktype: int) -> str:
    """'113 (Linux cooked (SLL))': a link type number with its name when known."""
    name = LINKTYPE_NAMES.get(linktype)
    return f"{linktype} ({name})" if name else str(linktype)


@njit(cache=True, nogil=True, inline="always")
def _u32(buf, o, big):
    if big:
        return (np.int64(buf[o]) << 24) | (np.int64(buf[o + 1]) << 16) | (
            np.int64(buf[o + 2]) << 8) | np.int64(buf[o + 3])
    return (np.int64(buf[o + 3]) << 24) | (np.int64(buf[o + 2]) << 16) | (
        np.int64(buf[o + 1]) << 8) | np.int64(buf[o])


@njit(cache=True, nogil=True, inline="always")
def _u16(buf, o, big):
    if big:
        return (np.int64(buf[o]) << 8) | np.int64(buf[o + 1])
    return (np.int64(buf[o + 1]) << 8) | np.int64(buf[o])


@njit(cache=True, nogil=True, inline="always")
def _store(buf, src, length, data, meta, ts, b, t):
    start = meta[b, M.START]
    data[b, start:start + length] = buf[src:src + length]
    meta[b, M.LEN] = length
    ts[b] = t


@njit(cache=True, nogil=True)
def _scan_pcap(buf, pos, fill, big, ts_mult, data, meta, ts, idx, at, n, max_frame):
    """Copy classic pcap records from `buf[pos:fill]` into the buffers `idx[at:at+n]`.
    Returns (stored, new_pos, oversize_skipped, status, aux)."""
    count = 0
    oversize = 0
    while True:
        if count == n:
            return count, pos, oversize, _FULL, 0
        if fill - pos < 16:
            return count, pos, oversize, _NEED_DATA, 16
        incl = _u32(buf, pos + 8, big)
        if incl > MAX_RECORD:
            return count, pos, oversize, _CORRUPT, incl
        if fill - pos < 16 + incl:
            return count, pos, oversize, _NEED_DATA, 16 + incl
        if incl > max_frame:
            oversize += 1
        else:
            t = _u32(buf, pos, big) * 1_000_000_000 + _u32(buf, pos + 4, big) * ts_mult
            _store(buf, pos + 16, incl, data, meta, ts, idx[at + count], t)
            count += 1
        pos += 16 + incl


@njit(cache=True, nogil=True)
def _iface_ns(raw, i, binary, exp, mul, div, offset_s):
    if binary[i]:
        k = exp[i]
        frac = raw & ((np.int64(1) << k) - 1)
        if k > 30:  # keep frac * 1e9 inside int64; drops only sub-nanosecond bits
            frac >>= k - 30
            k = 30
        t = (raw >> exp[i]) * 1_000_000_000 + ((frac * 1_000_000_000) >> k)
    else:
        t = raw * mul[i] // div[i]
    return t + offset_s[i] * 1_000_000_000


@njit(cache=True, nogil=True)
def _scan_pcapng(buf, pos, fill, big, n_if, link, snap, binary, exp, mul, div, offset_s,
                 data, meta, ts, idx, at, n, max_frame):
    """Copy pcapng packet blocks from `buf[pos:fill]` into the buffers `idx[at:at+n]`,
    skipping blocks without packets. Returns (stored, new_pos, oversize, status, aux)."""
    count = 0
    oversize = 0
    while True:
        if count == n:
            return count, pos, oversize, _FULL, 0
        if fill - pos < 12:
            return count, pos, oversize, _NEED_DATA, 12
        btype = _u32(buf, pos, big)
        if btype == PCAPNG_SHB or btype == PCAPNG_IDB:
            return count, pos, oversize, _PY_BLOCK, 0
        total = _u32(buf, pos + 4, big)
        if total < 12 or total % 4 != 0 or total > MAX_BLOCK:
            return count, pos, oversize, _CORRUPT, total
        if fill - pos < total:
            return count, pos, oversize, _NEED_DATA, total
        iface = -1
        raw = np.int64(0)
        cap = np.int64(0)
        src = pos
        if btype == 6 or btype == 2:  # enhanced / obsolete packet block
            if total < 32:
                return count, pos, oversize, _CORRUPT, total
            if btype == 6:
                iface = _u32(buf, pos + 8, big)
            else:
                iface = _u16(buf, pos + 8, big)
            raw = (_u32(buf, pos + 12, big) << 32) | _u32(buf, pos + 16, big)
            cap = _u32(buf, pos + 20, big)
            src = pos + 28
            if 28 + cap > total - 4:
                return count, pos, oversize, _CORRUPT, cap
        elif btype == 3:  # simple packet block: interface 0, no timestamp
            iface = 0
            raw = np.int64(-1)
            cap = min(_u32(buf, pos + 8, big), total - 16)
            src = pos + 12
        if iface >= 0:
            if iface >= n_if:
                return count, pos, oversize, _CORRUPT, iface
            if link[iface] != LINKTYPE_ETHERNET:
                return count, pos, oversize, _BAD_LINK, iface
            if btype == 3 and snap[0] > 0:
                cap = min(cap, snap[0])
            if cap > max_frame:
                oversize += 1
            else:
                t = 0 if raw < 0 else _iface_ns(raw, iface, binary, exp, mul, div, offset_s)
                _store(buf, src, cap, data, meta, ts, idx[at + count], t)
                count += 1
        pos += total


class _Interfaces:
    """The interface table of the current pcapng section, as arrays for the kernel."""

    def __init__(self) -> None:
        self.link: list[int] = []
        self.snap: list[int] = []
        self.binary: list[bool] = []
        self.exp: list[int] = []
        self.offset_s: list[int] = []
        self.arrays: tuple[np.ndarray, ...] = self._pack()

    def add(self, link: int, snap: int, binary: bool, exp: int, offset_s: int) -> None:
        self.link.append(link)
        self.snap.append(snap)
        self.binary.append(binary)
        self.exp.append(exp)
        self.offset_s.append(offset_s)
        self.arrays = self._pack()

    def _pack(self) -> tuple[np.ndarray, ...]:
        mul = [1 if b or e > 9 else 10 ** (9 - e) for b, e in zip(self.binary, self.exp,
                                                                     strict=True)]
        div = [1 if b or e <= 9 else 10 ** (e - 9) for b, e in zip(self.binary, self.exp,
                                                                      strict=True)]
        i64 = np.int64
        return (np.array(self.link + [0], i64), np.array(self.snap + [0], i64),
                np.array(self.binary + [False], np.bool_), np.array(self.exp + [0], i64),
                np.array(mul + [1], i64), np.array(div + [1], i64),
                np.array(self.offset_s + [0], i64))


class PcapReader:
    """Stream an Ethernet pcap or pcapng file into pool buffers, batch by batch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: BinaryIO = open(self.path, "rb")
        except OSError as e:
            raise PcapError(f"{self.path}: cannot open: {e.strerror}") from None
        self._buf = np.empty(CHUNK, dtype=np.uint8)
        self.format = "pcap"
        self.nanosecond = False
        self.big_endian = False
        self.linktype = LINKTYPE_ETHERNET
        self.snaplen = 0
        self.oversize = 0  # records skipped because they exceed the pool's largest frame
        self.packets = 0  # records delivered since open or rewind
        self._ifaces = _Interfaces()
        try:
            self.rewind()
        except BaseException:
            self._file.close()
            raise

    def rewind(self) -> None:
        """Start over at the first record (to play a file again)."""
        self._file.seek(0)
        self._base = 0  # file offset of buf[0]
        self._pos = 0
        self._fill = 0
        self._eof = False
        self._failed: str | None = None
        self.packets = 0
        self._refill(24)
        head = self._buf[: self._fill].tobytes()
        if len(head) < 4:
            raise PcapError(f"{self.path}: not a pcap or pcapng file (only {len(head)} bytes)")
        magic_le = struct.unpack_from("<I", head)[0]
        if magic_le == PCAPNG_SHB:
            self.format = "pcapng"
            self._ifaces = _Interfaces()
            return
        magic_be = struct.unpack_from(">I", head)[0]
        big = magic_be in (PCAP_MAGIC_US, PCAP_MAGIC_NS)
        magic = magic_be if big else magic_le
        if magic not in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            raise PcapError(f"{self.path}: not a pcap or pcapng file "
                            f"(magic number 0x{magic_le:08x} at offset 0)")
        if len(head) < 24:
            raise PcapError(f"{self.path}: truncated pcap file header ({len(head)} of 24 bytes)")
        self.format = "pcap"
        self.big_endian = big
        self.nanosecond = magic == PCAP_MAGIC_NS
        order = ">" if big else "<"
        self.snaplen, network = struct.unpack_from(order + "II", head, 16)
        self.linktype = network & 0xFFFF
        if self.linktype != LINKTYPE_ETHERNET:
            raise PcapError(f"{self.path}: {self._not_ethernet(self.linktype)}")
        self._pos = 24

    def _not_ethernet(self, linktype: int, where: str = "") -> str:
        return (f"link type {linktype_name(linktype)}{where} is not Ethernet; "
                f"pktflow reads Ethernet captures only (capture on an Ethernet interface, or "
                f"convert with: editcap -T ether)")

    @property
    def at_end(self) -> bool:
        """True when every record has been delivered (or the file is damaged past here)."""
        return self._failed is not None or (self._eof and self._pos >= self._fill)

    @property
    def error(self) -> str | None:
        """What is wrong with the file past the last delivered record, if anything."""
        return self._failed

    @property
    def offset(self) -> int:
        """File offset of the next record."""
        return self._base + self._pos

    def _refill(self, need: int) -> None:
        """Make at least `need` bytes available from `_pos` on, unless the file ends."""
        buf = self._buf
        if self._pos:
            left = self._fill - self._pos
            buf[:left] = buf[self._pos:self._fill]
            self._base += self._pos
            self._pos, self._fill = 0, left
        if need > len(buf):
            grown = np.empty(max(need, 2 * len(buf)), dtype=np.uint8)
            grown[: self._fill] = buf[: self._fill]
            self._buf = buf = grown
        while self._fill < need and not self._eof:
            got = self._file.readinto(memoryview(buf)[self._fill:])
            if not got:
                self._eof = True
            self._fill += got or 0
        # Read ahead a full chunk once per refill so batches rarely cross a boundary.
        if not self._eof and self._fill < len(buf):
            got = self._file.readinto(memoryview(buf)[self._fill:])
            self._eof = not got
            self._fill += got or 0

    def read_into(self, batch: Batch, max_n: int) -> int:
        """Append up to `max_n` packets to `batch` (fresh buffers of its pool, START at the
        headroom, LEN and `ts` in ns set); returns how many, 0 at the end of the file."""
        if self._failed:
            raise PcapError(self._failed)
        pool = batch.pool
        got = pool.alloc_into(batch, min(max_n, batch.capacity - batch.n))
        at = batch.n - got
        stored = 0
        try:
            while stored < got:
                more, status, aux = self._scan(batch, at + stored, got - stored)
                stored += more
                if status == _FULL:
                    break
                if status == _NEED_DATA:
                    if self._eof:
                        if self._pos < self._fill:
                            self._fail(f"truncated record at offset {self.offset}: "
                                       f"{self._fill - self._pos} of {aux} bytes present")
                        break
                    self._refill(aux)
                elif status == _PY_BLOCK:
                    self._python_block()
                elif status == _BAD_LINK:
                    self._fail(self._not_ethernet(self._ifaces.link[aux], f" (interface {aux})"))
                else:
                    self._fail(f"corrupt {'block' if self.format == 'pcapng' else 'record'} "
                               f"at offset {self.offset}: impossible length or id {aux}")
                if self._failed:
                    break
        finally:
            pool.free(batch, at + stored)
        self.packets += stored
        if stored == 0 and self._failed:
            raise PcapError(self._failed)
        return stored

    def _fail(self, what: str) -> None:
        self._failed = f"{self.path}: {what}"

    def _stop(self, what: str) -> None:
        """Record damage found by Python block parsing and stop reading there."""
        self._fail(what)
        self._pos = self._fill
        self._eof = True

    def _scan(self, batch: Batch, at: int, n: int) -> tuple[int, int, int]:
        pool = batch.pool
        if self.format == "pcap":
            mult = 1 if self.nanosecond else 1000
            stored, pos, over, status, aux = _scan_pcap(
                self._buf, self._pos, self._fill, self.big_endian, mult, pool.data, pool.meta,
                pool.ts, batch.idx, at, n, pool.max_frame)
        else:
            stored, pos, over, status, aux = _scan_pcapng(
                self._buf, self._pos, self._fill, self.big_endian, len(self._ifaces.link),
                *self._ifaces.arrays, pool.data, pool.meta, pool.ts, batch.idx, at, n,
                pool.max_frame)
        self._pos = pos
        self.oversize += over
        return stored, status, aux

    def _python_block(self) -> None:
        """Parse a pcapng section header or interface description block at `_pos`."""
        head = self._buf[self._pos:self._pos + 12].tobytes()
        btype = struct.unpack_from("<I", head)[0]
        if btype == PCAPNG_SHB:
            bom = struct.unpack_from("<I", head, 8)[0]
            if bom not in (PCAPNG_BOM, 0x4D3C2B1A):
                return self._stop(f"corrupt section header at offset {self.offset} "
                                  f"(byte-order magic 0x{bom:08x})")
            self.big_endian = bom != PCAPNG_BOM
            self._ifaces = _Interfaces()
        order = ">" if self.big_endian else "<"
        total = struct.unpack_from(order + "I", head, 4)[0]
        if total < 12 or total % 4 or total > MAX_BLOCK:
            return self._stop(f"corrupt block at offset {self.offset} (length {total})")
        if self._fill - self._pos < total:
            self._refill(total)
            if self._fill - self._pos < total:
                return self._stop(f"truncated block at offset {self.offset}: "
                                  f"{self._fill - self._pos} of {total} bytes present")
        block = self._buf[self._pos:self._pos + total].tobytes()
        if btype == PCAPNG_IDB:
            if total < 20:
                return self._stop(f"corrupt interface block at offset {self.offset} "
                                  f"(length {total})")
            link, _, snap = struct.unpack_from(order + "HHI", block, 8)
            try:
                binary, exp, offset_s = self._idb_options(block, 16, total - 4, order)
            except ValueError as e:
                return self._stop(str(e))
            self._ifaces.add(link, snap, binary, exp, offset_s)
        self._pos += total

    def _idb_options(self, block: bytes, o: int, end: int, order: str) -> tuple[bool, int, int]:
        binary, exp, offset_s = False, 6, 0  # default resolution: microseconds
        while o + 4 <= end:
            code, length = struct.unpack_from(order + "HH", block, o)
            value = block[o + 4:o + 4 + length]
            if code == 0:
                break
            if code == 9 and length >= 1:  # if_tsresol
                binary, exp = bool(value[0] & 0x80), value[0] & 0x7F
                if (binary and exp > 62) or (not binary and exp > 18):
                    raise ValueError(f"interface block at offset {self.offset} has an "
                                     f"unsupported timestamp resolution byte {value[0]}")
            elif code == 14 and length >= 8:  # if_tsoffset, seconds
                offset_s = struct.unpack_from(order + "q", value)[0]
            o += 4 + (length + 3) // 4 * 4
        return binary, exp, offset_s

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@njit(cache=True, nogil=True, inline="always")
def _put_u32le(out, o, v):
    for j in range(4):
        out[o + j] = (v >> (8 * j)) & 0xFF


@njit(cache=True, nogil=True)
def _pack_records(data, meta, ts, idx, n, out, nano, snaplen, fixed_ts):
    """Lay out pcap records for `idx[:n]` in `out` (little-endian). A packet whose START/LEN
    do not fit its buffer is skipped. Returns (records, bytes used, frame bytes)."""
    o = 0
    written = 0
    frame_bytes = 0
    width = data.shape[1]
    for k in range(n):
        b = idx[k]
        start = meta[b, M.START]
        length = meta[b, M.LEN]
        if start < 0 or length < 0 or start + length > width:
            continue
        cap = min(length, snaplen)
        t = fixed_ts if fixed_ts >= 0 else ts[b]
        sec = t // 1_000_000_000
        frac = t % 1_000_000_000
        if not nano:
            frac //= 1000
        _put_u32le(out, o, sec)
        _put_u32le(out, o + 4, frac)
        _put_u32le(out, o + 8, cap)
        _put_u32le(out, o + 12, length)
        out[o + 16:o + 16 + cap] = data[b, start:start + cap]
        o += 16 + cap
        written += 1
        frame_bytes += length
    return written, o, frame_bytes


class PcapWriter:
    """Write Ethernet frames to a classic pcap file (microsecond or nanosecond stamps)."""

    def __init__(self, path: str | Path, nanosecond: bool = False,
                 snaplen: int = MAX_RECORD) -> None:
        if not 1 <= snaplen <= MAX_RECORD:
            raise PcapError(f"{path}: snaplen {snaplen} must be from 1 to {MAX_RECORD}")
        self.path = Path(path)
        self.nanosecond = nanosecond
        self.snaplen = snaplen
        self.packets = 0
        self.bytes = 0  # frame bytes (before any snaplen cut)
        try:
            self._file: BinaryIO = open(self.path, "wb")
        except OSError as e:
            raise PcapError(f"{self.path}: cannot create: {e.strerror}") from None
        magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
        self._file.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))
        self._out = np.empty(0, dtype=np.uint8)

    def write(self, batch: Batch, ts_ns: int | None = None) -> int:
        """Append `batch`'s packets (the batch keeps its buffers). Records are stamped with
        `ts_ns` if given, else each packet's pool `ts`. Returns records written; packets
        whose START/LEN are out of their buffer are skipped."""
        pool = batch.pool
        need = batch.n * (16 + min(pool.bufsize, self.snaplen))
        if len(self._out) < need:
            self._out = np.empty(max(need, 1 << 16), dtype=np.uint8)
        fixed = -1 if ts_ns is None else ts_ns
        written, used, frame_bytes = _pack_records(
            pool.data, pool.meta, pool.ts, batch.idx, batch.n, self._out, self.nanosecond,
            self.snaplen, fixed)
        self._file.write(memoryview(self._out)[:used])
        self.packets += written
        self.bytes += int(frame_bytes)
        return int(written)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
