"""Range mode: every field steps by its increment and wraps between min and max."""

from __future__ import annotations

from collections import Counter

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from tests.pktgen.conftest import checksums_valid


def walk(start, lo, hi, inc, n):
    """The values Pktgen's range stepping gives, from `start`."""
    out, v = [], start
    for _ in range(n):
        out.append(v)
        v += inc
        if v > hi:
            v = lo
        elif v < lo:
            v = hi
    return out


def test_tutorial_step4_dst_port_50_to_60(rig):
    rig.run("set 0 size 1500", "range 0 dst port start 50", "range 0 dst port min 50",
            "range 0 dst port max 60", "range 0 dst port inc 1", "enable 0 range")
    pkts = rig.packets(0, 33)
    assert [p[TCP].dport for p in pkts] == walk(50, 50, 60, 1, 33)
    assert Counter(p[TCP].dport for p in pkts) == {port: 3 for port in range(50, 61)}
    assert all(checksums_valid(p) for p in pkts[:12])


def test_tutorial_step5_src_ip_four_sources(rig):
    rig.run("set 0 size 1500", "range 0 src ip start 111.2.0.0", "range 0 src ip min 111.2.0.0",
            "range 0 src ip max 111.2.0.3", "range 0 src ip inc 0.0.0.1", "enable 0 range")
    pkts = rig.packets(0, 400)
    counts = Counter(p[IP].src for p in pkts)
    assert counts == {f"111.2.0.{i}": 100 for i in range(4)}
    # As in Pktgen, range packets take their size from the range (64 by default), not
    # from `set size`.
    assert all(len(p) == 60 for p in pkts)
    rig.run("range 0 size start 1500")
    assert all(len(p) == 1496 for p in rig.packets(0, 4))


def test_range_defaults_follow_pktgen(rig):
    rig.run("enable 0 range")
    pkts = rig.packets(0, 300)
    # The destination walks 192.168.1.1..254 and wraps; the source stays put.
    expected = walk(1, 1, 254, 1, 300)
    assert [int(p[IP].dst.split(".")[3]) for p in pkts] == expected
    assert {p[IP].src for p in pkts} == {"192.168.0.1"}
    assert [p[TCP].sport for p in pkts[:3]] == [1234, 1235, 1236]
    assert [p[TCP].dport for p in pkts[:3]] == [5678, 5679, 5680]
    assert all(checksums_valid(p) for p in pkts[:20])


@pytest.mark.parametrize("field,get,spec", [
    ("src port", lambda p: p[UDP].sport, (65533, 65530, 65535, 2)),
    ("dst port", lambda p: p[UDP].dport, (3, 0, 4, 1)),
    ("ttl", lambda p: p[IP].ttl, (250, 10, 252, 1)),
    ("vlan", lambda p: p[Dot1Q].vlan, (4094, 100, 4095, 1)),
    ("size", lambda p: len(p) + 4, (1500, 64, 1518, 7)),
])
def test_numeric_fields_step_and_wrap(rig, field, get, spec):
    start, lo, hi, inc = spec
    rig.run("set 0 proto udp", "range 0 proto udp", "enable 0 vlan")
    rig.run(f"range 0 {field} {start} {lo} {hi} {inc}", "enable 0 range")
    pkts = rig.packets(0, 12)
    assert [get(p) for p in pkts] == walk(start, lo, hi, inc, 12)
    assert all(checksums_valid(p) for p in pkts)


@pytest.mark.parametrize("side", ["src", "dst"])
def test_ip_fields_step_and_wrap(rig, side):
    rig.run(f"range 0 {side} ip start 10.0.0.254", f"range 0 {side} ip min 10.0.0.250",
            f"range 0 {side} ip max 10.0.1.1", f"range 0 {side} ip inc 0.0.0.1",
            "enable 0 range")
    pkts = rig.packets(0, 8)
    got = [getattr(p[IP], side) for p in pkts]
    assert got == ["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1", "10.0.0.250",
                   "10.0.0.251", "10.0.0.252", "10.0.0.253"]
    assert all(checksums_valid(p) for p in pkts)


@pytest.mark.parametrize("side", ["src", "dst"])
def test_mac_fields_step_and_wrap(rig, side):
    rig.run(f"range 0 {side} mac 00:00:00:00:00:fe 00:00:00:00:00:fd 00:00:00:00:01:00 "
            f"00:00:00:00:00:01", "enable 0 range")
    pkts = rig.packets(0, 5)
    got = [getattr(p[Ether], side) for p in pkts]
    assert got == ["00:00:00:00:00:fe", "00:00:00:00:00:ff", "00:00:00:00:01:00",
                   "00:00:00:00:00:fd", "00:00:00:00:00:fe"]


def test_three_fields_step_together(rig):
    rig.run("range 0 src ip 1.0.0.1 1.0.0.1 1.0.0.2 0.0.0.1", "range 0 dst port 7 7 9 1",
            "range 0 size 64 64 66 1", "enable 0 range")
    pkts = rig.packets(0, 6)
    rows = [(p[IP].src, p[TCP].dport, len(p) + 4) for p in pkts]
    assert rows == [("1.0.0.1", 7, 64), ("1.0.0.2", 8, 65), ("1.0.0.1", 9, 66),
                    ("1.0.0.2", 7, 64), ("1.0.0.1", 8, 65), ("1.0.0.2", 9, 66)]
    assert all(checksums_valid(p) for p in pkts)


def test_disable_range_returns_to_single(rig):
    rig.run("range 0 dst port 1 1 5 1", "enable 0 range", "disable 0 range")
    assert {p[TCP].dport for p in rig.packets(0, 5)} == {5678}


def test_range_page_shows_settings(rig):
    rig.run("range 0 src ip min 111.2.0.0", "range 0 dst port max 60")
    page = rig.gen.execute("page range")
    assert "111.2.0.0" in page and "src.ip" in page
    assert any(line.startswith("    max") and " 60" in line for line in page.splitlines())
