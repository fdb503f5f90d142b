"""Helpers for NAT tests: the NAT example on memory ports, and the peer ends a test drives."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import scapy.layers.inet  # noqa: F401  (binds IP/TCP/UDP/ICMP under Ether)
import scapy.layers.l2  # noqa: F401
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from pktflow.flow import FlowConfig, System
from pktflow.packet.pool import Batch
from pktflow.ports.base import PortTable
from pktflow.tutorial.nat import load_example

nat_mod = load_example()
_names = itertools.count()

GEN_MAC0 = "02:70:67:00:00:00"  # the generator's ports: the NAT's next hops
GEN_MAC1 = "02:70:67:00:00:01"
NAT_MACS = ("02:6e:61:74:00:00", "02:6e:61:74:00:01")  # fixed, so runs compare byte for byte
SETTLE_S = 5.0


def nat_doc(**extra: Any) -> dict[str, Any]:
    """The tutorial's nat.json content, with `extra` merged into the public port."""
    public = {"index": 1, "dst_mac": GEN_MAC1, "subnet": "10.1.1.1"}
    public.update(extra.pop("public", {}))
    return {"private-port": {"index": 0, "dst_mac": GEN_MAC0, "subnet": "192.168.1.1/24"},
            "public-port": public, **extra}


class NatRig:
    """A running NAT whose ports 0 (private) and 1 (public) are memory wires; `peer[i]`
    is the generator's end. The NAT's clock is manual: `advance(seconds)`."""

    def __init__(self, doc: dict[str, Any] | None = None, mode: str | None = None) -> None:
        tag = f"{os.getpid()}_{next(_names)}"
        specs = [f"{i}=mem:nat{tag}_{i},ring=16384" for i in (0, 1)]
        self.peer = PortTable.from_specs(
            [f"{s},mac={m}" for s, m in zip(specs, (GEN_MAC0, GEN_MAC1), strict=True)])
        self.nf = System(FlowConfig(pool_size=4096, scheduler_interval=0.1),
                         PortTable.from_specs([f"{s},mac={m}" for s, m in zip(
                             specs, NAT_MACS, strict=True)]))
        for port in self.peer:
            port.open(self.nf.pool)
        self.config = nat_mod.parse_config(doc or nat_doc())
        self.nat = nat_mod.build_nat(self.nf, self.config, manual_clock=True, mode=mode)
        self.macs = (str(self.nf.port_mac(0)), str(self.nf.port_mac(1)))
        self.sent = 0
        self.nf.start()

    @property
    def kernels(self) -> dict[str, str]:
        """Which path each NAT node took: {"nat outbound": "compiled", ...}."""
        return {n.name: n.kernel.path for n in self.nf._nodes if n.kernel is not None}

    def send(self, port: int, frames: list[bytes | Any]) -> None:
        """Queue frames (bytes or Scapy packets) for the NAT's port `port`."""
        pool = self.nf.pool
        batch = pool.alloc(len(frames))
        for k, raw in enumerate(frames):
            pool.write(int(batch.idx[k]), bytes(raw))
        assert self.peer[port].send(batch) == len(frames)
        self.sent += len(frames)

    def settle(self) -> None:
        """Wait until every packet sent so far has ended in one of the NF's counters."""
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            c = self.nf.check_conservation()
            if c["total_entered"] == self.sent and c["total_ended"] == self.sent:
                return
            time.sleep(0.005)
        raise AssertionError(f"NF did not finish {self.sent} packets: {c}")

    def collect(self, port: int) -> list[Ether]:
        """Every frame the NAT sent out of `port` so far, dissected by Scapy."""
        self.settle()
        out: list[Ether] = []
        batch = Batch(self.nf.pool, 256)
        for _ in range(10_000):
            batch.n = 0
            if self.peer[port].recv(batch, 256) == 0:
                break
            out.extend(Ether(raw) for raw in batch.frames())
            self.nf.pool.free(batch)
        return out

    def exchange(self, port: int, frames: list[Any], out_port: int) -> list[Ether]:
        self.send(port, frames)
        return self.collect(out_port)

    def advance(self, seconds: float) -> None:
        self.nat.advance(seconds)

    def counters(self, side: str) -> dict[str, int]:
        return self.nat.counters()[side]

    def close(self) -> dict[str, Any]:
        final = self.nf.stop()
        self.nat.close()
        self.nf.close()
        self.peer.close()
        return final


def checksums_right(p: Ether) -> bool:
    """Scapy recomputes every checksum of `p`; True when all equal what arrived."""
    fresh = p.copy()
    for layer in (IP, TCP, UDP, ICMP):
        if layer in fresh:
            if layer is UDP and fresh[UDP].chksum == 0:
                continue  # "no checksum" must stay so
            del fresh[layer].chksum
    fresh = Ether(bytes(fresh))
    return all(fresh[layer].chksum == p[layer].chksum for layer in (IP, TCP, UDP, ICMP)
               if layer in p)
