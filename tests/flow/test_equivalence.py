"""Compiled and interpreted user functions give the same packets on random graphs."""

from __future__ import annotations

import random

import pytest

from tests.memrig import udp_frame

NPORTS = 6  # port 0 receives, ports 1..5 are outputs


def set_ttl(pkt):
    pkt.ipv4.ttl = (pkt.ipv4.id * 7) & 0xFF


def swap_macs(pkt):
    src = pkt.eth.src
    pkt.eth.src = pkt.eth.dst
    pkt.eth.dst = src


def bump_port(pkt):
    if pkt.has_udp:
        pkt.udp.src_port = (pkt.udp.src_port + 1) & 0xFFFF
    else:
        pkt.tcp.dst_port = 53


def even_id(pkt):
    return pkt.ipv4.id % 2 == 0


def is_udp(pkt):
    return pkt.has_udp


def ttl_small(pkt):
    return pkt.ipv4.ttl < 100


def mod3(pkt):
    return (pkt.ipv4.id + pkt.ipv4.ttl) % 3


def mod4_range(pkt):
    return pkt.ipv4.id % 4  # a 3-way splitter: index 3 is out of range


def vector_swap(pkts, mask):
    for i in range(len(pkts)):
        if mask[i]:
            swap_macs(pkts[i])


HANDLERS = [set_ttl, swap_macs, bump_port]
SEPARATORS = [even_id, is_udp, ttl_small]
SPLITTERS = [(mod3, 3), (mod4_range, 3)]


def build_random(nf, seed: int) -> None:
    rng = random.Random(seed)
    free_ports = list(range(1, NPORTS))

    def grow(flow, depth: int) -> None:
        while True:
            choice = rng.random()
            if depth >= 3 or choice < 0.2:
                if free_ports and rng.random() < 0.85:
                    nf.sender(flow, free_ports.pop(0))
                else:
                    nf.stopper(flow)
                return
            if choice < 0.5:
                nf.handler(flow, rng.choice(HANDLERS))
            elif choice < 0.55:
                nf.vector_handler(flow, vector_swap)
            elif choice < 0.8:
                other = nf.separator(flow, rng.choice(SEPARATORS))
                grow(other, depth + 1)
                depth += 1
            else:
                fn, n = rng.choice(SPLITTERS)
                for out in nf.splitter(flow, fn, n):
                    grow(out, depth + 1)
                return

    grow(nf.receiver(0), 0)


def run_graph(rig, seed: int, mode: str, frames: list[bytes]):
    r = rig(NPORTS, mode=mode, batch_size=32)
    build_random(r.nf, seed)
    r.feed(0, frames)
    stats = r.run()
    paths = {n["path"] for n in stats["nodes"] if "path" in n}
    assert paths <= {mode}, paths
    outputs = [r.collect(p) for p in range(1, NPORTS)]
    drops = {}
    for n in stats["nodes"]:
        for reason, count in n["dropped"].items():
            drops[reason] = drops.get(reason, 0) + count
    return outputs, drops


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_compiled_and_interpreted_agree(rig, seed):
    frames = [udp_frame(k, tcp=k % 5 == 0, size=64 + k % 7) for k in range(400)]
    compiled = run_graph(rig, seed, "compiled", frames)
    interpreted = run_graph(rig, seed, "interpreted", frames)
    assert compiled == interpreted
    assert sum(len(x) for x in compiled[0]) + sum(compiled[1].values()) == 400
