"""The generator under trouble: a pool that runs dry, damaged pcap files, failing ports.

In every case the port's worker thread lives on, no buffer is lost, and the page and the
statistics say what happened.
"""

from __future__ import annotations

import logging
import struct
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from pktflow.packet import Batch, Pool
from pktflow.pktgen import Pktgen
from pktflow.ports import PortTable
from tests.pktgen.conftest import Rig

ENGINE_LOG = "pktflow.pktgen.engine"


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def drain_all(rig: Rig, port_id: int) -> int:
    """Receive and free everything queued at the tap of `port_id`; returns the count."""
    tap = rig.tap(port_id)
    batch = Batch(rig.pool, 256)
    total = 0
    for _ in range(10_000):  # bounded: the ring holds at most the pool's buffers
        got = tap.recv(batch, 256)
        if not got:
            break
        total += got
        rig.pool.free(batch)
    return total


def test_pool_running_dry_is_counted_shown_and_logged_once(caplog):
    # Nobody reads the far end of port 0's wire, and its ring is larger than the pool:
    # every buffer ends up queued there and the generator has nothing to build with.
    rig = Rig(burst_pool=2048)
    caplog.set_level(logging.WARNING, logger=ENGINE_LOG)
    try:
        rig.run("set 0 pps 200000")
        rig.gen.start([0])
        assert wait_for(lambda: "tx_paused" in rig.gen.stats()[0])
        time.sleep(0.3)  # the worker keeps retrying all this while
        stats = rig.gen.stats()[0]
        assert stats["sending"] and stats["tx_stalls"] == 1 and stats["tx_stall_s"] > 0.2
        assert "no free buffer" in stats["tx_paused"] and "mem:" in stats["tx_paused"]
        page = rig.gen.execute("page main")
        assert "Tx Stalls: no buffer" in page and "port 0: tx paused" in page
        warnings = [r for r in caplog.records if r.name == ENGINE_LOG]
        assert len(warnings) == 1 and "no free buffer" in warnings[0].getMessage()

        sent_while_dry = rig.gen.stats()[0]["tx_generated"]
        assert rig.tap(0).queued == sent_while_dry == rig.pool.buffers  # all queued there
        assert drain_all(rig, 0) >= sent_while_dry
        # Buffers are back: transmission resumes by itself and the pause is over.
        assert wait_for(lambda: rig.gen.stats()[0]["tx_generated"] > sent_while_dry)
        rig.gen.stop([0])
        stats = rig.gen.stats()[0]
        assert "tx_paused" not in stats and stats["tx_stall_s"] >= 0.3
        assert rig.gen.errors() == {}
    finally:
        rig.close()


def test_stopping_while_the_pool_is_dry_ends_the_pause():
    rig = Rig(burst_pool=1024)
    try:
        rig.gen.start([0])
        assert wait_for(lambda: "tx_paused" in rig.gen.stats()[0])
        rig.gen.stop([0])
        assert wait_for(lambda: rig.gen.workers[0]._stall_since is None)
        paused = rig.gen.stats()[0]["tx_stall_s"]
        time.sleep(0.2)
        assert rig.gen.stats()[0]["tx_stall_s"] == paused  # no longer counting
    finally:
        rig.close()


def pcap_with_damage(path, frames: list[bytes], damage: bytes) -> None:
    """A pcap file of `frames` followed by damaged bytes."""
    wrpcap(str(path), [Ether(f) for f in frames])
    with open(path, "ab") as f:
        f.write(damage)


@pytest.fixture
def frames():
    return [bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                  / IP(dst=f"10.0.0.{i}") / UDP(dport=1000 + i) / (b"q" * (20 * i)))
            for i in range(1, 4)]


@pytest.mark.parametrize("damage,why", [
    # A record header promising 100 bytes, with only 10 present: a capture cut short.
    (struct.pack("<IIII", 0, 0, 100, 100) + b"x" * 10, "truncated record"),
    # A record whose length is impossible.
    (struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"x" * 64, "corrupt record"),
])
def test_damaged_pcap_replays_the_good_packets_and_says_so(tmp_path, frames, damage, why):
    path = tmp_path / "damaged.pcap"
    pcap_with_damage(path, frames, damage)
    rig = Rig(pcap={0: path})
    try:
        rig.run("enable 0 pcap")
        got = rig.send(0, 10)
        assert got == [frames[i % 3] for i in range(10)]
        error = rig.gen.errors()[0]
        assert "damaged.pcap" in error and why in error and "replaying the 3 packets" in error
        assert rig.gen.stats()[0]["error"] == error
        assert error in rig.gen.execute("page main")
        # Starting again rewinds the file and reports the damage afresh.
        assert rig.send(0, 4) == [frames[i % 3] for i in range(4)]
        assert why in rig.gen.errors()[0]
        assert rig.gen.workers[0]._thread.is_alive()
    finally:
        rig.close()
    assert rig.pool.available == rig.pool.buffers  # no buffer lost on the way


def test_pcap_damaged_before_any_packet_stops_the_port_cleanly(tmp_path, frames):
    path = tmp_path / "empty.pcap"
    pcap_with_damage(path, [], struct.pack("<IIII", 0, 0, 100, 100) + b"x" * 10)
    rig = Rig(pcap={0: path})
    try:
        rig.run("enable 0 pcap", "start 0")
        assert rig.gen.wait_done(5)
        assert "truncated record" in rig.gen.errors()[0]
        assert not rig.gen.stats()[0]["sending"]
        rig.run("disable 0 pcap")
        assert len(rig.send(0, 3)) == 3  # the worker lives on
    finally:
        rig.close()
    assert rig.pool.available == rig.pool.buffers


def test_port_closed_under_the_generator_counts_drops_and_loses_no_buffer(tmp_path):
    # A pcap port closed under a running generator: what it is handed from then on is
    # counted as dropped and freed; the generator's worker lives on.
    ports = PortTable.from_specs([f"0=pcap:,{tmp_path / 'out.pcap'}"])
    pool = Pool(4096)
    gen = Pktgen(ports, pool=pool, output=lambda s: None)
    try:
        gen.execute("set 0 pps 50000")
        gen.start([0])
        assert wait_for(lambda: gen.stats()[0]["tx_packets"] > 0)
        ports[0].close()
        assert wait_for(lambda: ports[0].stats.tx_dropped > 0)
        assert gen.workers[0]._thread.is_alive()
        gen.stop([0])
        assert wait_for(lambda: not gen.stats()[0]["sending"])
    finally:
        gen.close()
        ports.close()
    assert pool.available == pool.buffers


def test_port_failing_in_recv_is_reported_and_tx_goes_on():
    # Port 0 was opened on another pool than the generator's: receiving into the
    # generator's batches fails, sending still works.
    gen_pool, other_pool = Pool(4096, name="gen"), Pool(1024, name="other")
    ports = PortTable.from_specs(["0=mem:robust-rx"])
    taps = PortTable.from_specs(["10=mem:robust-rx,ring=65536"])
    ports[0].open(other_pool)
    taps[10].open(gen_pool)
    gen = Pktgen(ports, pool=gen_pool, output=lambda s: None)
    try:
        reply = gen_pool.alloc(1)
        gen_pool.write(int(reply.idx[0]), bytes(60))
        taps[10].send(reply)  # lands in port 0's ring, in the other pool
        assert wait_for(lambda: "receive failed" in gen.errors().get(0, ""))
        assert "PortError" in gen.errors()[0]
        gen.execute("set 0 count 500")
        gen.start([0])
        assert gen.wait_done(5)
        assert gen.stats()[0]["tx_packets"] == 500
        assert taps[10].queued == 500
        assert gen.workers[0]._thread.is_alive()
    finally:
        gen.close()
        ports.close()
        taps.close()
