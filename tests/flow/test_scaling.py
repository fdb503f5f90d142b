"""The scheduler clones a segment whose clones do not keep up with its input (a growing,
full or slowly draining backlog) and retires idle clones.

Bounded: each test feeds for about a second and waits at most a few seconds.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pktflow.packet import meta as M
from tests.memrig import node, udp_frame

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


def crawl(pkts, mask):
    """About ten times `burn`'s work per packet: a few thousand packets keep one clone
    busy for longer than a second."""
    for i in range(len(pkts)):
        if mask[i]:
            x = pkts[i].ipv4.ttl
            for j in range(20000):
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

    def burst(self, reserve: int = 512) -> None:
        """Queue up to per_tick frames, leaving `reserve` buffers free in the pool."""
        pool = self.r.pool
        take = min(self.per_tick, pool.available - reserve)
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


def prefill(r, count: int) -> None:
    """Queue `count` frames on the NF's port 0 at once (a wire that delivered a burst at
    full speed); they come out of the NF's pool, so they fill it."""
    template = np.frombuffer(udp_frame(1), dtype=np.uint8)
    pool = r.pool
    batch = pool.alloc(count)
    rows = batch.idx[:count]
    pool.data[rows, pool.headroom:pool.headroom + len(template)] = template
    pool.meta[rows, M.START] = pool.headroom
    pool.meta[rows, M.LEN] = len(template)
    assert r.peer[0].send(batch) == count


def wait_for_clones(r, want: int, seconds: float) -> int:
    """Clones of the vector handler once it has `want`, or after `seconds`."""
    deadline = time.monotonic() + seconds
    while clones(r) < want and time.monotonic() < deadline:
        time.sleep(0.02)
    return clones(r)


def make(rig, fn, send: bool = False, **options):
    """receiver 0 -> vector handler `fn` -> stopper (or sender 1 with `send`)."""
    r = rig(2, pool_size=16384, batch_size=64, scheduler_interval=0.1, cores=2)
    f = r.nf.receiver(0)
    r.nf.vector_handler(f, fn, mode="compiled", **options)
    if send:
        r.nf.sender(f, 1)
    else:
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


def test_draining_backlog_too_slowly_gets_a_clone(rig):
    # The whole burst is queued before the NF starts: the backlog only ever shrinks, yet
    # one clone would need seconds to empty it.
    r = make(rig, crawl, send=True)
    prefill(r, 12000)
    with r.nf:
        grown = wait_for_clones(r, 2, 3.0)
        assert r.nf.ports[0].queued > 0  # still draining when the clone came
    assert grown >= 2
    assert node(r.nf.stats(), "vector_handler")["peak_clones"] >= 2
    assert r.nf.stats()["conservation"]["balanced"]


def test_input_held_full_by_a_dry_pool_gets_a_clone(rig):
    # A full-speed source bounded by the pool: every freed buffer is queued again at once,
    # so the backlog stays flat near the pool's size.
    r = make(rig, burn, send=True)
    prefill(r, r.pool.available - 256)
    feeder = Feeder(r, per_tick=4096)
    stop = threading.Event()

    def keep_full() -> None:
        while not stop.is_set():
            r.collect(1)  # the far end takes what the NF sends: buffers come free
            feeder.burst(reserve=0)
            time.sleep(0.001)

    thread = threading.Thread(target=keep_full, daemon=True)
    with r.nf:
        thread.start()
        try:
            grown = wait_for_clones(r, 2, 3.0)
            backlog = r.nf.ports[0].queued
        finally:
            stop.set()
            thread.join()
    assert backlog > 0.75 * r.pool.buffers
    assert grown >= 2


def test_trivial_handler_with_the_same_burst_stays_single(rig):
    r = make(rig, trivial, send=True)
    prefill(r, 12000)
    with r.nf:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert clones(r) == 1
            time.sleep(0.05)
    stats = r.nf.stats()
    assert node(stats, "vector_handler")["in"] == 12000
    assert node(stats, "vector_handler")["peak_clones"] == 1


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
