"""Memory wires: exact packets and counters through both directions, drops, pool copies."""

from __future__ import annotations

import threading

import pytest

from pktflow.packet import Batch, Pool
from pktflow.packet import meta as M
from pktflow.ports import PortError, PortSpecError, PortTable
from pktflow.ports.memory import MemoryPort, derived_mac, reset_wires, wire_names


@pytest.fixture(autouse=True)
def _free_wires():
    yield
    reset_wires()


def _frames(count: int, tag: int = 0) -> list[bytes]:
    """Distinct frames of varying length: MACs, ethertype, then a numbered payload."""
    out = []
    for i in range(count):
        body = bytes([tag, i & 255, i >> 8]) * (20 + i % 17)
        out.append(bytes.fromhex("0200000000aa0200000000bb88b5") + body)
    return out


def _batch_of(pool: Pool, frames: list[bytes]) -> Batch:
    batch = pool.alloc(len(frames))
    for b, frame in zip(batch.idx[: batch.n], frames, strict=True):
        pool.write(int(b), frame)
    return batch


def _pair(pool: Pool, *args: str) -> tuple[MemoryPort, MemoryPort]:
    a = MemoryPort(0, args[0] if args else "w")
    b = MemoryPort(1, args[1] if len(args) > 1 else "w")
    a.open(pool)
    b.open(pool)
    return a, b


def test_both_directions_carry_exact_frames_and_counters(pool):
    a, b = _pair(pool)
    sent_ab, sent_ba = _frames(100, 1), _frames(37, 2)
    assert a.send(_batch_of(pool, sent_ab)) == 100
    assert b.send(_batch_of(pool, sent_ba)) == 37
    got_b = Batch(pool, 256)
    assert b.recv(got_b, 256) == 100
    got_a = Batch(pool, 256)
    assert a.recv(got_a, 10) == 10 and a.recv(got_a, 256) == 27
    assert got_b.frames() == sent_ab and got_a.frames() == sent_ba
    assert set(pool.meta[got_b.idx[: got_b.n], M.PORT]) == {1}
    assert set(pool.meta[got_a.idx[: got_a.n], M.PORT]) == {0}
    assert (pool.ts[got_b.idx[: got_b.n]] > 0).all()
    ab_bytes, ba_bytes = sum(map(len, sent_ab)), sum(map(len, sent_ba))
    assert (a.stats.tx_packets, a.stats.tx_bytes, a.stats.rx_packets, a.stats.rx_bytes) == (
        100, ab_bytes, 37, ba_bytes)
    assert (b.stats.tx_packets, b.stats.tx_bytes, b.stats.rx_packets, b.stats.rx_bytes) == (
        37, ba_bytes, 100, ab_bytes)
    assert a.stats.tx_dropped == b.stats.tx_dropped == 0
    assert b.recv(got_b, 256) == 0  # nothing left


def test_same_pool_passes_indices_without_copy(pool):
    a, b = _pair(pool)
    batch = _batch_of(pool, _frames(5))
    sent_idx = list(batch.idx[:5])
    a.send(batch)
    assert batch.n == 0
    got = Batch(pool, 8)
    b.recv(got, 8)
    assert list(got.idx[:5]) == sent_idx


def test_recv_clears_sender_side_parse_results_and_keeps_start(pool):
    a, b = _pair(pool)
    batch = pool.alloc(1)
    pool.write(int(batch.idx[0]), _frames(1)[0], start=64)
    pool.meta[batch.idx[0], M.L3] = 14 + 64
    pool.meta[batch.idx[0], M.FLAGS] = M.F_IPV4
    a.send(batch)
    got = Batch(pool, 4)
    b.recv(got, 4)
    row = pool.meta[got.idx[0]]
    assert row[M.START] == 64 and row[M.L3] == -1 and row[M.FLAGS] == 0


def test_full_ring_drops_counts_and_frees(pool):
    a, b = _pair(pool, "w", "w,ring=64")
    free_before = pool.available
    assert a.send(_batch_of(pool, _frames(100))) == 64
    assert (a.stats.tx_packets, a.stats.tx_dropped) == (64, 36)
    assert b.queued == 64
    assert pool.available == free_before - 64  # the 36 dropped buffers came back
    got = Batch(pool, 256)
    assert b.recv(got, 256) == 64
    assert got.frames() == _frames(100)[:64]
    pool.free(got)
    assert pool.available == free_before


def test_unconnected_port_drops_its_sends(pool):
    lonely = MemoryPort(0, "nowhere")
    lonely.open(pool)
    free_before = pool.available
    assert not lonely.link_up
    assert lonely.send(_batch_of(pool, _frames(10))) == 0
    assert (lonely.stats.tx_packets, lonely.stats.tx_dropped) == (0, 10)
    assert pool.available == free_before


def test_different_pools_copy_the_bytes():
    pool_a, pool_b = Pool(512, name="a"), Pool(512, bufsize=4096, headroom=64, name="b")
    a, b = MemoryPort(0, "x"), MemoryPort(1, "x")
    a.open(pool_a)
    b.open(pool_b)
    frames = _frames(50, 7)
    free_a = pool_a.available
    assert a.send(_batch_of(pool_a, frames)) == 50
    assert pool_a.available == free_a  # the sender's buffers were freed after the copy
    got = Batch(pool_b, 64)
    assert b.recv(got, 64) == 50
    assert got.frames() == frames
    # and back, where the large-buffer pool's frames must fit the small one
    big = pool_b.alloc(1)
    pool_b.write(int(big.idx[0]), frames[0], start=3000)
    assert b.send(big) == 1
    back = Batch(pool_a, 4)
    assert a.recv(back, 4) == 1 and back.frames() == [frames[0]]
    assert pool_a.meta[back.idx[0], M.START] == pool_a.headroom


def test_different_pools_count_frames_too_large_for_the_peer():
    small = Pool(64, bufsize=256, headroom=64, name="small")
    big = Pool(64, bufsize=4096, name="big")
    a, b = MemoryPort(0, "y"), MemoryPort(1, "y")
    a.open(big)
    b.open(small)
    batch = big.alloc(2)
    big.write(int(batch.idx[0]), bytes(1000))
    big.write(int(batch.idx[1]), bytes(100))
    assert a.send(batch) == 1
    assert (a.stats.tx_packets, a.stats.tx_dropped) == (1, 1)
    got = Batch(small, 4)
    assert b.recv(got, 4) == 1 and got.frames() == [bytes(100)]


def test_third_opener_is_an_error_naming_the_wire(pool):
    _pair(pool)
    with pytest.raises(PortError, match='memory wire "w" already has two ports'):
        MemoryPort(2, "w")


def test_closing_frees_the_name_and_drains_the_ring(pool):
    a, b = _pair(pool)
    free_before = pool.available
    a.send(_batch_of(pool, _frames(5)))
    b.close()
    b.close()  # twice is fine
    assert b.stats.rx_dropped == 5 and pool.available == free_before
    assert a.send(_batch_of(pool, _frames(3))) == 0 and a.stats.tx_dropped == 3
    c = MemoryPort(2, "w")  # takes the free end
    c.open(pool)
    assert a.send(_batch_of(pool, _frames(2))) == 2 and c.queued == 2
    a.close()
    c.close()
    assert "w" not in wire_names()
    MemoryPort(0, "w"), MemoryPort(1, "w")  # both ends free again


def test_macs_are_stable_locally_administered_and_overridable(pool):
    a, b = _pair(pool, "m", "m,mac=02:00:00:00:00:01")
    assert a.mac == derived_mac("m", 0) and a.mac != derived_mac("m", 1)
    assert int(a.mac) >> 40 & 0x03 == 0x02  # locally administered, unicast
    assert str(b.mac) == "02:00:00:00:00:01"


@pytest.mark.parametrize("spec, message", [
    ("mem:", "expected mem:NAME"),
    ("mem:a,ring=0", 'ring="0"'),
    ("mem:a,ring=lots", 'ring="lots"'),
    ("mem:a,mac=zz", "mac"),
    ("mem:a,speed=10", 'unknown option "speed=10"'),
])
def test_bad_specs_name_the_field(spec, message):
    with pytest.raises(PortSpecError, match=message):
        PortTable.from_specs([f"0={spec}"])


def test_port_table_builds_memory_ports(pool):
    table = PortTable.from_specs(["0=mem:t", "1=mem:t"])
    try:
        for port in table:
            port.open(pool)
        assert table[0].peer is table[1] and table[0].link_up
        assert table[0].send(_batch_of(pool, _frames(3))) == 3
        got = Batch(pool, 4)
        assert table[1].recv(got, 4) == 3
    finally:
        table.close()
    assert "t" not in wire_names()


def test_one_sender_and_one_receiver_thread_lose_nothing(pool):
    a, b = _pair(pool, "w", "w,ring=128")
    total, sent, received = 20000, [0], []
    done = threading.Event()

    def produce():
        seq = 0
        while seq < total:
            batch = pool.alloc(min(64, total - seq))
            for b_ in batch.idx[: batch.n]:
                pool.data[b_, pool.headroom:pool.headroom + 4] = list(seq.to_bytes(4, "big"))
                pool.meta[b_, M.LEN] = 60
                seq += 1
            sent[0] += a.send(batch)
        done.set()

    def consume():
        got = Batch(pool, 256)
        while not (done.is_set() and b.queued == 0):
            if b.recv(got, 256):
                for b_ in got.idx[: got.n]:
                    received.append(int.from_bytes(
                        pool.data[b_, pool.headroom:pool.headroom + 4].tobytes(), "big"))
                pool.free(got)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sent[0] + a.stats.tx_dropped == total
    assert len(received) == sent[0] == b.stats.rx_packets
    assert received == sorted(received)  # order kept, no duplicates
