"""A sample of the scenario's own traffic (nat.pg through the generator), captured after
translation into a pcap file by the NAT's sending port, and dissected by Scapy."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from nat_helpers import GEN_MAC0, GEN_MAC1, checksums_right, nat_doc, nat_mod
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

from pktflow.flow import FlowConfig, System
from pktflow.pktgen import Pktgen
from pktflow.ports.base import PortTable
from pktflow.tutorial.nat import TARGETS

_names = itertools.count()


def run_generator_port(tmp_path: Path, gen_port: int, doc: dict,
                       count: int) -> tuple[list, str]:
    """Generator port `gen_port` runs nat.pg into the NAT's port of the same number; the
    NAT's other port writes what it sends to a pcap file. Returns the packets dissected
    and the MAC of that NAT port."""
    tag = f"natcap{os.getpid()}_{next(_names)}"
    out = tmp_path / "translated.pcap"
    gen_ports = PortTable.from_specs(
        [f"{i}=mem:{tag}_{i},ring=16384,mac={m}" for i, m in ((0, GEN_MAC0), (1, GEN_MAC1))])
    nf_specs = [f"{gen_port}=mem:{tag}_{gen_port},ring=16384",
                f"{1 - gen_port}=pcap:,{out}"]
    nf = System(FlowConfig(), PortTable.from_specs(nf_specs))
    nat = gen = None
    try:
        nat = nat_mod.build_nat(nf, nat_mod.parse_config(doc))
        nf.start()
        nat_mac = str(nf.port_mac(1 - gen_port))
        gen = Pktgen(gen_ports, output=lambda _text: None)
        assert gen.load(TARGETS.parent / "nat.pg") == []
        gen.execute(f"set {gen_port} count {count}")
        gen.execute(f"start {gen_port}")
        assert gen.wait_done(30)
        deadline = time.monotonic() + 10
        while nf.check_conservation()["total_ended"] < count and time.monotonic() < deadline:
            time.sleep(0.01)
        final = nf.stop()  # flushes the pcap file
        assert final["conservation"]["total_ended"] == count
    finally:
        if gen is not None:
            gen.close()
        if nat is not None:
            nat.close()
        nf.close()
        gen_ports.close()
    return list(rdpcap(str(out))), nat_mac


def test_clients_traffic_translated_sample(tmp_path):
    packets, nat_mac = run_generator_port(tmp_path, 0, nat_doc(), 220)
    assert len(packets) == 220
    for k, p in enumerate(packets):
        client = k % 11  # nat.pg walks the source 192.168.1.2..12
        assert len(p) == 1496
        assert (p.src, p.dst) == (nat_mac, GEN_MAC1)
        assert (p[IP].src, p[IP].dst) == ("10.1.1.1", "10.1.1.2")
        assert p[TCP].sport == 1024 + client
        assert p[TCP].dport == 5678 + k  # Pktgen's range default: step 1
        assert checksums_right(p), p.show2(dump=True)


def test_server_traffic_translated_sample(tmp_path):
    # The first client's mapping, as the scenario's outbound traffic leaves it, made static.
    doc = nat_doc(public={"forward-ports": [
        {"port": 1024, "destination": "192.168.1.2:1234", "protocol": "TCP"}]})
    packets, nat_mac = run_generator_port(tmp_path, 1, doc, 100)
    assert len(packets) == 100
    for k, p in enumerate(packets):
        assert len(p) == 1496 and (p.src, p.dst) == (nat_mac, GEN_MAC0)
        assert (p[IP].src, p[IP].dst) == ("10.1.1.2", "192.168.1.2")
        assert (p[TCP].sport, p[TCP].dport) == (1234 + k, 1234)
        assert checksums_right(p), p.show2(dump=True)
