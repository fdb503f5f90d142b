"""Rate control (bounded, loose checks) and pcap replay."""

from __future__ import annotations

import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap

from pktflow.packet import Pool
from pktflow.pktgen import Pktgen
from pktflow.ports import PortTable
from tests.pktgen.conftest import Rig, checksums_valid


@pytest.fixture
def lone_gen():
    """A generator on a memory port with nothing at the far end: sent packets are freed at
    once (like a cable to nowhere), so the pool never runs dry during a long run."""
    ports = PortTable.from_specs(["0=mem:rate-test-lone"])
    gen = Pktgen(ports, pool=Pool(4096), output=lambda s: None)
    try:
        yield gen
    finally:
        gen.close()
        ports.close()


def measured_pps(gen: Pktgen, seconds: float) -> float:
    gen.start([0])
    time.sleep(0.2)  # let the bucket settle
    before, t0 = gen.stats()[0]["tx_generated"], time.monotonic()
    time.sleep(seconds)
    after, t1 = gen.stats()[0]["tx_generated"], time.monotonic()
    gen.stop([0])
    return (after - before) / (t1 - t0)


def test_pps_rate(lone_gen):
    lone_gen.execute("set 0 pps 20000")
    pps = measured_pps(lone_gen, 1.0)
    assert 20000 * 0.95 < pps < 20000 * 1.05


def test_percent_rate_counts_wire_overhead(lone_gen):
    # 1% of 10 Gbit/s with 1518-byte frames (+20 bytes gap and preamble): 8127 pps.
    lone_gen.execute("set 0 size 1518")
    lone_gen.execute("set 0 rate 1")
    pps = measured_pps(lone_gen, 1.0)
    expected = 10e9 * 0.01 / ((1518 + 20) * 8)
    assert expected * 0.95 < pps < expected * 1.05
    stats = lone_gen.stats()[0]
    assert stats["tx_dropped"] == stats["tx_generated"]  # nobody at the far end


@pytest.fixture
def capture(tmp_path):
    frames = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(dst=f"10.0.0.{i}")
              / UDP(dport=1000 + i) / (b"p" * (10 * i)) for i in range(1, 4)]
    path = tmp_path / "in.pcap"
    wrpcap(str(path), frames)
    return path, [bytes(f) for f in frames]


def test_pcap_replay_loops_over_the_file(capture):
    path, frames = capture
    rig = Rig(pcap={0: path})
    try:
        rig.run("enable 0 pcap")
        got = rig.send(0, 7)
        assert got == [frames[i % 3] for i in range(7)]
        rig.run("disable 0 pcap")
        assert len(rig.send(0, 1)[0]) == 60  # back to single mode
    finally:
        rig.close()


def test_generator_writes_through_a_pcap_port(tmp_path):
    out = tmp_path / "out.pcap"
    ports = PortTable.from_specs([f"0=pcap:,{out}"])
    gen = Pktgen(ports, pool=Pool(4096), output=lambda s: None)
    try:
        gen.execute("set 0 proto udp")
        gen.execute("range 0 src port 100 100 102 1")
        gen.execute("enable 0 range")
        gen.execute("set 0 count 6")
        gen.start()
        assert gen.wait_done(5)
    finally:
        gen.close()
        ports.close()
    pkts = rdpcap(str(out))
    assert [p[UDP].sport for p in pkts] == [100, 101, 102, 100, 101, 102]
    assert all(checksums_valid(Ether(bytes(p))) for p in pkts)


def test_bad_pcap_file_is_reported_not_fatal(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a pcap file at all")
    rig = Rig(pcap={0: bad})
    try:
        rig.run("enable 0 pcap", "start 0")
        rig.gen.wait_done(2)
        assert "bad.pcap" in rig.gen.errors()[0]
        assert "bad.pcap" in rig.gen.execute("page main")
        rig.run("disable 0 pcap")
        assert len(rig.send(0, 3)) == 3  # the port still works
    finally:
        rig.close()
