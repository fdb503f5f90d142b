"""The scheduler clones a segment whose input keeps growing and retires idle clones.

Bounded: each test feeds for about a second and waits at most a few seconds.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pktflow.packet import meta as M
from tests.flow.conftest import node, udp_frame

pytestmark = pytest.mark.skipif(
    len(__import__("os").sched_getaffinity(0)) < 2, reason="scaling needs two cores")


def burn(pkts, mask):
    """Real CPU work per packet inside the compiled kernel (its result is kept)."""
    for i in range(len(pkts)):
        if mask[i]:
            x = pkts[i].ipv4.ttl
            for j in range(2000):
                x = (x * 31 + j) % 1000003
            pkts[i].ipv4.ttl = x & 0xFF


def trivial(pkts, mask):
    for i in range(len(pkts)):
        if mask[i]:
            pkts[i].ipv4.ttl = 9


class Feeder:
    """Puts `per_tick` copies of one frame on the NF's port 0 every `tick` seconds."""

    def __init__(self, r, per_tick: int = 1000) -> None:
        self.r = r
        self.per_tick = per_tick
        self.template = np.frombuffer(udp_frame(1), dtype=np.uint8)

    def burst(self) -> None:
        pool = self.r.pool
        take = min(self.per_tick, pool.available - 512)
        if take <= 0:
            return
        batch = pool.alloc(take)
        rows = batch.idx[:take]
        pool.data[rows, pool.headroom:pool.headroom + len(self.template)] = self.template
        pool.meta[rows, M.START] = pool.headroom
        pool.meta[rows, M.LEN] = len(self.template)
        self.r.peer[0].send(batch)

    def feed_for(self, seconds: float, tick: float = 0.005) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.burst()
            time.sleep(tick)


def make(rig, fn, **options):
    r = rig(2, pool_size=16384, batch_size=64, scheduler_interval=0.1, cores=2)
    f = r.nf.receiver(0)
    r.nf.vector_handler(f, fn, mode="compiled", **options)
    r.nf.stopper(f)
    return r


def clones(r) -> int:
    return node(r.nf.stats(), "vector_handler")["clones"]


def test_slow_handler_gets_a_clone_and_gives_it_back(rig):
    r = make(rig, burn)
    feeder = Feeder(r)
    with r.nf:
        feeder.feed_for(1.5)
        grown = clones(r)
        # Input stops: the clones drain the backlog, idle, and one is retired.
        deadline = time.monotonic() + 8
        while clones(r) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        shrunk = clones(r)
    stats = r.nf.stats()
    assert grown >= 2, stats
    assert shrunk == 1
    assert node(stats, "vector_handler")["peak_clones"] >= 2
    assert stats["conservation"]["balanced"]


def test_trivial_handler_stays_single(rig):
    r = make(rig, trivial)
    feeder = Feeder(r)
    with r.nf:
        feeder.feed_for(1.0)
        assert clones(r) == 1
    stats = r.nf.stats()
    assert node(stats, "vector_handler")["peak_clones"] == 1
    assert node(stats, "vector_handler")["in"] > 10000
    assert stats["conservation"]["balanced"]


def test_fixed_and_ordered_clone_counts(rig):
    r = make(rig, burn, clones=2)
    feeder = Feeder(r, per_tick=200)
    with r.nf:
        assert clones(r) == 2
        feeder.feed_for(0.3)
        assert clones(r) == 2  # fixed: the scheduler leaves it alone
    r2 = make(rig, burn, ordered=True)
    with r2.nf:
        Feeder(r2).feed_for(0.6)
        assert clones(r2) == 1  # order-preserving segments are never cloned
