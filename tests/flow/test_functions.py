"""Every flow function through memory ports: exact counts, contents and conservation."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.memrig import node, packet_number, udp_frame

MODES = ["compiled", "interpreted"]


def swap_macs(pkt):
    src = pkt.eth.src
    pkt.eth.src = pkt.eth.dst
    pkt.eth.dst = src


def even_id(pkt):
    return pkt.ipv4.id % 2 == 0


def is_tcp(pkt):
    return pkt.has_tcp


def by_id_mod4(pkt):
    return pkt.ipv4.id % 4


@pytest.mark.parametrize("mode", MODES)
def test_handler_rewrites_every_packet(rig, mode):
    r = rig(2, mode=mode)
    f = r.nf.receiver(0)
    r.nf.handler(f, swap_macs)
    r.nf.sender(f, 1)
    frames = [udp_frame(k) for k in range(1000)]
    r.feed(0, frames)
    stats = r.run()
    out = r.collect(1)
    assert [packet_number(x) for x in out] == list(range(1000))  # one clone keeps order
    assert all(x[0:6] == f[6:12] and x[6:12] == f[0:6] and x[12:] == f[12:]
               for x, f in zip(out, frames, strict=True))
    assert node(stats, "handler")["path"] == mode
    assert node(stats, "sender")["out"] == 1000
    assert stats["ports"]["1"]["tx_packets"] == 1000
    assert stats["ports"]["0"]["rx_packets"] == 1000


@pytest.mark.parametrize("mode", MODES)
def test_handler_drop_keeps_true(rig, mode):
    r = rig(2, mode=mode)
    f = r.nf.receiver(0)
    r.nf.handler_drop(f, even_id)
    r.nf.sender(f, 1)
    r.feed(0, [udp_frame(k) for k in range(500)])
    stats = r.run()
    assert [packet_number(x) for x in r.collect(1)] == list(range(0, 500, 2))
    assert node(stats, "handler_drop")["dropped"] == {"handler-drop": 250}


@pytest.mark.parametrize("mode", MODES)
def test_separator_true_stays_false_leaves(rig, mode):
    r = rig(3, mode=mode)
    f = r.nf.receiver(0)
    udp = r.nf.separator(f, is_tcp)
    r.nf.sender(f, 1)
    r.nf.sender(udp, 2)
    r.feed(0, [udp_frame(k, tcp=k % 3 == 0) for k in range(300)])
    r.run()
    assert [packet_number(x) for x in r.collect(1)] == list(range(0, 300, 3))
    assert [packet_number(x) for x in r.collect(2)] == [k for k in range(300) if k % 3]


@pytest.mark.parametrize("mode", MODES)
def test_splitter_index_out_of_range_is_counted(rig, mode):
    r = rig(4, mode=mode)
    flows = r.nf.splitter(r.nf.receiver(0), by_id_mod4, 3)
    for k, out in enumerate(flows):
        r.nf.sender(out, k + 1)
    r.feed(0, [udp_frame(k) for k in range(400)])
    stats = r.run()
    for k in range(3):
        assert [packet_number(x) for x in r.collect(k + 1)] == list(range(k, 400, 4))
    assert node(stats, "splitter")["dropped"] == {"splitter-range": 100}


def vector_swap(pkts, mask):
    for i in range(len(pkts)):
        if mask[i]:
            src = pkts[i].eth.src
            pkts[i].eth.src = pkts[i].eth.dst
            pkts[i].eth.dst = src


def vector_is_tcp(pkts, mask, answers):
    for i in range(len(pkts)):
        answers[i] = mask[i] and pkts[i].has_tcp


def vector_mod3(pkts, mask, answers):
    for i in range(len(pkts)):
        answers[i] = pkts[i].ipv4.id % 3


@pytest.mark.parametrize("mode", MODES)
def test_vector_forms(rig, mode):
    r = rig(5, mode=mode, batch_size=32)
    nf = r.nf
    f = nf.receiver(0)
    nf.vector_handler(f, vector_swap)
    other = nf.vector_separator(f, vector_is_tcp)
    nf.sender(f, 1)
    for k, out in enumerate(nf.vector_splitter(other, vector_mod3, 3)):
        nf.sender(out, k + 2)
    frames = [udp_frame(k, tcp=k % 2 == 0) for k in range(600)]
    r.feed(0, frames)
    stats = r.run()
    tcp_out = r.collect(1)
    assert [packet_number(x) for x in tcp_out] == list(range(0, 600, 2))
    assert tcp_out[0][:6] == frames[0][6:12]  # the vector handler swapped the MACs
    for k in range(3):
        assert [packet_number(x) for x in r.collect(k + 2)] == [
            j for j in range(1, 600, 2) if j % 3 == k]
    assert node(stats, "vector_handler")["path"] == mode


def test_vector_handler_drop(rig):
    r = rig(2)

    def keep_small(pkts, mask, answers):
        for i in range(len(pkts)):
            answers[i] = pkts[i].ipv4.id < 10

    f = r.nf.receiver(0)
    r.nf.vector_handler_drop(f, keep_small)
    r.nf.sender(f, 1)
    r.feed(0, [udp_frame(k) for k in range(100)])
    stats = r.run()
    assert [packet_number(x) for x in r.collect(1)] == list(range(10))
    assert node(stats, "vector_handler_drop")["dropped"] == {"handler-drop": 90}


def test_partitioner_sequence_is_exact_across_batches(rig):
    r = rig(3, batch_size=7)  # 7 does not divide the 5+3 cycle: boundaries fall anywhere
    f = r.nf.receiver(0)
    second = r.nf.partitioner(f, 5, 3)
    r.nf.sender(f, 1)
    r.nf.sender(second, 2)
    r.feed(0, [udp_frame(k) for k in range(1000)])
    r.run()
    first_ids = [packet_number(x) for x in r.collect(1)]
    second_ids = [packet_number(x) for x in r.collect(2)]
    assert first_ids == [k for k in range(1000) if k % 8 < 5]
    assert second_ids == [k for k in range(1000) if k % 8 >= 5]


def test_merger_takes_turns(rig):
    # One core: the scheduler makes no clones, whose overlap would reorder an input.
    r = rig(3, batch_size=16, cores=(min(os.sched_getaffinity(0)),))
    a, b = r.nf.receiver(0), r.nf.receiver(1)
    merged = r.nf.merger(a, b)
    # A slow (interpreted) handler behind the merger lets both inputs build a backlog.
    r.nf.handler(merged, swap_macs, mode="interpreted")
    r.nf.sender(merged, 2)
    r.feed(0, [udp_frame(k) for k in range(2000)])
    r.feed(1, [udp_frame(10000 + k) for k in range(2000)])
    stats = r.run()
    out = [packet_number(x) for x in r.collect(2)]
    assert sorted(out) == list(range(2000)) + list(range(10000, 12000))
    # Each input keeps its own order.
    assert [k for k in out if k < 10000] == list(range(2000))
    assert node(stats, "merger")["in"] == 4000


def test_merger_source_takes_a_batch_from_each_waiting_input_in_turn(pool):
    # The merger's policy on its own (the graph test above shows counts and order; when
    # its inputs fill depends on how the OS schedules the receiver threads).
    import numpy as np

    from pktflow.flow.ring import Ring
    from pktflow.flow.runtime import RingSource
    from pktflow.packet import Batch

    rings = [Ring(4096, "a"), Ring(4096, "b"), Ring(4096, "c")]
    sizes = (100, 40, 70)
    for number, (ring, size) in enumerate(zip(rings, sizes, strict=True)):
        ring.push(np.arange(size, dtype=np.int32) + 1000 * number, 0, size)
    source = RingSource(None, rings, None)
    batch = Batch(pool, 16)
    order = []
    while source.poll(batch):
        taken = {int(b) // 1000 for b in batch.idx[: batch.n]}
        order.append(min(taken))  # the input the batch started from
        batch.n = 0
    # Turns go round the inputs that still have packets: a, b, c, a, b, c, ...
    assert order[:9] == [0, 1, 2] * 3
    assert sum(sizes) == 210 and len(order) == 14  # 210 packets, 16 a batch, no gap


def test_copier_copies_are_independent(rig):
    r = rig(3)

    def mark_copy(pkt):
        pkt.eth.dst = "02:ff:ff:ff:ff:ff"
        pkt.ipv4.ttl = 1

    f = r.nf.receiver(0)
    copies = r.nf.copier(f)
    r.nf.handler(copies, mark_copy)
    r.nf.sender(f, 1)
    r.nf.sender(copies, 2)
    frames = [udp_frame(k) for k in range(300)]
    r.feed(0, frames)
    stats = r.run()
    originals, copied = r.collect(1), r.collect(2)
    assert originals == frames  # changing the copies left the originals alone
    assert len(copied) == 300
    assert all(c[:6] == b"\x02\xff\xff\xff\xff\xff" and c[22] == 1 and c[14:22] == o[14:22]
               for c, o in zip(copied, frames, strict=True))
    cons = stats["conservation"]
    assert cons["entered"] == {"received": 300, "generated": 0, "copied": 300}
    assert cons["ended"]["sent"] == 600


def test_stopper_counts_what_it_drops(rig):
    r = rig(2)
    f = r.nf.receiver(0)
    rest = r.nf.separator(f, even_id)
    r.nf.sender(f, 1)
    r.nf.stopper(rest)
    r.feed(0, [udp_frame(k) for k in range(200)])
    stats = r.run()
    assert len(r.collect(1)) == 100
    assert node(stats, "stopper")["dropped"] == {"stopped": 100}
    assert stats["conservation"]["ended"] == {"sent": 100, "stopped": 100}


def fill_udp(pkt, ctx):
    pkt.init_ipv4_udp(18)
    pkt.ipv4.src = "192.0.2.1"
    pkt.udp.dst_port = 4242
    ctx[0] += 1


def fill_vector(pkts, ctx):
    for i in range(len(pkts)):
        pkts[i].init_ipv4_udp(18)
        pkts[i].udp.dst_port = 7


@pytest.mark.parametrize("mode", MODES)
def test_generator_rate_and_contents(rig, mode):
    r = rig(2, mode=mode, batch_size=64)
    ctx = np.zeros(1, dtype=np.int64)
    f = r.nf.generator(fill_udp, rate=20000, ctx=ctx)
    r.nf.sender(f, 1)
    stats = r.nf.run(0.5)
    out = r.collect(1)
    generated = node(stats, "generator")["in"]
    assert generated == len(out) == int(ctx[0])
    assert 5000 <= generated <= 12000  # 20 kpps for 0.5 s
    assert len(out[0]) == 60 and out[0][26:30] == bytes([192, 0, 2, 1])
    assert int.from_bytes(out[0][36:38], "big") == 4242


def test_vector_generator_unpaced(rig):
    r = rig(2, batch_size=64)
    f = r.nf.vector_generator(fill_vector)
    r.nf.stopper(f)
    stats = r.nf.run(0.3)
    gen = node(stats, "vector_generator")
    assert gen["in"] > 1000
    assert node(stats, "stopper")["dropped"]["stopped"] == gen["in"] - sum(
        gen["dropped"].values())
    assert stats["conservation"]["balanced"]


def test_malformed_packets_flow_on_to_user_functions(rig):
    r = rig(2, mode="interpreted")
    seen = []

    def look(pkt):
        seen.append(pkt.malformed)

    f = r.nf.receiver(0)
    r.nf.handler(f, look)
    r.nf.sender(f, 1)
    good = udp_frame(1)
    truncated_ip = good[:14 + 10]  # an IPv4 header cut short
    r.feed(0, [good, truncated_ip, b"\x01\x02\x03"])
    r.run()
    assert seen == [False, True, True]
    assert r.collect(1) == [good, truncated_ip, b"\x01\x02\x03"]


def test_port_mac_and_ports_in_stats(rig):
    r = rig(2)
    assert r.nf.port_mac(0) == r.nf.ports[0].mac
    assert r.nf.port_mac(1) != r.nf.port_mac(0)
    f = r.nf.receiver(0)
    r.nf.sender(f, 1)
    r.feed(0, [udp_frame(k, size=100) for k in range(10)])
    stats = r.run()
    assert stats["ports"]["1"]["tx_bytes"] == 1000
    assert stats["ports"]["0"]["mac"] == str(r.nf.port_mac(0))
