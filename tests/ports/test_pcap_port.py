"""pcap ports: files in and out with exact contents, repeats, rate, damage and bad specs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pktflow.packet import Batch, Pool
from pktflow.packet import meta as M
from pktflow.packet.build import frame
from pktflow.packet.pcap import PcapReader, PcapWriter
from pktflow.ports import PortError, PortSpecError, PortTable
from pktflow.ports.memory import reset_wires
from pktflow.ports.pcap import PcapPort

T0 = 1_700_000_000_000_000_000


@pytest.fixture(autouse=True)
def _free_wires():
    yield
    reset_wires()


def _frames(count: int) -> list[bytes]:
    return [frame(eth={"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"},
                  ipv4={"src": f"111.2.0.{i % 4}", "dst": "10.0.0.1"},
                  udp={"src_port": 1000 + i, "dst_port": 53}, payload=bytes(i % 30))
            for i in range(count)]


def _write(path: Path, frames: list[bytes], nanosecond: bool = True) -> Path:
    pool = Pool(max(len(frames), 1), name="writer")
    batch = pool.alloc(len(frames))
    for k, f in enumerate(frames):
        pool.write(int(batch.idx[k]), f)
        pool.ts[batch.idx[k]] = T0 + k * 1000
    with PcapWriter(path, nanosecond=nanosecond) as writer:
        writer.write(batch)
    return path


def _drain(port: PcapPort, pool: Pool, limit: int = 100) -> list[bytes]:
    """Receive until the port gives nothing (bounded), freeing buffers as it goes."""
    out: list[bytes] = []
    batch = Batch(pool, 32)
    for _ in range(limit):
        if not port.recv(batch, 32):
            break
        out += batch.frames()
        pool.free(batch)
    return out


def _read(path: Path, pool: Pool) -> tuple[list[bytes], list[int]]:
    with PcapReader(path) as reader:
        batch = Batch(pool, 1024)
        reader.read_into(batch, 1024)
        result = batch.frames(), [int(t) for t in pool.ts[batch.idx[: batch.n]]]
        pool.free(batch)
        return result


def test_receive_plays_the_file_exactly_once(tmp_path, pool):
    frames = _frames(50)
    port = PcapPort(3, str(_write(tmp_path / "in.pcap", frames)))
    port.open(pool)
    batch = Batch(pool, 64)
    assert port.recv(batch, 20) == 20
    assert set(pool.meta[batch.idx[:20], M.PORT]) == {3}
    assert list(pool.ts[batch.idx[:3]]) == [T0, T0 + 1000, T0 + 2000]
    assert not port.at_end
    rest = _drain(port, pool)
    assert batch.frames() + rest == frames
    assert port.at_end and port.recv(batch, 64) == 0
    assert port.stats.rx_packets == 50 and port.stats.rx_bytes == sum(map(len, frames))
    port.close()


def test_repeat_plays_n_times_and_zero_forever(tmp_path, pool):
    frames = _frames(7)
    path = _write(tmp_path / "in.pcap", frames)
    port = PcapPort(0, f"{path},repeat=3")
    port.open(pool)
    assert _drain(port, pool) == frames * 3 and port.at_end and port.plays == 3
    forever = PcapPort(1, f"{path},repeat=0")
    forever.open(pool)
    assert _drain(forever, pool, limit=30) == (frames * 200)[: 30 * 7]
    assert not forever.at_end


def test_send_only_port_writes_what_it_is_sent(tmp_path, pool):
    out = tmp_path / "out.pcap"
    port = PcapPort(0, f",{out}")
    port.open(pool)
    assert port.at_end and port.recv(Batch(pool, 4), 4) == 0
    frames = _frames(10)
    batch = pool.alloc(10)
    for k, f in enumerate(frames):
        pool.write(int(batch.idx[k]), f)
    free = pool.available
    before = time.time_ns()
    assert port.send(batch) == 10 and batch.n == 0 and pool.available == free + 10
    port.close()
    port.close()
    got, stamps = _read(out, pool)
    assert got == frames
    assert all(before // 1000 * 1000 <= t <= time.time_ns() for t in stamps)
    assert port.stats.tx_packets == 10 and port.stats.tx_bytes == sum(map(len, frames))


def test_file_to_file_keeps_capture_time(tmp_path, pool):
    frames = _frames(12)
    src = _write(tmp_path / "in.pcap", frames)
    dst = tmp_path / "out.pcap"
    port = PcapPort(0, f"{src},{dst},tsres=ns,ts=keep")
    port.open(pool)
    batch = Batch(pool, 64)
    port.recv(batch, 64)
    port.send(batch)
    port.close()
    assert _read(dst, pool) == (frames, [T0 + k * 1000 for k in range(12)])


def test_receive_only_port_counts_sends_as_dropped(tmp_path, pool):
    port = PcapPort(0, str(_write(tmp_path / "in.pcap", _frames(2))))
    port.open(pool)
    batch = pool.alloc(4)
    free = pool.available
    assert port.send(batch) == 0
    assert port.stats.tx_dropped == 4 and pool.available == free + 4


def test_rate_caps_receive_pace(tmp_path, pool):
    path = _write(tmp_path / "in.pcap", _frames(500))
    port = PcapPort(0, f"{path},rate=200")
    port.open(pool)
    batch = Batch(pool, 512)
    start = time.monotonic()
    assert port.recv(batch, 512) == 0  # nothing is due at the very start
    time.sleep(0.1)
    port.recv(batch, 512)
    elapsed = time.monotonic() - start
    assert 1 <= batch.n <= 200 * elapsed + 1


def test_damaged_file_delivers_good_records_and_counts_the_error(tmp_path, pool, caplog):
    frames = _frames(6)
    path = _write(tmp_path / "cut.pcap", frames)
    path.write_bytes(path.read_bytes()[:-5])
    port = PcapPort(0, f"{path},repeat=2")
    port.open(pool)
    assert _drain(port, pool) == frames[:5] * 2
    assert port.at_end and port.stats.rx_errors == 2
    assert "cut.pcap: truncated record at offset" in port.error
    assert caplog.text.count("truncated record") == 1  # logged once, counted each play


def test_records_too_large_for_the_pool_are_counted(tmp_path):
    pool = Pool(64, bufsize=512, headroom=64, name="tiny")
    frames = _frames(3)
    big = frame(eth={}, ipv4={"src": "1.1.1.1", "dst": "2.2.2.2"}, udp={}, payload=bytes(900))
    port = PcapPort(0, str(_write(tmp_path / "in.pcap", [frames[0], big, frames[1]])))
    port.open(pool)
    assert _drain(port, pool) == frames[:2]
    assert port.stats.rx_errors == 1 and port.stats.rx_packets == 2


def test_empty_file_with_repeat_forever_ends(tmp_path, pool):
    port = PcapPort(0, f"{_write(tmp_path / 'empty.pcap', [])},repeat=0")
    port.open(pool)
    assert _drain(port, pool) == [] and port.at_end


def test_pcap_to_memory_wire_to_pcap(tmp_path, pool):
    frames = _frames(40)
    src, dst = _write(tmp_path / "in.pcap", frames), tmp_path / "out.pcap"
    table = PortTable.from_specs([f"0=pcap:{src}", "1=mem:link", "2=mem:link",
                                  f"3=pcap:,{dst}"])
    try:
        for port in table:
            port.open(pool)
        batch = Batch(pool, 16)
        for _ in range(10):
            if table[0].recv(batch, 16):
                table[1].send(batch)
            if table[2].recv(batch, 16):
                table[3].send(batch)
    finally:
        table.close()
    assert _read(dst, pool)[0] == frames
    assert table[3].stats.tx_packets == table[0].stats.rx_packets == 40


@pytest.mark.parametrize("args, message", [
    ("", "expected pcap:IN"),
    (",", "expected pcap:IN"),
    ("a.pcap,b.pcap,c.pcap", "expected pcap:IN"),
    ("a.pcap,repeat=-1", 'repeat="-1" must be a whole number'),
    ("a.pcap,rate=0", 'rate="0" must be packets per second'),
    ("a.pcap,rate=fast", 'rate="fast"'),
    ("a.pcap,tsres=ms", 'unknown option "tsres=ms"'),
    ("a.pcap,mac=1:2", 'mac="1:2"'),
])
def test_bad_specs_name_the_field(args, message):
    with pytest.raises(PortSpecError, match=message):
        PcapPort(0, args)


def test_missing_or_bad_input_file_is_a_port_error(tmp_path):
    with pytest.raises(PortError, match=r"port 0 \(pcap:.*nope.pcap\).*cannot open"):
        PcapPort(0, str(tmp_path / "nope.pcap"))
    text = tmp_path / "text.pcap"
    text.write_text("not a capture at all")
    with pytest.raises(PortError, match="not a pcap or pcapng file"):
        PcapPort(0, f"{text},{tmp_path / 'out.pcap'}")
