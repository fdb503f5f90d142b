"""`pktflow decode` and the interim `pktflow demo`, run as a user runs them."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import wrpcap

from pktflow.cli import main
from pktflow.packet.cli import demo_frames, run_demo


def _capture(tmp_path: Path) -> Path:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pkts = [
        eth / IP(src="111.2.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=5678, flags="SA"),
        eth / IP(src="10.1.1.1", dst="10.1.1.2") / UDP(sport=5353, dport=53) / b"q",
        eth / IP(src="10.1.1.1", dst="10.1.1.3") / ICMP(type=8),
        eth / ARP(psrc="192.168.1.1", pdst="192.168.1.2"),
        eth / IPv6(src="fe80::1", dst="2001:db8::2") / UDP(sport=546, dport=547),
        eth / Dot1Q(vlan=10) / IP(src="1.1.1.1", dst="2.2.2.2") / UDP(),
        eth / IP(src="3.3.3.3", dst="4.4.4.4", chksum=0x1234) / UDP(),
        Ether(bytes(eth / IP(src="5.5.5.5", dst="6.6.6.6") / TCP())[:40]),  # IP length past the end
    ]
    for k, p in enumerate(pkts):
        p.time = 1_700_000_000 + k / 1000
    path = tmp_path / "mixed.pcap"
    wrpcap(str(path), pkts)
    return path


def _rows(out: str) -> dict[str, str]:
    """Table rows by their packet number."""
    rows = {}
    for line in out.splitlines():
        first = line.split("│")[0].strip()
        if first.isdigit():
            rows[first] = line
    return rows


def test_decode_prints_one_row_per_packet_with_fields(tmp_path, capsys):
    path = _capture(tmp_path)
    assert main(["decode", str(path)]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 8 and "8 packets from" in out and "(pcap, us timestamps)" in out
    assert all(s in rows["1"] for s in ("eth/ipv4/tcp", "111.2.0.1:1234", "10.0.0.2:5678",
                                        "[SA]"))
    assert "0.001000" in rows["2"] and "10.1.1.2:53" in rows["2"]
    assert "eth/ipv4/icmp" in rows["3"] and "echo request" in rows["3"]
    assert "eth/arp" in rows["4"] and "192.168.1.2" in rows["4"] and "who-has" in rows["4"]
    assert "[fe80::1]:546" in rows["5"] and "[2001:db8::2]:547" in rows["5"]
    assert "eth/vlan/ipv4/udp" in rows["6"] and "vlan 10" in rows["6"]
    assert "bad ipv4 checksum" in rows["7"]
    assert "malformed L3" in rows["8"] and "bad" not in rows["1"] + rows["2"]


def test_decode_count_limits_rows(tmp_path, capsys):
    assert main(["decode", "--count", "3", str(_capture(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert list(_rows(out)) == ["1", "2", "3"] and "raise --count" in out


def test_decode_reports_damage_after_the_good_packets(tmp_path, capsys):
    path = _capture(tmp_path)
    path.write_bytes(path.read_bytes()[:-7])
    assert main(["decode", str(path)]) == 1
    out = capsys.readouterr().out
    assert len(_rows(out)) == 7
    assert "error:" in out and "mixed.pcap: truncated record at offset" in out


@pytest.mark.parametrize("content, message", [
    (None, "cannot open"),
    (b"GIF89a not a capture", "not a pcap or pcapng file"),
])
def test_decode_bad_files_give_clear_errors(tmp_path, capsys, content, message):
    path = tmp_path / "bad.pcap"
    if content is not None:
        path.write_bytes(content)
    assert main(["decode", str(path)]) == 1
    out = capsys.readouterr().out
    assert "error:" in out and "bad.pcap" in out and message in out


def test_demo_round_trips_and_agrees_with_tcpdump(capsys):
    assert run_demo(argparse.Namespace()) == 0
    assert run_demo(argparse.Namespace()) == 0  # its wire name is free again
    assert "wire" not in capsys.readouterr().err
    assert run_demo(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    assert "bytes identical to what was built: yes" in out
    assert len(_rows(out)) == len(demo_frames())
    assert "eth/ipv4/udp/vxlan" in out and "malformed L3" in out
    if shutil.which("tcpdump"):
        assert "ICMP6, neighbor solicitation, who has 2001:db8::2" in out
        assert "VXLAN" in out and "vni 42" in out


def test_command_line_entry_point(tmp_path):
    path = _capture(tmp_path)
    done = subprocess.run([sys.executable, "-m", "pktflow", "decode", "-c", "1", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "111.2.0.1:1234" in done.stdout and len(_rows(done.stdout)) == 1
