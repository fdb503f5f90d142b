"""The translation table: allocation order, endpoint independence, reuse, idle timeout,
take-over of expired ports, exhaustion and static port forwarding."""

from __future__ import annotations

import time

from nat_helpers import GEN_MAC0, GEN_MAC1, nat_doc, nat_mod
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether


def out_tcp(rig, host: int, sport: int = 1234, dst: str = "10.1.1.2", dport: int = 80):
    return (Ether(src=GEN_MAC0, dst=rig.macs[0]) / IP(src=f"192.168.1.{host}", dst=dst)
            / TCP(sport=sport, dport=dport) / b"out")


def in_tcp(rig, dport: int, src: str = "10.1.1.2", sport: int = 80):
    return (Ether(src=GEN_MAC1, dst=rig.macs[1]) / IP(src=src, dst="10.1.1.1")
            / TCP(sport=sport, dport=dport, flags="SA") / b"in")


def test_compiled_and_public_ports_allocated_upward_from_1024(rig):
    r = rig()
    assert r.kernels == {"nat outbound": "compiled", "nat inbound": "compiled"}
    got = r.exchange(0, [out_tcp(r, h) for h in (2, 3, 4, 2)], 1)
    assert [p[TCP].sport for p in got] == [1024, 1025, 1026, 1024]
    assert all(p[IP].src == "10.1.1.1" and p[IP].dst == "10.1.1.2" for p in got)
    assert all(p.src == r.macs[1] and p.dst == GEN_MAC1 for p in got)
    assert [(m.public_port, m.private_address, m.private_port)
            for m in r.nat.mappings()] == [(1024, "192.168.1.2", 1234),
                                           (1025, "192.168.1.3", 1234),
                                           (1026, "192.168.1.4", 1234)]
    # Protocols number their ports separately.
    udp = (Ether(src=GEN_MAC0, dst=r.macs[0]) / IP(src="192.168.1.9", dst="10.1.1.2")
           / UDP(sport=999, dport=53))
    assert r.exchange(0, [udp], 1)[0][UDP].sport == 1024


def test_mapping_is_endpoint_independent(rig):
    r = rig()
    # One private endpoint talking to two servers keeps one public port ...
    got = r.exchange(0, [out_tcp(r, 5, 4000, "10.1.1.2"), out_tcp(r, 5, 4000, "8.8.8.8", 443)],
                     1)
    assert [p[TCP].sport for p in got] == [1024, 1024]
    assert [p[IP].dst for p in got] == ["10.1.1.2", "8.8.8.8"]
    # ... and any remote host may reach it through that port.
    back = r.exchange(1, [in_tcp(r, 1024, "10.1.1.2"), in_tcp(r, 1024, "203.0.113.7", 5555)],
                      0)
    assert [(p[IP].src, p[IP].dst, p[TCP].sport, p[TCP].dport) for p in back] == [
        ("10.1.1.2", "192.168.1.5", 80, 4000), ("203.0.113.7", "192.168.1.5", 5555, 4000)]
    assert all(p.dst == GEN_MAC0 and p.src == r.macs[0] for p in back)
    assert r.counters("inbound")["forwarded"] == 2


def test_unknown_port_and_foreign_address_are_dropped_and_counted(rig):
    r = rig()
    r.exchange(0, [out_tcp(r, 2)], 1)
    other_dst = (Ether(src=GEN_MAC1, dst=r.macs[1]) / IP(src="10.1.1.2", dst="10.1.1.99")
                 / TCP(sport=80, dport=1024))
    assert r.exchange(1, [in_tcp(r, 1025), in_tcp(r, 2000), other_dst], 0) == []
    inbound = r.counters("inbound")
    assert inbound["unknown"] == 2 and inbound["not-ours"] == 1
    # A source outside the private subnet is not translated either.
    spoofed = (Ether(src=GEN_MAC0, dst=r.macs[0]) / IP(src="172.16.0.1", dst="10.1.1.2")
               / TCP(sport=1, dport=2))
    assert r.exchange(0, [spoofed], 1) == []
    assert r.counters("outbound")["not-ours"] == 1


def test_idle_mapping_expires_and_the_endpoint_gets_it_back(rig):
    r = rig(nat_doc(timeout=2))
    r.exchange(0, [out_tcp(r, 2)], 1)
    r.advance(1.5)
    assert len(r.exchange(1, [in_tcp(r, 1024)], 0)) == 1  # traffic keeps it alive
    r.advance(1.5)
    assert len(r.exchange(1, [in_tcp(r, 1024)], 0)) == 1
    r.advance(2.5)
    assert r.exchange(1, [in_tcp(r, 1024)], 0) == []
    assert r.counters("inbound")["expired"] == 1
    # New outbound traffic from the same endpoint revives its own port.
    assert r.exchange(0, [out_tcp(r, 2)], 1)[0][TCP].sport == 1024
    assert len(r.exchange(1, [in_tcp(r, 1024)], 0)) == 1


def test_expired_port_is_taken_over_when_allocation_wraps(rig):
    r = rig(nat_doc(timeout=1))
    r.exchange(0, [out_tcp(r, 2)], 1)  # 192.168.1.2 -> 1024
    r.advance(2)
    r.settle()
    r.nat.state.cursor[nat_mod.TCP_I] = 65535  # as if 64510 ports had been handed out
    got = r.exchange(0, [out_tcp(r, 3), out_tcp(r, 4)], 1)
    assert [p[TCP].sport for p in got] == [65535, 1024]  # wrapped; 1024 was idle
    assert r.nat.public_port("tcp", "192.168.1.2", 1234) is None
    # The old owner is a new endpoint now and gets the next free port.
    assert r.exchange(0, [out_tcp(r, 2)], 1)[0][TCP].sport == 1025
    back = r.exchange(1, [in_tcp(r, 1024)], 0)
    assert [p[IP].dst for p in back] == ["192.168.1.4"]


def test_no_free_port_drops_and_counts(rig):
    r = rig()
    r.settle()
    r.nat.state.pub_map[nat_mod.UDP_I, 1024:] = nat_mod.VALID | nat_mod.STATIC | 1
    udp = (Ether(src=GEN_MAC0, dst=r.macs[0]) / IP(src="192.168.1.7", dst="10.1.1.2")
           / UDP(sport=7, dport=53))
    assert r.exchange(0, [udp], 1) == []
    assert r.counters("outbound")["no-port"] == 1
    assert r.exchange(0, [out_tcp(r, 7)], 1)[0][TCP].sport == 1024  # TCP is unaffected


def test_static_port_forwarding(rig):
    doc = nat_doc(timeout=1, public={"forward-ports": [
        {"port": 8080, "destination": "192.168.1.10:80", "protocol": "TCP"},
        {"port": 5353, "destination": "192.168.1.11", "protocol": "UDP"}]})
    r = rig(doc)
    r.advance(30)  # static entries never expire
    got = r.exchange(1, [in_tcp(r, 8080, "198.51.100.1", 40000)], 0)
    assert [(p[IP].dst, p[TCP].dport) for p in got] == [("192.168.1.10", 80)]
    reply = (Ether(src=GEN_MAC0, dst=r.macs[0]) / IP(src="192.168.1.10", dst="198.51.100.1")
             / TCP(sport=80, dport=40000, flags="SA"))
    out = r.exchange(0, [reply], 1)
    assert [(p[IP].src, p[TCP].sport) for p in out] == [("10.1.1.1", 8080)]
    udp = (Ether(src=GEN_MAC1, dst=r.macs[1]) / IP(src="198.51.100.1", dst="10.1.1.1")
           / UDP(sport=1, dport=5353))
    assert [(p[IP].dst, p[UDP].dport) for p in r.exchange(1, [udp], 0)] == [
        ("192.168.1.11", 5353)]
    assert {(m.proto, m.public_port, m.static) for m in r.nat.mappings()} == {
        ("tcp", 8080, True), ("udp", 5353, True)}


def test_icmp_echo_through_the_nat_uses_the_identifier_as_port(rig):
    r = rig()
    ping = (Ether(src=GEN_MAC0, dst=r.macs[0]) / IP(src="192.168.1.30", dst="10.1.1.2")
            / ICMP(type=8, id=4242, seq=9) / (b"x" * 20))
    out = r.exchange(0, [ping], 1)
    assert [(p[IP].src, p[ICMP].id, p[ICMP].seq) for p in out] == [("10.1.1.1", 1024, 9)]
    pong = (Ether(src=GEN_MAC1, dst=r.macs[1]) / IP(src="10.1.1.2", dst="10.1.1.1")
            / ICMP(type=0, id=1024, seq=9) / (b"x" * 20))
    back = r.exchange(1, [pong], 0)
    assert [(p[IP].dst, p[ICMP].id, p[ICMP].type) for p in back] == [("192.168.1.30", 4242, 0)]


def test_real_clock_expires_a_short_timeout():
    """The clock thread of a running NAT: a 0.2 s timeout passes in real time."""
    from nat_helpers import NatRig

    r = NatRig(nat_doc(timeout=0.2))
    r.nat.manual_clock = False
    r.nat.start()
    try:
        r.exchange(0, [out_tcp(r, 2)], 1)
        assert len(r.exchange(1, [in_tcp(r, 1024)], 0)) == 1
        time.sleep(0.5)
        assert r.exchange(1, [in_tcp(r, 1024)], 0) == []
        assert r.counters("inbound")["expired"] == 1
    finally:
        final = r.close()
    assert final["conservation"]["balanced"]
