"""pcap and pcapng files: round trips, peer tools, streaming, and bad files."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter as ScapyPcapNgWriter

from pktflow.packet import Batch, Pool
from pktflow.packet.pcap import CHUNK, PcapError, PcapReader, PcapWriter

T0 = 1_700_000_000_123_456_789  # ns


def _frames(count: int) -> list[bytes]:
    return [bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                  / IP(src=f"10.0.{i >> 8}.{i & 255}", dst="10.9.9.9")
                  / (TCP(sport=1000 + i, dport=80) if i % 2 else UDP(sport=i, dport=53))
                  / (b"x" * (i % 50)))
            for i in range(count)]


def _batch(pool: Pool, frames: list[bytes], t0: int = T0, step: int = 1001) -> Batch:
    batch = pool.alloc(len(frames))
    for k, frame in enumerate(frames):
        b = int(batch.idx[k])
        pool.write(b, frame)
        pool.ts[b] = t0 + k * step
    return batch


def _read_all(path: Path, pool: Pool, chunk: int = 64) -> tuple[list[bytes], list[int]]:
    frames, stamps = [], []
    with PcapReader(path) as reader:
        batch = Batch(pool, chunk)
        while reader.read_into(batch, chunk):
            frames += batch.frames()
            stamps += [int(t) for t in pool.ts[batch.idx[: batch.n]]]
            pool.free(batch)
        assert reader.at_end and reader.error is None
    return frames, stamps


@pytest.mark.parametrize("nanosecond", [False, True])
def test_round_trip_keeps_frames_and_timestamps(tmp_path, pool, nanosecond):
    frames = _frames(300)
    path = tmp_path / "rt.pcap"
    with PcapWriter(path, nanosecond=nanosecond) as writer:
        assert writer.write(_batch(pool, frames)) == 300
    got, stamps = _read_all(path, pool)
    assert got == frames
    expected = [T0 + k * 1001 for k in range(300)]
    if not nanosecond:
        expected = [t // 1000 * 1000 for t in expected]
    assert stamps == expected


def test_writer_stamps_a_fixed_time_and_cuts_at_snaplen(tmp_path, pool):
    path = tmp_path / "snap.pcap"
    frames = _frames(5)
    with PcapWriter(path, nanosecond=True, snaplen=40) as writer:
        writer.write(_batch(pool, frames), ts_ns=T0)
        assert writer.bytes == sum(map(len, frames))
    got, stamps = _read_all(path, pool)
    assert got == [f[:40] for f in frames] and stamps == [T0] * 5


def test_big_endian_classic_file(tmp_path, pool):
    frames = _frames(3)
    head = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    records = b"".join(struct.pack(">IIII", 1_700_000_000 + k, 5, len(f), len(f)) + f
                       for k, f in enumerate(frames))
    path = tmp_path / "be.pcap"
    path.write_bytes(head + records)
    got, stamps = _read_all(path, pool)
    assert got == frames
    assert stamps == [(1_700_000_000 + k) * 10**9 + 5 for k in range(3)]


needs = pytest.mark.skipif


@needs(not shutil.which("tcpdump"), reason="tcpdump not installed")
def test_tcpdump_reads_written_file(tmp_path, pool):
    path = tmp_path / "td.pcap"
    with PcapWriter(path, nanosecond=True) as writer:
        writer.write(_batch(pool, _frames(20)))
    out = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True,
                         timeout=30, check=True).stdout.splitlines()
    assert len(out) == 20
    assert "10.0.0.1.1001 > 10.9.9.9.80" in out[1] and "10.0.0.2.2 > 10.9.9.9.53" in out[2]


@needs(not shutil.which("tshark"), reason="tshark not installed")
def test_tshark_reads_written_file(tmp_path, pool):
    path = tmp_path / "ts.pcap"
    frames = _frames(20)
    with PcapWriter(path) as writer:
        writer.write(_batch(pool, frames))
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "ip.src", "-e",
                          "frame.len", "-e", "frame.time_epoch"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert [r[0] for r in rows] == [f"10.0.0.{i}" for i in range(20)]
    assert [int(r[1]) for r in rows] == [len(f) for f in frames]
    assert rows[0][2].startswith("1700000000.123456")


@needs(not shutil.which("mergecap"), reason="mergecap (wireshark tools) not installed")
def test_pcapng_from_mergecap_with_two_interfaces_and_resolutions(tmp_path, pool):
    frames = _frames(40)
    us, ns = tmp_path / "us.pcap", tmp_path / "ns.pcap"
    with PcapWriter(us) as writer:
        writer.write(_batch(pool, frames[:20], T0, 2000))
    with PcapWriter(ns, nanosecond=True) as writer:
        writer.write(_batch(pool, frames[20:], T0 + 1000, 2000))
    merged = tmp_path / "merged.pcapng"
    subprocess.run(["mergecap", "-I", "none", "-F", "pcapng", "-w", str(merged), str(us),
                    str(ns)], check=True, capture_output=True, timeout=60)
    with PcapReader(merged) as reader:
        assert reader.format == "pcapng"
    got, stamps = _read_all(merged, pool, chunk=7)
    # mergecap interleaves by time: us record k at T0 + 2000k (cut to us), ns at +1000
    expected = []
    for k in range(20):
        expected.append((frames[k], (T0 + 2000 * k) // 1000 * 1000))
        expected.append((frames[20 + k], T0 + 1000 + 2000 * k))
    assert list(zip(got, stamps, strict=True)) == expected


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def _shb() -> bytes:
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(link: int = 1, tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += struct.pack("<HHB3x", 9, 1, tsresol)
    if tsoffset is not None:
        opts += struct.pack("<HHq", 14, 8, tsoffset)
    if opts:
        opts += struct.pack("<HH", 0, 0)
    return _block(1, struct.pack("<HHI", link, 0, 0) + opts)


def _epb(iface: int, raw_ts: int, frame: bytes) -> bytes:
    return _block(6, struct.pack("<IIIII", iface, raw_ts >> 32, raw_ts & 0xFFFFFFFF,
                                 len(frame), len(frame)) + frame)


def test_pcapng_per_interface_resolution_offset_and_simple_blocks(tmp_path, pool):
    f = _frames(5)
    data = (_shb() + _idb() + _idb(tsresol=9) + _idb(tsresol=0x80 | 20, tsoffset=100)
            + _epb(0, 1_700_000_000_000_001, f[0])  # microseconds by default
            + _epb(1, T0, f[1])
            + _epb(2, (5 << 20) | (1 << 19), f[2])  # 5.5 s in 2^-20 units, +100 s offset
            + _block(5, b"statistics block to skip")
            + _block(3, struct.pack("<I", len(f[3])) + f[3])  # simple packet block
            + _shb() + _idb(tsresol=3) + _epb(0, 7, f[4]))  # new section, new interfaces
    path = tmp_path / "hand.pcapng"
    path.write_bytes(data)
    got, stamps = _read_all(path, pool, chunk=2)
    assert got == f
    assert stamps == [1_700_000_000_000_001_000, T0, 105_500_000_000, 0, 7_000_000]


def test_scapy_pcapng_file(tmp_path, pool):
    pkts = [Ether(bytes(f)) for f in _frames(10)]
    for k, p in enumerate(pkts):
        p.time = 1_700_000_000 + k / 4
    path = tmp_path / "scapy.pcapng"
    with ScapyPcapNgWriter(str(path)) as writer:
        for p in pkts:
            writer.write(p)
    got, stamps = _read_all(path, pool)
    assert got == [bytes(p) for p in pkts]
    assert stamps == [1_700_000_000_000_000_000 + k * 250_000_000 for k in range(10)]


def test_large_file_streams_in_batches(tmp_path):
    pool = Pool(1024, name="small")  # far fewer buffers than the file has packets
    frames = _frames(500)
    path = tmp_path / "big.pcap"
    with PcapWriter(path) as writer:
        for _ in range(60):  # 30000 records, several read chunks
            batch = _batch(pool, frames)
            writer.write(batch)
            pool.free(batch)
    assert path.stat().st_size > 2 * CHUNK
    count, total_bytes = 0, 0
    with PcapReader(path) as reader:
        batch = Batch(pool, 256)
        while reader.read_into(batch, 256):
            assert batch.frames() == [frames[(count + k) % 500] for k in range(batch.n)]
            count += batch.n
            total_bytes += int(pool.meta[batch.idx[: batch.n], 1].sum())
            pool.free(batch)
    assert count == 30000 and total_bytes == 60 * sum(map(len, frames))
    assert pool.available == 1024


def test_skips_large_pcapng_blocks_and_counts_oversize_frames(tmp_path):
    pool = Pool(64, bufsize=512, headroom=64, name="tiny")
    f = _frames(2)
    path = tmp_path / "odd.pcapng"
    path.write_bytes(_shb() + _idb() + _epb(0, 1, f[0]) + _block(0x0BAD, bytes(3 << 20))
                     + _epb(0, 2, bytes(1000)) + _epb(0, 3, f[1]))
    with PcapReader(path) as reader:
        batch = Batch(pool, 8)
        assert reader.read_into(batch, 8) == 2 and batch.frames() == f
        assert reader.oversize == 1


def _classic(tmp_path: Path, frames: list[bytes], name: str = "x.pcap") -> Path:
    path = tmp_path / name
    pool = Pool(256, name="w")
    with PcapWriter(path) as writer:
        writer.write(_batch(pool, frames))
    return path


def test_truncated_last_record_names_file_and_offset(tmp_path, pool):
    frames = _frames(4)
    path = _classic(tmp_path, frames)
    path.write_bytes(path.read_bytes()[:-10])
    last = 24 + sum(16 + len(f) for f in frames[:3])
    with PcapReader(path) as reader:
        batch = Batch(pool, 16)
        assert reader.read_into(batch, 16) == 3 and batch.frames() == frames[:3]
        assert reader.at_end
        with pytest.raises(PcapError, match=rf"x\.pcap: truncated record at offset {last}"):
            reader.read_into(batch, 16)


def test_corrupt_record_length(tmp_path, pool):
    frames = _frames(2)
    raw = bytearray(_classic(tmp_path, frames).read_bytes())
    second = 24 + 16 + len(frames[0])
    raw[second + 8:second + 12] = struct.pack("<I", 10**8)
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(raw)
    with PcapReader(path) as reader:
        batch = Batch(pool, 16)
        assert reader.read_into(batch, 16) == 1
        with pytest.raises(PcapError, match=f"corrupt record at offset {second}"):
            reader.read_into(batch, 16)


def test_other_link_types_are_named(tmp_path):
    path = tmp_path / "sll.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 113))
    with pytest.raises(PcapError, match=r"sll\.pcap: link type 113 \(Linux cooked \(SLL\)\) "
                                        "is not Ethernet"):
        PcapReader(path)
    ng = tmp_path / "raw.pcapng"
    ng.write_bytes(_shb() + _idb(link=101) + _epb(0, 1, b"E" * 40))
    with PcapReader(ng) as reader, pytest.raises(PcapError, match=r"101 \(raw IP\) "
                                                                   r"\(interface 0\)"):
        reader.read_into(Batch(Pool(16, name="p"), 4), 4)


@pytest.mark.parametrize("content, message", [
    (b"", r"not a pcap or pcapng file \(only 0 bytes\)"),
    (b"hello world, this is text", r"not a pcap or pcapng file \(magic number 0x6c6c6568"),
    (struct.pack("<I", 0xA1B2C3D4) + b"\0" * 8, "truncated pcap file header"),
])
def test_not_a_capture(tmp_path, content, message):
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(PcapError, match=message):
        PcapReader(path)


def test_missing_file_and_pcapng_packet_for_unknown_interface(tmp_path, pool):
    with pytest.raises(PcapError, match="nope.pcap: cannot open"):
        PcapReader(tmp_path / "nope.pcap")
    path = tmp_path / "noif.pcapng"
    path.write_bytes(_shb() + _idb() + _epb(3, 1, _frames(1)[0]))
    with PcapReader(path) as reader, pytest.raises(PcapError, match="corrupt block at offset"):
        reader.read_into(Batch(pool, 4), 4)


def test_rewind_plays_again(tmp_path, pool):
    frames = _frames(5)
    path = _classic(tmp_path, frames)
    with PcapReader(path) as reader:
        batch = Batch(pool, 16)
        reader.read_into(batch, 16)
        reader.rewind()
        reader.read_into(batch, 16)
        assert batch.frames() == frames + frames
