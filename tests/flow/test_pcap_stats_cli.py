"""pcap reader and writer nodes, pcap ports, statistics over HTTP, the command line."""

from __future__ import annotations

import json
import logging
import time
import urllib.request

import pytest
from scapy.utils import rdpcap, wrpcap

from pktflow import flow
from pktflow.flow import FlowConfig, System
from pktflow.flow.stats import prometheus
from tests.memrig import assert_conserved, node, packet_number, udp_frame


def ttl_to_7(pkt):
    pkt.ipv4.ttl = 7


def write_input(path, count: int) -> list[bytes]:
    frames = [udp_frame(k, size=60 + k % 40) for k in range(count)]
    wrpcap(str(path), [bytes(f) for f in frames])
    return frames


def test_pcap_reader_handler_writer(tmp_path):
    frames = write_input(tmp_path / "in.pcap", 150)
    nf = System(FlowConfig(pool_size=1024, batch_size=32))
    f = nf.pcap_reader(tmp_path / "in.pcap", repeat=2)
    nf.handler(f, ttl_to_7)
    nf.pcap_writer(f, tmp_path / "out.pcap")
    stats = nf.run(10, until_idle=0.3)
    assert_conserved(nf)
    out = [bytes(p) for p in rdpcap(str(tmp_path / "out.pcap"))]  # flushed by stop()
    assert len(out) == 300
    assert [packet_number(x) for x in out] == list(range(150)) * 2
    assert all(x[22] == 7 and x[:22] == f[:22] and x[24:] != b"" for x, f in
               zip(out, frames * 2, strict=True))
    assert node(stats, "pcap_writer")["out"] == 300
    nf.close()


def test_pcap_port_in_the_port_table(tmp_path):
    write_input(tmp_path / "in.pcap", 40)
    nf = System(FlowConfig(pool_size=1024), [f"0=pcap:{tmp_path}/in.pcap,{tmp_path}/out.pcap"])
    f = nf.receiver(0)
    nf.handler(f, ttl_to_7)
    nf.sender(f, 0)
    stats = nf.run(10, until_idle=0.3)
    nf.close()  # closing the port table flushes the file
    assert stats["ports"]["0"]["rx_packets"] == 40
    assert len(rdpcap(str(tmp_path / "out.pcap"))) == 40


def test_pcap_reader_bad_file_is_a_clear_error(tmp_path):
    nf = System(FlowConfig(pool_size=256))
    with pytest.raises(flow.FlowError, match=r"pcap_reader\(\).*nope.pcap"):
        nf.pcap_reader(tmp_path / "nope.pcap")
    with pytest.raises(flow.FlowError, match="repeat=-1"):
        nf.pcap_reader(tmp_path / "nope.pcap", repeat=-1)


def test_stats_over_http_json_and_prometheus(rig):
    r = rig(2, stats="127.0.0.1:0")
    f = r.nf.receiver(0)
    r.nf.handler(f, ttl_to_7, name="ttl")
    r.nf.sender(f, 1)
    r.feed(0, [udp_frame(k) for k in range(50)])
    with r.nf:
        host, port = r.nf.stats_address
        assert host == "127.0.0.1"
        deadline = 200
        while r.nf.stats()["ports"]["1"]["tx_packets"] < 50 and deadline:
            deadline -= 1
            __import__("time").sleep(0.01)
        with urllib.request.urlopen(f"http://{host}:{port}/stats", timeout=5) as reply:
            doc = json.loads(reply.read())
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    assert node(doc, "handler")["in"] == 50 and node(doc, "handler")["clones"] == 1
    assert 'pktflow_node_in_packets_total{node="1",op="handler",name="ttl"} 50' in text
    assert 'pktflow_node_clones{node="1",op="handler",name="ttl"} 1' in text
    assert "# TYPE pktflow_port_tx_packets_total counter" in text
    assert 'pktflow_entered_packets_total{how="received"} 50' in text
    assert_conserved(r.nf)


def test_prometheus_escapes_labels():
    snap = {"nodes": [{"id": 0, "op": "handler", "name": 'a"b\\c', "in": 1, "out": 1,
                       "dropped": {"handler-error": 2}, "clones": 1}],
            "ports": {}, "rings": [], "conservation": {"entered": {}, "ended": {}}}
    text = prometheus(snap)
    assert 'name="a\\"b\\\\c",reason="handler-error"} 2' in text


def test_periodic_log_line(rig, caplog):
    r = rig(2, log_interval=0.1)
    f = r.nf.receiver(0)
    r.nf.sender(f, 1)
    r.feed(0, [udp_frame(k) for k in range(30)])
    with caplog.at_level(logging.INFO, logger="pktflow.flow"):
        r.nf.run(0.5)
    lines = [m for m in caplog.messages if m.startswith("pktflow: in ")]
    assert lines and "totals in 30 sent 30 dropped 0" in lines[-1]
    assert "clones receiver port 0=1" in lines[-1]


def build_swap(nf):
    f = nf.receiver(0)
    nf.handler(f, ttl_to_7)
    nf.sender(f, 1)


def test_a_graph_of_finite_sources_stops_when_they_are_played(tmp_path):
    # No duration: the run ends because every source (a pcap file) has nothing more.
    write_input(tmp_path / "in.pcap", 300)
    nf = System(FlowConfig(pool_size=1024, batch_size=32),
                [f"0=pcap:{tmp_path}/in.pcap,{tmp_path}/out.pcap"])
    f = nf.receiver(0)
    nf.handler(f, ttl_to_7)
    nf.sender(f, 0)
    other = nf.pcap_reader(tmp_path / "in.pcap", repeat=2)
    nf.pcap_writer(other, tmp_path / "out2.pcap")
    stats = nf.run()
    nf.close()
    assert_conserved(nf)
    assert stats["ports"]["0"]["tx_packets"] == 300
    assert len(rdpcap(str(tmp_path / "out.pcap"))) == 300
    assert len(rdpcap(str(tmp_path / "out2.pcap"))) == 600


def test_main_runs_a_build_function(tmp_path, capsys):
    write_input(tmp_path / "in.pcap", 25)
    argv = ["--port", f"0=pcap:{tmp_path}/in.pcap", "--port", f"1=pcap:,{tmp_path}/out.pcap",
            "--duration", "0.5", "--batch", "16", "--cores", "1"]
    assert flow.main(build_swap, argv) == 0
    out = capsys.readouterr().out
    assert "conservation: entered 25 ended 25 (balanced)" in out
    assert [x[22] for x in map(bytes, rdpcap(str(tmp_path / "out.pcap")))] == [7] * 25


def test_main_reports_bad_options(capsys, tmp_path):
    assert flow.main(build_swap, ["--port", "0=nosuch:x", "--duration", "0"]) == 2
    assert 'unknown driver "nosuch"' in capsys.readouterr().err
    assert flow.main(build_swap, ["--port", "0=mem:only0", "--duration", "0"]) == 2
    assert "unknown port 1" in capsys.readouterr().err
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"ring_size": -1}')
    assert flow.main(build_swap, ["--config", str(cfg)]) == 2
    assert "bad.json: ring_size: -1 is wrong" in capsys.readouterr().err


def test_pktflow_flow_run_command(tmp_path, capsys):
    from pktflow.cli import main as pktflow_main

    write_input(tmp_path / "in.pcap", 12)
    program = tmp_path / "nf.py"
    program.write_text("def build(nf):\n    f = nf.receiver(0)\n    nf.sender(f, 1)\n")
    config = tmp_path / "nf.json"
    config.write_text(json.dumps({"batch_size": 8, "ports": {
        "0": f"pcap:{tmp_path}/in.pcap", "1": f"pcap:,{tmp_path}/out.pcap"}}))
    assert pktflow_main(["flow", "run", str(program), "--config", str(config),
                         "--duration", "0.4"]) == 0
    assert "entered 12 ended 12 (balanced)" in capsys.readouterr().out
    assert len(rdpcap(str(tmp_path / "out.pcap"))) == 12


def test_statistics_show_the_active_rules_version(tmp_path):
    from pktflow.acl import L3Rules

    path = tmp_path / "rules.conf"
    path.write_text("ANY ANY ANY ANY ANY Accept\n")
    rules = L3Rules.load(path).watch()

    def accepted(pkt):
        return rules.permit(pkt)

    nf = System(FlowConfig(pool_size=1024), ["0=mem:rules-a", "1=mem:rules-b"])
    f = nf.receiver(0)
    nf.stopper(nf.separator(f, accepted))
    nf.sender(f, 1)
    try:
        with nf:
            (table,) = nf.stats()["tables"]
            assert (table["file"], table["version"], table["nodes"]) == (str(path), 1, ["accepted"])
            path.write_text("ANY ANY ANY ANY ANY Reject\n")
            deadline = time.monotonic() + 5
            while nf.stats()["tables"][0]["version"] == 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            snap = nf.stats()
            assert snap["tables"][0]["version"] == 2
            assert f'pktflow_rules_version{{file="{path}"}} 2' in prometheus(snap)
    finally:
        rules.stop()
        nf.close()
