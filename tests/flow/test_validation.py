"""Graph errors are caught before start with messages naming the flow functions and lines;
user-function errors at run time are counted drops and the NF keeps running."""

from __future__ import annotations

import logging

import pytest

from pktflow.flow import FlowConfig, FlowError, System
from pktflow.flow.config import ConfigError
from tests.memrig import node, packet_number, udp_frame


def swap(pkt):
    pkt.eth.src, pkt.eth.dst = pkt.eth.dst, pkt.eth.src


def test_flow_left_open_names_its_origin(rig):
    r = rig(2)
    f = r.nf.receiver(0)
    r.nf.handler(f, swap)
    with pytest.raises(FlowError,
                       match=r"(?s)1 flow\(s\) left open.*handler swap \(test_validation"):
        r.nf.start()


def test_flow_consumed_twice(rig):
    r = rig(2)
    f = r.nf.receiver(0)
    r.nf.sender(f, 1)
    with pytest.raises(FlowError, match=r"already consumed by sender port 1 .*copier\(\)"):
        r.nf.sender(f, 0)
    with pytest.raises(FlowError, match="already consumed"):
        r.nf.handler(f, swap)


def test_unknown_port(rig):
    r = rig(2)
    with pytest.raises(FlowError, match=r"receiver\(7\): unknown port 7 .*configured ports: 0, 1"):
        r.nf.receiver(7)
    f = r.nf.receiver(0)
    with pytest.raises(FlowError, match="unknown port 3"):
        r.nf.sender(f, 3)
    with pytest.raises(FlowError, match="unknown port 9"):
        r.nf.port_mac(9)


def test_wrong_signatures():
    nf = System(FlowConfig(pool_size=256))
    f = nf.generator(lambda pkt: None)

    def three(a, b, c, d):
        return None

    with pytest.raises(FlowError, match=r"test_validation.py:\d+: handler\(\): handler three "
                                        r"takes \(pkt, ctx\)"):
        nf.handler(f, three)
    with pytest.raises(FlowError, match=r"vector handler .* takes \(pkts, mask, ctx\)"):
        nf.vector_handler(f, lambda pkt: None)
    with pytest.raises(FlowError, match="not a function"):
        nf.separator(f, 42)
    nf.stopper(f)  # the flow was not consumed by the failed calls
    nf.validate()


def test_bad_arguments():
    nf = System(FlowConfig(pool_size=256))
    f = nf.generator(lambda pkt: None)
    with pytest.raises(FlowError, match=r"n=0 must be a number of flows"):
        nf.splitter(f, lambda pkt: 0, 0)
    with pytest.raises(FlowError, match="second=0"):
        nf.partitioner(f, 3, 0)
    with pytest.raises(FlowError, match="two or more flows"):
        nf.merger(f)
    with pytest.raises(FlowError, match="same flow is given twice"):
        nf.merger(f, f)
    with pytest.raises(FlowError, match="rate=-5"):
        nf.generator(lambda pkt: None, rate=-5)
    with pytest.raises(FlowError, match="takes a flow"):
        nf.stopper("not a flow")
    with pytest.raises(FlowError, match="clones=9"):
        nf.handler(f, swap, clones=9)
    other = System(FlowConfig(pool_size=256))
    with pytest.raises(FlowError, match="belongs to another System"):
        other.stopper(f)


def test_order_preserving_segment_cannot_take_clones():
    nf = System(FlowConfig(pool_size=256, cores=2))
    f = nf.generator(lambda pkt: None)
    nf.handler(f, swap, ordered=True)
    nf.handler(f, swap, clones=2)
    nf.stopper(f)
    with pytest.raises(FlowError, match="clones=2 asked for, but handler swap .* keeps packet "
                                        "order"):
        nf.validate()


def test_graph_cannot_change_while_running(rig):
    r = rig(2)
    f = r.nf.receiver(0)
    r.nf.sender(f, 1)
    with r.nf:
        with pytest.raises(FlowError, match="cannot change while it runs"):
            r.nf.receiver(1)
        with pytest.raises(FlowError, match="already running"):
            r.nf.start()


def test_empty_graph_runs_and_reset_allows_a_new_graph(rig):
    r = rig(2)
    stats = r.nf.run(0.1)  # tutorial step 1: init only, no flows
    assert stats["nodes"] == [] and stats["conservation"]["balanced"]
    with pytest.raises(FlowError, match="call reset"):
        r.nf.start()
    r.nf.reset()
    f = r.nf.receiver(0)
    r.nf.sender(f, 1)
    r.feed(0, [udp_frame(k) for k in range(10)])
    r.run()
    assert len(r.collect(1)) == 10


def fails_on_multiples_of_5(pkt):
    if pkt.ipv4.id % 5 == 0:
        raise ValueError("five")
    pkt.ipv4.ttl = 9


@pytest.mark.parametrize("mode", ["compiled", "interpreted"])
def test_handler_errors_are_counted_and_logged(rig, mode, caplog):
    r = rig(2, mode=mode)
    f = r.nf.receiver(0)
    r.nf.handler(f, fails_on_multiples_of_5)
    r.nf.sender(f, 1)
    r.feed(0, [udp_frame(k) for k in range(100)])
    with caplog.at_level(logging.ERROR, logger="pktflow.flow"):
        stats = r.run()
    out = [packet_number(x) for x in r.collect(1)]
    h = node(stats, "handler")
    # Per packet on both paths: only the packets it raised for are lost.
    assert out == [k for k in range(100) if k % 5]
    assert h["dropped"] == {"handler-error": 20}
    assert "handler-error" in caplog.text
    if mode == "interpreted":
        assert "ValueError: five" in caplog.text and "Traceback" in caplog.text
    assert caplog.text.count("Traceback") <= 1  # rate-limited: one report per node


def fails_on_odd_ttl(pkt):
    if pkt.ipv4.ttl % 2 == 1:
        raise ValueError("odd TTL")
    pkt.ipv4.ttl -= 1


def test_raising_handler_drops_the_same_packets_on_both_paths(rig):
    """A handler raising for odd TTLs loses exactly those packets, compiled or not, and the
    packets after a failing one in the same batch are still handled and forwarded."""
    frames = []
    for k in range(600):
        raw = bytearray(udp_frame(k))
        raw[22] = (k * 7) % 256  # TTL: odd and even mixed inside every batch
        frames.append(bytes(raw))
    results = {}
    for mode in ("compiled", "interpreted"):
        r = rig(2, mode=mode, batch_size=64)
        f = r.nf.receiver(0)
        r.nf.handler(f, fails_on_odd_ttl)
        r.nf.sender(f, 1)
        r.feed(0, frames)
        stats = r.run()
        assert node(stats, "handler")["path"] == mode
        results[mode] = (node(stats, "handler")["dropped"], r.collect(1))
    # Odd TTLs raise, and so does TTL 0 (0 - 1 does not fit the field).
    kept = [k for k in range(600) if frames[k][22] % 2 == 0 and frames[k][22] > 0]
    assert results["compiled"] == results["interpreted"]
    dropped, out = results["compiled"]
    assert dropped == {"handler-error": 600 - len(kept)}
    assert [packet_number(x) for x in out] == kept
    assert all(x[22] == frames[packet_number(x)][22] - 1 for x in out)


def test_nf_keeps_running_after_errors(rig):
    r = rig(2, mode="interpreted")
    f = r.nf.receiver(0)
    r.nf.handler(f, fails_on_multiples_of_5)
    r.nf.sender(f, 1)
    with r.nf:
        r.feed(0, [udp_frame(5)])
        r.feed(0, [udp_frame(6)])
        for _ in range(200):
            if r.nf.stats()["ports"]["1"]["tx_packets"] == 1:
                break
            import time
            time.sleep(0.01)
        assert r.nf.running
    assert [packet_number(x) for x in r.collect(1)] == [6]


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="batch_size: 0 is wrong"):
        FlowConfig(batch_size=0)
    with pytest.raises(ConfigError, match="cores: CPU.* 99 not available"):
        FlowConfig(cores="0,99")
    with pytest.raises(ConfigError, match="ring_size: 8 is smaller than batch_size"):
        FlowConfig(ring_size=8, batch_size=32)
    path = tmp_path / "nf.json"
    path.write_text('{"batch_size": "big"}')
    with pytest.raises(ConfigError, match=r"nf.json: batch_size: 'big' is not a whole number"):
        FlowConfig.from_file(path)
    path.write_text('{"batchsize": 3}')
    with pytest.raises(ConfigError, match=r'nf.json: unknown setting "batchsize"'):
        FlowConfig.from_file(path)
    path.write_text('{"batch_size": 64, "stats": "9100", "ports": {"0": "mem:x"}}')
    config = FlowConfig.from_file(path)
    assert config.batch_size == 64 and config.stats == ("127.0.0.1", 9100)
    toml = tmp_path / "nf.toml"
    toml.write_text("cores = 1\nlog_interval = 2.5\n")
    assert FlowConfig.from_file(toml).cores == (sorted(__import__("os").sched_getaffinity(0))[0],)
