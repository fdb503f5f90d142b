"""Scapy interop: packets go both ways unchanged, and pktflow imports without Scapy."""

from __future__ import annotations

import subprocess
import sys

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Dot1Q, Ether

from pktflow.packet import Pool
from pktflow.packet.scapy import batch_from_scapy, batch_to_scapy, from_scapy, to_scapy


def test_round_trip_through_a_pool():
    pool = Pool(buffers=8, name="interop")
    sp = Ether(dst="00:11:22:33:44:55") / Dot1Q(vlan=7) / IP(src="10.0.0.1") / UDP(dport=53) / b"q"
    pkt = from_scapy(sp, pool)
    assert pkt.layers() == ["eth", "vlan", "ipv4", "udp"] and pkt.udp.dst_port == 53
    pkt.ipv4.rewrite_src("10.0.0.99")
    back = to_scapy(pkt)
    assert back[IP].src == "10.0.0.99" and back[Dot1Q].vlan == 7
    assert bytes(back) == pkt.bytes()
    del back[IP].chksum, back[UDP].chksum
    assert bytes(Ether(bytes(back))) == pkt.bytes()  # incremental checksums match Scapy's
    pkts = [Ether() / IPv6() / ICMPv6EchoRequest(seq=i) for i in range(5)]
    batch = batch_from_scapy(pkts, pool)
    assert batch.n == 5 and [p[ICMPv6EchoRequest].seq for p in batch_to_scapy(batch)] == [
        0, 1, 2, 3, 4]
    assert pool.available == 8 - 1 - 5


def test_importing_pktflow_does_not_import_scapy():
    code = "import sys, pktflow.packet, pktflow.packet.build; print('scapy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"
