"""Fixtures: an NF forwarding between memory ports, fed by the generator, with its stats
server (and dashboard) on an ephemeral loopback port."""

from __future__ import annotations

import itertools
import os
import time

import pytest

from pktflow.flow import FlowConfig, System
from pktflow.pktgen import Pktgen
from pktflow.ports.base import PortTable

_names = itertools.count()


class Forwarder:
    """NF: port 0 -> port 1 (built-in nodes only: nothing to compile); the generator sends
    on the far end of port 0 and counts what comes back on the far end of port 1."""

    def __init__(self, pps: int = 5000) -> None:
        tag = f"dash{os.getpid()}_{next(_names)}"
        specs = [f"{i}=mem:{tag}_{i},ring=8192" for i in range(2)]
        self.nf = System(FlowConfig(pool_size=16384, stats=("127.0.0.1", 0)),
                         PortTable.from_specs(specs))
        self.nf.sender(self.nf.receiver(0, name="in"), 1, name="out")
        self.nf.start()
        self.gen_ports = PortTable.from_specs(specs)
        self.gen = Pktgen(self.gen_ports, pool=self.nf.pool, output=lambda text: None)
        self.gen.execute("set 0 count 0")
        self.gen.execute(f"set 0 pps {pps}")
        self.gen.start([0])

    @property
    def address(self) -> tuple[str, int]:
        address = self.nf.stats_address
        assert address is not None
        return address

    def forwarded(self) -> int:
        return int(self.nf.stats()["ports"]["1"]["tx_packets"])

    def wait_moving(self, timeout: float = 10.0) -> int:
        """Wait until the NF has forwarded packets; returns how many."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.forwarded() > 0:
                return self.forwarded()
            time.sleep(0.02)
        raise AssertionError("the NF forwarded nothing within the timeout")

    def close(self) -> None:
        self.gen.stop([0])
        self.gen.close()
        self.nf.close()
        self.gen_ports.close()


@pytest.fixture(scope="module")
def forwarder():
    fw = Forwarder()
    try:
        yield fw
    finally:
        fw.close()
