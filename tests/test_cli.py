"""`pktflow decode`, run as a user runs it."""

from __future__ import annotations

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
from pktflow.packet.build import frame
from pktflow.packet.pcap import PcapWriter
from pktflow.packet.pool import Pool


def sample_frames() -> list[bytes]:
    """One frame of each kind pktflow parses, plus a malformed one."""
    eth = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
    v4 = {"src": "111.2.0.1", "dst": "10.0.0.2"}
    v6 = {"src": "2001:db8::1", "dst": "2001:db8::2"}
    broken = bytearray(frame(eth=eth, ipv4=v4, tcp={}))
    broken[14] = 0x43  # IHL 3: shorter than an IPv4 header
    return [
        frame(eth=eth, ipv4=v4, tcp={}, payload=b"pktgen defaults 1234 -> 5678"),
        frame(eth=eth, ipv4=v4, udp={"src_port": 5353, "dst_port": 53}, payload=b"\0" * 12),
        frame(eth=eth, ipv4=v4, icmp={"type": 8, "id": 7, "seq": 1}, payload=b"ping"),
        frame(eth={"src": "02:00:00:00:00:01", "dst": "ff:ff:ff:ff:ff:ff"},
              arp={"op": 1, "sha": "02:00:00:00:00:01", "spa": "10.0.0.1",
                   "tpa": "10.0.0.2"}),
        frame(eth=eth, ipv6=v6, udp={"dst_port": 4000}, payload=b"v6"),
        frame(eth={"src": "02:00:00:00:00:01", "dst": "33:33:ff:00:00:02"},
              ipv6={"src": "fe80::1", "dst": "ff02::1:ff00:2", "hop_limit": 255},
              icmp6={"type": 135, "target": "2001:db8::2", "nd_opt_type": 1, "nd_opt_len": 1,
                     "nd_lladdr": "02:00:00:00:00:01"}),
        frame(eth=eth, vlan={"vid": 10}, ipv4=v4, udp={}),
        frame(eth=eth, vlan={"vid": 100}, inner_vlan={"vid": 200}, ipv4=v4, tcp={"flags": 0x12}),
        frame(eth=eth, mpls={"label": 16}, ipv4=v4, udp={}),
        frame(eth=eth, ipv4={"src": "111.22.3.0", "dst": "3.22.111.0"}, gre={}),
        frame(eth=eth, ipv4=v4, udp={"dst_port": 4789}, vxlan={"vni": 42}, payload=frame(
            eth=eth, ipv4={"src": "192.168.1.2", "dst": "10.1.1.2"}, udp={})),
        bytes(broken),
    ]


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


def test_decode_every_protocol_and_agree_with_tcpdump(tmp_path, capsys):
    frames = sample_frames()
    pool = Pool(64, name="decode-test")
    batch = pool.alloc(len(frames))
    for b, raw in zip(batch.idx[: batch.n], frames, strict=True):
        pool.write(int(b), raw)
    path = tmp_path / "all.pcap"
    with PcapWriter(path) as writer:
        writer.write(batch)
    assert main(["decode", str(path)]) == 0
    out = capsys.readouterr().out
    assert len(_rows(out)) == len(frames)
    assert "eth/ipv4/udp/vxlan" in out and "malformed L3" in out
    if shutil.which("tcpdump"):
        dump = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True,
                              text=True, timeout=30).stdout
        assert "ICMP6, neighbor solicitation, who has 2001:db8::2" in dump
        assert "VXLAN" in dump and "vni 42" in dump


def test_command_line_entry_point(tmp_path):
    path = _capture(tmp_path)
    done = subprocess.run([sys.executable, "-m", "pktflow", "decode", "-c", "1", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "111.2.0.1:1234" in done.stdout and len(_rows(done.stdout)) == 1
