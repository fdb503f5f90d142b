"""An NF on memory ports plus the peer ends a test drives, shared by the flow and the
reliability tests."""

from __future__ import annotations

import itertools
import os
import time

from pktflow.flow import FlowConfig, System
from pktflow.packet.build import frame
from pktflow.packet.pool import Batch
from pktflow.ports.base import PortTable

_names = itertools.count()


def udp_frame(k: int, size: int = 64, dport: int | None = None, tcp: bool = False) -> bytes:
    """A distinct frame: packet number `k` sits in the IPv4 ID and the source port."""
    l4 = {"src_port": 1000 + k % 60000, "dst_port": 5678 if dport is None else dport}
    raw = frame(eth={"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"},
                ipv4={"src": f"10.0.{(k >> 8) & 255}.{k & 255}", "dst": "10.1.0.1",
                      "id": k & 0xFFFF},
                **({"tcp": l4} if tcp else {"udp": l4}))
    return raw + bytes(max(0, size - len(raw)))


def packet_number(raw: bytes) -> int:
    """The `k` udp_frame put into a frame (IPv4 identification)."""
    return int.from_bytes(raw[18:20], "big")


class Rig:
    """An NF `System` whose ports 0..n-1 are memory wires; `peer[i]` is the far end."""

    def __init__(self, nports: int, **config) -> None:
        tag = f"{os.getpid()}_{next(_names)}"
        specs = [f"{i}=mem:t{tag}_{i},ring=65536" for i in range(nports)]
        config.setdefault("pool_size", 8192)
        config.setdefault("scheduler_interval", 0.1)
        self.nf = System(FlowConfig(**config), PortTable.from_specs(specs))
        self.peer = PortTable.from_specs(specs)
        for port in self.peer:
            port.open(self.nf.pool)

    @property
    def pool(self):
        return self.nf.pool

    def feed(self, port: int, frames: list[bytes]) -> None:
        """Queue `frames` for the NF's port `port`."""
        pool = self.pool
        for at in range(0, len(frames), 1024):
            chunk = frames[at:at + 1024]
            batch = pool.alloc(len(chunk))
            for k, raw in enumerate(chunk):
                pool.write(int(batch.idx[k]), raw)
            assert self.peer[port].send(batch) == len(chunk)

    def collect(self, port: int) -> list[bytes]:
        """Every frame the NF sent out of `port`, in order; frees them."""
        out: list[bytes] = []
        batch = Batch(self.pool, 1024)
        while True:
            batch.n = 0
            if self.peer[port].recv(batch, 1024) == 0:
                return out
            out.extend(batch.frames())
            self.pool.free(batch)

    def run(self, timeout: float = 10.0, idle: float = 0.3) -> dict:
        stats = self.nf.run(timeout, until_idle=idle)
        assert_conserved(self.nf)
        return stats

    def wait_out(self, port: int, count: int, timeout: float = 20.0) -> list[bytes]:
        """Collect from `port` until `count` frames came out or `timeout` passed."""
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            got += self.collect(port)
            time.sleep(0.01)
        return got

    def close(self) -> None:
        self.nf.close()
        self.peer.close()


def assert_conserved(nf: System) -> dict:
    check = nf.check_conservation()
    assert check["exact"] and check["balanced"], check
    return check


def node(stats: dict, op: str, index: int = 0) -> dict:
    """The `index`-th node of kind `op` in a stats snapshot."""
    return [n for n in stats["nodes"] if n["op"] == op][index]
