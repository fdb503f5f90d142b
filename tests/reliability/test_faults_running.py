"""Faults injected into a running NF on memory ports and files (no root needed): a rules
file replaced by garbage, truncated or made unreadable mid-run, a handler that raises on
some packets, a pcap file that ends mid-record. The NF keeps running, says what went
wrong (stats or log), and every packet still ends in exactly one counter."""

from __future__ import annotations

import os
import re
import struct
import time

import pytest

from pktflow.acl import L3Rules
from pktflow.flow import System
from pktflow.packet.build import frame
from tests.memrig import Rig, assert_conserved


def udp(k: int, src: str) -> bytes:
    return frame(ipv4={"src": src, "dst": "10.9.0.1", "id": k & 0xFFFF, "ttl": 64},
                 udp={"src_port": 1000 + k % 5000, "dst_port": 53}, payload=bytes(20))


@pytest.fixture
def wires():
    made: list[Rig] = []

    def make(nports: int = 3, **config) -> Rig:
        config.setdefault("pool_size", 16384)
        config.setdefault("cores", 1)
        made.append(Rig(nports, **config))
        return made[-1]

    yield make
    for w in made:
        w.close()


def rules_status(nf: System) -> dict:
    (table,) = nf.stats()["tables"]
    return table


def test_bad_rules_reload_keeps_the_old_rules_and_reports_it(wires, tmp_path):
    """Rules replaced mid-run by garbage, by a truncated file and by something unreadable:
    each time the NF keeps classifying with the last good rules, and the stats say which
    file and line (or why it cannot be read); a good file afterwards is taken."""
    path = tmp_path / "rules.conf"
    path.write_text("10.1.0.0/16 ANY ANY ANY ANY Accept\nANY ANY ANY ANY ANY Reject\n")
    rules = L3Rules.load(path).watch(interval=0.02)
    w = wires(3)

    def accepted(pkt):
        return rules.permit(pkt)

    f = w.nf.receiver(0)
    rejected = w.nf.separator(f, accepted)
    w.nf.sender(f, 1)
    w.nf.sender(rejected, 2)
    w.nf.start()
    try:
        def accepted_count(n: int) -> int:
            w.feed(0, [udp(k, "10.1.0.5") for k in range(n)])
            deadline = time.monotonic() + 10
            acc = rej = 0
            while acc + rej < n and time.monotonic() < deadline:
                acc += len(w.collect(1))
                rej += len(w.collect(2))
                time.sleep(0.01)
            assert acc + rej == n
            return acc

        assert accepted_count(200) == 200
        bad_versions = [
            ("garbage", lambda: path.write_text("not a rule table\n%% 1 2 3 4 5 6 7\n"),
             r"rules.conf:1: "),
            ("binary", lambda: path.write_bytes(os.urandom(300)), r"rules.conf: cannot read"),
            ("truncated", lambda: path.write_text("10.1.0.0/16 ANY ANY AN"),
             r"rules.conf:1: "),
            ("unreadable", lambda: (path.unlink(), path.mkdir()), r"rules.conf: cannot read"),
        ]
        for what, damage, message in bad_versions:
            failures = rules_status(w.nf)["failed_reloads"]
            damage()
            deadline = time.monotonic() + 5
            while rules_status(w.nf)["failed_reloads"] == failures:
                assert time.monotonic() < deadline, f"{what}: the reload failure was not seen"
                time.sleep(0.02)
            status = rules_status(w.nf)
            assert status["version"] == 1, what
            assert re.search(message, status["last_error"]), (what, status["last_error"])
            assert w.nf.running
            assert accepted_count(200) == 200, f"{what}: the old rules were not kept"
        path.rmdir()
        path.write_text("ANY ANY ANY ANY ANY Reject\n")
        deadline = time.monotonic() + 5
        while rules_status(w.nf)["version"] == 1:
            assert time.monotonic() < deadline, "a good file after bad ones was not loaded"
            time.sleep(0.02)
        assert accepted_count(200) == 0
    finally:
        rules.stop()
        final = w.nf.stop()
    assert_conserved(w.nf)
    assert final["conservation"]["ended"]["sent"] == 200 * (len(bad_versions) + 2)


@pytest.mark.parametrize("mode", ["compiled", "interpreted"])
def test_handler_raising_on_some_packets_counts_them_and_goes_on(wires, mode):
    """A handler that raises on every packet with TTL 13: those end as handler-error,
    every other packet is forwarded, in both execution paths, and the worker lives on."""
    w = wires(2, mode=mode)

    def picky(pkt):
        if pkt.ipv4.ttl == 13:
            raise ValueError("TTL 13 is unlucky")
        pkt.ipv4.ttl = pkt.ipv4.ttl - 1

    f = w.nf.receiver(0)
    w.nf.handler(f, picky)
    w.nf.sender(f, 1)
    frames = [udp(k, "10.2.0.1") for k in range(3000)]
    for k in range(0, 3000, 7):
        raw = bytearray(frames[k])
        raw[22] = 13  # IPv4 TTL (checksum left stale: the handler does not look)
        frames[k] = bytes(raw)
    poisoned = len(range(0, 3000, 7))
    w.nf.start()
    try:
        for at in range(0, 3000, 500):  # several batches, errors in each
            w.feed(0, frames[at:at + 500])
        out = w.wait_out(1, 3000 - poisoned)
        assert w.nf.running
    finally:
        final = w.nf.stop()
    assert_conserved(w.nf)
    (handler,) = [n for n in final["nodes"] if n["op"] == "handler"]
    assert handler["path"] == mode
    assert handler["dropped"].get("handler-error") == poisoned
    assert len(out) == 3000 - poisoned and all(raw[22] == 63 for raw in out)


def pcap_bytes(frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for k, raw in enumerate(frames):
        out += struct.pack("<IIII", k, 0, len(raw), len(raw)) + raw
    return out


@pytest.mark.parametrize("cut", ["in a record header", "in a record's data"])
def test_pcap_ending_mid_record_plays_the_whole_records_and_stops(wires, tmp_path, cut):
    frames = [udp(k, "10.3.0.1") for k in range(50)]
    data = pcap_bytes(frames)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:len(data) - (len(frames[-1]) + 8) if cut == "in a record header"
                          else len(data) - 10])
    w = wires(1)
    f = w.nf.pcap_reader(str(path))
    w.nf.sender(f, 0)
    final = w.nf.run(20)  # ends by itself once the file is played
    assert_conserved(w.nf)
    assert not w.nf.running
    assert final["conservation"]["ended"]["sent"] == 49
    assert w.collect(0) == frames[:49]
    (port,) = [p for p in final["ports"].values() if p["name"].startswith("pcap")]
    assert port["rx_errors"] == 1, port
