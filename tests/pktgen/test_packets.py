"""Each `set` command's effect on the generated packets, dissected with Scapy."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Dot1Q, Ether

from tests.pktgen.conftest import checksums_valid


def test_defaults_follow_pktgen(rig):
    pkts = rig.packets(0, 4)
    assert len(pkts) == 4
    mac0, mac1 = str(rig.ports[0].mac), str(rig.ports[1].mac)
    for p in pkts:
        assert len(p) == 60  # size 64 includes the FCS
        assert p[Ether].src == mac0 and p[Ether].dst == mac1
        assert p[IP].src == "192.168.0.1" and p[IP].dst == "192.168.1.1"
        assert p[IP].ttl == 64 and p[IP].len == 46
        assert p[TCP].sport == 1234 and p[TCP].dport == 5678
        assert p[TCP].flags == "A"
        assert checksums_valid(p)
    # Port 1 defaults mirror port 0: its network, towards port 0.
    p1 = rig.packets(1, 1)[0]
    assert p1[IP].src == "192.168.1.1" and p1[IP].dst == "192.168.0.1"
    assert p1[Ether].dst == mac0


@pytest.mark.parametrize("size", [64, 65, 128, 1000, 1500, 1518])
def test_set_size(rig, size):
    rig.run(f"set 0 size {size}")
    for p in rig.packets(0, 3):
        assert len(p) == size - 4
        assert p[IP].len == size - 4 - 14
        assert checksums_valid(p)


def test_set_size_is_clamped_like_pktgen(rig):
    note = rig.gen.execute("set 0 size 20")
    assert "64" in note
    assert len(rig.packets(0, 1)[0]) == 60
    rig.gen.execute("set 0 size 9000")
    assert len(rig.packets(0, 1)[0]) == 1514


@pytest.mark.parametrize("proto,layer", [("udp", UDP), ("tcp", TCP), ("icmp", ICMP)])
@pytest.mark.parametrize("size", [64, 777])
def test_set_proto_ipv4(rig, proto, layer, size):
    rig.run(f"set 0 proto {proto}", f"set 0 size {size}")
    for p in rig.packets(0, 3):
        assert p.haslayer(layer)
        if proto == "udp":
            assert p[UDP].len == size - 4 - 34
        if proto == "icmp":
            assert p[ICMP].type == 8
        assert checksums_valid(p)


@pytest.mark.parametrize("proto", ["tcp", "udp", "icmp"])
def test_set_type_ipv6(rig, proto):
    rig.run("set 0 type ipv6", f"set 0 proto {proto}", "set 0 size 200", "set 0 ttl 9")
    for p in rig.packets(0, 2):
        assert p.haslayer(IPv6) and not p.haslayer(IP)
        assert p[IPv6].hlim == 9 and p[IPv6].plen == 196 - 14 - 40
        expected = {"tcp": TCP, "udp": UDP, "icmp": ICMPv6EchoRequest}[proto]
        assert p.haslayer(expected)
        assert checksums_valid(p)


def test_ipv6_addresses_set_the_type(rig):
    rig.run("set 0 src ip 2001:db8::5/64", "set 0 dst ip 2001:db8::9")
    p = rig.packets(0, 1)[0]
    assert p[IPv6].src == "2001:db8::5" and p[IPv6].dst == "2001:db8::9"
    assert checksums_valid(p)


def test_ports_ttl_and_addresses(rig):
    rig.run("set 0 sport 1111", "set 0 dport 53", "set 0 ttl 3", "set 0 proto udp",
            "set 0 src mac 00:11:22:33:44:55", "set 0 dst mac 0011.2233.4466",
            "set 0 src ip 10.1.2.3/24", "set 0 dst ip 172.16.0.9")
    p = rig.packets(0, 1)[0]
    assert (p[UDP].sport, p[UDP].dport, p[IP].ttl) == (1111, 53, 3)
    assert p[Ether].src == "00:11:22:33:44:55" and p[Ether].dst == "00:11:22:33:44:66"
    assert p[IP].src == "10.1.2.3" and p[IP].dst == "172.16.0.9"
    assert checksums_valid(p)
    assert "10.1.2.3/24" in rig.gen.execute("page main")


def test_vlan(rig):
    rig.run("set 0 vlan 42")
    assert not rig.packets(0, 1)[0].haslayer(Dot1Q)  # the id alone does not tag
    rig.run("enable 0 vlan", "set 0 size 100")
    p = rig.packets(0, 1)[0]
    assert p[Dot1Q].vlan == 42 and p[Dot1Q].type == 0x0800
    assert len(p) == 96 and checksums_valid(p)
    rig.run("set 0 vlanid 7")
    assert rig.packets(0, 1)[0][Dot1Q].vlan == 7
    rig.run("disable 0 vlan")
    assert not rig.packets(0, 1)[0].haslayer(Dot1Q)


def test_portlists_apply_to_each_port(rig):
    rig.run("set all ttl 5", "set 0,1 dport 7", "set 0-1 proto udp")
    for pid in (0, 1):
        p = rig.packets(pid, 1)[0]
        assert p[IP].ttl == 5 and p[UDP].dport == 7


def test_count_is_exact_and_rx_counts_on_after_stop(rig):
    rig.run("set 0 burst 64")
    frames = rig.send(0, 1000)
    assert len(frames) == 1000
    stats = rig.gen.stats()[0]
    assert stats["tx_packets"] == 1000 and stats["tx_generated"] == 1000
    # Replies that come after the generator stopped are still counted.
    tap = rig.tap(0)
    batch = rig.pool.alloc(10)
    for k, b in enumerate(batch.idx[:10]):
        dst = ("ff:ff:ff:ff:ff:ff" if k < 4 else "01:00:5e:00:00:01" if k < 7
               else "02:00:00:00:00:01")
        frame = Ether(dst=dst, src="02:00:00:00:00:02") / IP() / UDP() / (b"x" * 100)
        rig.pool.write(int(b), bytes(frame))
    assert tap.send(batch) == 10
    rig.gen.wait_quiet(quiet=0.1, timeout=2)
    after = rig.gen.stats()[0]
    assert after["rx_packets"] == 10 and after["rx_bytes"] == 1420
    assert after["rx_sizes"]["128-255"] == 10  # 142 bytes + FCS
    assert after["rx_min_size"] == after["rx_max_size"] == 142
    assert (after["rx_broadcast"], after["rx_multicast"]) == (4, 3)
    assert after["tx_packets"] == 1000  # nothing more was sent
