"""Fixtures: a generator on memory ports plus a tap port that captures what it sends."""

from __future__ import annotations

import itertools
import time

import pytest
from scapy.layers.l2 import Ether

from pktflow.packet import Batch, Pool
from pktflow.pktgen import Pktgen
from pktflow.ports import PortTable

_names = itertools.count()


class Rig:
    """Generator ports 0 and 1, each wired to a tap the test reads (ports 10 and 11)."""

    def __init__(self, pcap: dict | None = None, burst_pool: int = 8192) -> None:
        n = next(_names)
        self.pool = Pool(buffers=burst_pool, name="pktgen-test")
        self.ports = PortTable.from_specs([f"0=mem:g{n}a,ring=65536",
                                           f"1=mem:g{n}b,ring=65536"])
        self.taps = PortTable.from_specs([f"10=mem:g{n}a,ring=65536",
                                          f"11=mem:g{n}b,ring=65536"])
        for tap in self.taps:
            tap.open(self.pool)
        self.output: list[str] = []
        self.gen = Pktgen(self.ports, pool=self.pool, pcap=pcap, output=self.output.append)

    def tap(self, port_id: int):
        return self.taps[10 + port_id]

    def run(self, *commands: str) -> None:
        for c in commands:
            self.gen.execute(c)

    def send(self, port_id: int, count: int, timeout: float = 10.0) -> list[bytes]:
        """Send `count` packets on `port_id` and return the frames its tap received."""
        self.gen.execute(f"set {port_id} count {count}")
        self.gen.start([port_id])
        assert self.gen.wait_done(timeout), "the generator did not finish its count"
        return self.drain(port_id, count, timeout)

    def drain(self, port_id: int, expect: int, timeout: float = 5.0) -> list[bytes]:
        tap = self.tap(port_id)
        frames: list[bytes] = []
        batch = Batch(self.pool, 256)
        deadline = time.monotonic() + timeout
        while len(frames) < expect and time.monotonic() < deadline:
            if tap.recv(batch, 256):
                frames += batch.frames()
                self.pool.free(batch)
            else:
                time.sleep(0.001)
        return frames

    def packets(self, port_id: int, count: int) -> list[Ether]:
        return [Ether(f) for f in self.send(port_id, count)]

    def close(self) -> None:
        self.gen.close()
        self.ports.close()
        self.taps.close()


@pytest.fixture
def rig():
    r = Rig()
    try:
        yield r
    finally:
        r.close()


def checksums_valid(pkt: Ether) -> bool:
    """True when every checksum in `pkt` equals the one Scapy computes afresh."""
    raw = bytes(pkt)
    layer = pkt
    while layer is not None and layer.name != "NoPayload":
        fields = [f for f in ("chksum", "cksum") if f in layer.fields]
        for f in fields:
            original = layer.getfieldval(f)
            layer.setfieldval(f, None)
            fresh = Ether(bytes(pkt))
            layer.setfieldval(f, original)
            rebuilt = fresh
            # Find the same layer in the rebuilt packet and compare.
            target = rebuilt.getlayer(type(layer))
            if target.getfieldval(f) != original:
                return False
        layer = layer.payload
    return bytes(pkt) == raw
