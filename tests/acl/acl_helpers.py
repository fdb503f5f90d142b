"""Test helpers for pktflow.acl: packet descriptions, frames, and a reference classifier.

The reference classifier works from the rule objects and from the fields a test packet
was built with (not from the parser or the compiled arrays), scanning rules in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pktflow.acl import L2Rule, L3Rule
from pktflow.packet import Batch, Pool, parse_batch
from pktflow.packet.addr import IPv4Addr, IPv6Addr, MACAddr
from pktflow.packet.build import frame

TCP, UDP, ICMP, ICMP6, GRE = 6, 17, 1, 58, 47


@dataclass(frozen=True)
class Pkt:
    """What a test packet carries; `ports` is None for packets without TCP/UDP ports."""

    family: int  # 4, 6, or 0 for a non-IP (ARP) frame
    src: int = 0
    dst: int = 0
    proto: int = TCP
    sport: int = 1234
    dport: int = 5678
    fragment: bool = False  # a non-first fragment: protocol known, no L4 header

    @property
    def ports(self) -> tuple[int, int] | None:
        if self.family == 0 or self.fragment or self.proto not in (TCP, UDP):
            return None
        return self.sport, self.dport

    def frame(self) -> bytes:
        if self.family == 0:
            return frame(arp={"spa": "10.0.0.1", "tpa": "10.0.0.2"})
        ip = "ipv4" if self.family == 4 else "ipv6"
        addr = IPv4Addr if self.family == 4 else IPv6Addr
        l3: dict = {"src": addr(self.src), "dst": addr(self.dst)}
        if self.fragment and self.family == 4:
            l3.update(frag_offset=8, proto=self.proto)
            return frame(ipv4=l3, payload=bytes(24))
        if self.fragment:  # IPv6 fragment header: next header, offset 8 (x 8 bytes), id
            l3["next_header"] = 44
            header = bytes([self.proto, 0]) + (8 << 3).to_bytes(2, "big") + bytes(4)
            return frame(ipv6=l3, payload=header + bytes(24))
        l4 = {TCP: "tcp", UDP: "udp"}.get(self.proto)
        if l4:
            return frame(**{ip: l3, l4: {"src_port": self.sport, "dst_port": self.dport}})
        if self.proto == ICMP and self.family == 4:
            return frame(ipv4=l3, icmp={})
        if self.proto == ICMP6 and self.family == 6:
            return frame(ipv6=l3, icmp6={})
        l3["proto" if self.family == 4 else "next_header"] = self.proto
        return frame(**{ip: l3}, payload=bytes(8))


@dataclass(frozen=True)
class Eth:
    """What a test Ethernet frame carries; `vlan` None means untagged."""

    src: int
    dst: int
    ethertype: int  # 0x0800, 0x86dd or 0x0806 (built with that L3 header)
    vlan: int | None = None

    def frame(self) -> bytes:
        eth = {"src": MACAddr(self.src), "dst": MACAddr(self.dst)}
        vlan = None if self.vlan is None else {"vid": self.vlan}
        if self.ethertype == 0x0800:
            return frame(eth=eth, vlan=vlan, ipv4={"src": "10.0.0.1"}, udp={})
        if self.ethertype == 0x86DD:
            return frame(eth=eth, vlan=vlan, ipv6={"src": "2001:db8::1"}, udp={})
        return frame(eth=eth, vlan=vlan, arp={})


def parsed_batch(pool: Pool, frames: list[bytes]) -> Batch:
    """A parsed batch holding `frames` in order."""
    batch = pool.alloc(len(frames))
    for b, raw in zip(batch.idx[: batch.n], frames, strict=True):
        pool.write(int(b), raw)
    parse_batch(pool.data, pool.meta, batch.idx, batch.n)
    return batch


def _in_cidr(cidr, family: int, address: int) -> bool:
    if cidr is None:
        return True
    return cidr.version == family and cidr.contains(address)


def _in_range(r: tuple[int, int] | None, value: int | None) -> bool:
    if r is None:
        return True
    return value is not None and r[0] <= value <= r[1]


def reference_l3(rules: list[L3Rule], p: Pkt) -> int:
    """Index of the first rule matching `p`, by a plain scan; -1 if none."""
    if p.family == 0:
        return -1
    ports = p.ports
    for i, r in enumerate(rules):
        if p.family not in r.families:
            continue
        if not (_in_cidr(r.src, p.family, p.src) and _in_cidr(r.dst, p.family, p.dst)):
            continue
        if r.proto is not None and r.proto != p.proto:
            continue
        if not _in_range(r.src_ports, ports and ports[0]):
            continue
        if not _in_range(r.dst_ports, ports and ports[1]):
            continue
        return i
    return -1


def reference_l2(rules: list[L2Rule], e: Eth) -> int:
    """Index of the first L2 rule matching `e`, by a plain scan; -1 if none."""
    for i, r in enumerate(rules):
        if r.src is not None and r.src != e.src or r.dst is not None and r.dst != e.dst:
            continue
        if r.ethertype is not None and r.ethertype != e.ethertype:
            continue
        if not _in_range(r.vlan, e.vlan):
            continue
        return i
    return -1


def outputs_of(rules: list, matches: list[int]) -> np.ndarray:
    """Expected outputs for reference matches (0 where nothing matched)."""
    return np.array([rules[m].output if m >= 0 else 0 for m in matches], dtype=np.int32)
