"""Two NF processes on two namespace hosts behind a Linux ECMP router (L4 hash): the
router spreads flows, not packets, over both, and every frame is accounted for."""

from __future__ import annotations

import pytest

from pktflow.packet.build import put
from pktflow.packet.pool import Batch, Pool
from pktflow.testbed.net import leftovers
from pktflow.testbed.scaleout import FIRST_SPORT, ScaleOut

pytestmark = pytest.mark.root
FLOWS = 64
ROUNDS = 2  # frames per flow


def test_two_instances_share_the_flows_and_every_frame_is_counted():
    tag = "sotest"
    with ScaleOut(2, work=0, tag=tag) as so:
        pool = Pool(buffers=1024, name="scaleout-sink")
        sinks = [so.lab.open_port("sink", f"packet:s{i}", pool) for i in (1, 2)]
        try:
            so.offer(FLOWS, 2000, FLOWS * ROUNDS)
            end = so.settle()
            seen: list[list[int]] = []
            for port in sinks:
                batch = Batch(pool, 256)
                while port.recv(batch, 256 - batch.n):
                    pass
                view = Pool(buffers=1, name="view")
                seen.append([int(put(view, 0, raw).udp.src_port) for raw in batch.frames()])
                pool.free(batch)
        finally:
            for port in sinks:
                port.close()
        received = so.nf_received()
    sent = FLOWS * ROUNDS
    # Counters conserved hop by hop: generator -> router -> NF hosts -> NFs -> sink.
    assert end.sent == sent and end.router_in == sent
    assert sum(end.spread) == sent
    assert received == end.spread and end.nf_out == end.spread and end.sink == end.spread
    assert [len(s) for s in seen] == end.sink
    # Spread by flow: each flow's frames all went to one instance, every flow went
    # somewhere, and each instance got 30% to 70% of the flows.
    flows = [set(s) for s in seen]
    assert not flows[0] & flows[1]
    assert flows[0] | flows[1] == set(range(FIRST_SPORT, FIRST_SPORT + FLOWS))
    for s in seen:
        assert all(s.count(p) == ROUNDS for p in set(s))
    for f in flows:
        assert 0.3 * FLOWS <= len(f) <= 0.7 * FLOWS, [len(f) for f in flows]
    assert not [n for n in leftovers()["namespaces"] if n.startswith(f"pft-{tag}-")]


def test_instance_count_is_checked():
    from pktflow.testbed.net import TestbedError

    with pytest.raises(TestbedError, match="instances must be 1..8, got 0"):
        ScaleOut(0)
