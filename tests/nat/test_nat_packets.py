"""Translated packets and answers, dissected by Scapy: addresses, ports, MACs, checksums;
ARP and ICMP echo for the NAT's own addresses; malformed input on both ports."""

from __future__ import annotations

import random

from nat_helpers import GEN_MAC0, GEN_MAC1, checksums_right
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether


def test_translation_checksums_both_ways(rig):
    r = rig()
    rnd = random.Random(7)
    hosts = list(range(2, 40))
    frames = []
    for k, host in enumerate(hosts):
        payload = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 300)))
        l4 = (TCP(sport=1000 + k, dport=80, seq=rnd.getrandbits(32), flags="PA") if k % 3 == 0
              else UDP(sport=1000 + k, dport=53) if k % 3 == 1
              else ICMP(type=8, id=1000 + k, seq=k))
        frames.append(Ether(src=GEN_MAC0, dst=r.macs[0])
                      / IP(src=f"192.168.1.{host}", dst="10.1.1.2", ttl=rnd.randrange(2, 255),
                           id=rnd.getrandbits(16)) / l4 / payload)
    out = r.exchange(0, frames, 1)
    assert len(out) == len(frames)
    replies = []
    for sent, got in zip(frames, out, strict=True):
        assert got.src == r.macs[1] and got.dst == GEN_MAC1
        assert got[IP].src == "10.1.1.1" and got[IP].dst == "10.1.1.2"
        assert got[IP].ttl == sent[IP].ttl and got[IP].id == sent[IP].id
        l4 = next(layer for layer in (TCP, UDP, ICMP) if layer in sent)
        assert bytes(got[l4].payload) == bytes(sent[l4].payload)
        assert checksums_right(got), got.show2(dump=True)
        if TCP in got:
            public = got[TCP].sport
            assert got[TCP].seq == sent[TCP].seq
            back = TCP(sport=80, dport=public, flags="A")
        elif UDP in got:
            public = got[UDP].sport
            back = UDP(sport=53, dport=public)
        else:
            public = got[ICMP].id
            back = ICMP(type=0, id=public, seq=got[ICMP].seq)
        replies.append(Ether(src=GEN_MAC1, dst=r.macs[1])
                       / IP(src="10.1.1.2", dst="10.1.1.1") / back / b"reply")
    back = r.exchange(1, replies, 0)
    assert len(back) == len(replies)
    for sent, got in zip(frames, back, strict=True):
        assert got.src == r.macs[0] and got.dst == GEN_MAC0
        assert got[IP].dst == sent[IP].src and got[IP].src == "10.1.1.2"
        if TCP in sent:
            assert got[TCP].dport == sent[TCP].sport
        elif UDP in sent:
            assert got[UDP].dport == sent[UDP].sport
        else:
            assert got[ICMP].id == sent[ICMP].id
        assert checksums_right(got), got.show2(dump=True)


def test_vlan_options_and_zero_udp_checksum(rig):
    r = rig()
    tagged = (Ether(src=GEN_MAC0, dst=r.macs[0]) / Dot1Q(vlan=12)
              / IP(src="192.168.1.2", dst="10.1.1.2", options=[IPOption_RR()])
              / TCP(sport=1, dport=2) / b"tagged")
    nocsum = Ether(bytes(Ether(src=GEN_MAC0, dst=r.macs[0])
                         / IP(src="192.168.1.3", dst="10.1.1.2") / UDP(sport=3, dport=4, chksum=0)
                         / b"no checksum"))
    out = r.exchange(0, [tagged, nocsum], 1)
    assert len(out) == 2
    assert out[0][Dot1Q].vlan == 12 and out[0][IP].src == "10.1.1.1" and out[0][TCP].sport == 1024
    assert checksums_right(out[0])
    assert out[1][UDP].sport == 1024 and out[1][UDP].chksum == 0
    assert checksums_right(out[1])


def test_arp_requests_for_own_addresses_answered(rig):
    r = rig()
    for port, own, asker, mine in ((0, "192.168.1.1", "192.168.1.77", GEN_MAC0),
                                   (1, "10.1.1.1", "10.1.1.2", GEN_MAC1)):
        req = (Ether(src=mine, dst="ff:ff:ff:ff:ff:ff")
               / ARP(op=1, hwsrc=mine, psrc=asker, pdst=own))
        other = (Ether(src=mine, dst="ff:ff:ff:ff:ff:ff")
                 / ARP(op=1, hwsrc=mine, psrc=asker, pdst="192.0.2.1"))
        answer = ARP(op=2, hwsrc=mine, psrc=asker, pdst=own)  # a reply is not answered
        got = r.exchange(port, [req, other, Ether(src=mine, dst=r.macs[port]) / answer], port)
        assert len(got) == 1
        a = got[0]
        assert a.dst == mine and a.src == r.macs[port]
        assert (a[ARP].op, a[ARP].hwsrc, a[ARP].psrc, a[ARP].hwdst, a[ARP].pdst) == (
            2, r.macs[port], own, mine, asker)
    for side in ("outbound", "inbound"):
        c = r.counters(side)
        assert c["arp-replies"] == 1 and c["arp-ignored"] == 2


def test_icmp_echo_to_own_addresses_answered(rig):
    r = rig()
    for port, own, asker, mine in ((0, "192.168.1.1", "192.168.1.50", GEN_MAC0),
                                   (1, "10.1.1.1", "198.51.100.9", GEN_MAC1)):
        ping = (Ether(src=mine, dst=r.macs[port]) / IP(src=asker, dst=own, ttl=9)
                / ICMP(type=8, id=321, seq=5) / b"are you there?")
        got = r.exchange(port, [ping], port)
        assert len(got) == 1
        e = got[0]
        assert e.dst == mine and e.src == r.macs[port]
        assert (e[IP].src, e[IP].dst, e[ICMP].type, e[ICMP].id, e[ICMP].seq) == (
            own, asker, 0, 321, 5)
        assert bytes(e[ICMP].payload) == b"are you there?"
        assert checksums_right(e)
    # TCP to the private address is not translated anywhere.
    to_self = (Ether(src=GEN_MAC0, dst=r.macs[0]) / IP(src="192.168.1.50", dst="192.168.1.1")
               / TCP(sport=1, dport=22))
    assert r.exchange(0, [to_self], 1) == []
    assert r.counters("outbound")["to-self"] == 1
    assert r.counters("outbound")["echo-replies"] == r.counters("inbound")["echo-replies"] == 1


def test_malformed_packets_are_dropped_counted_and_state_survives(rig):
    r = rig()
    good = (Ether(src=GEN_MAC0, dst=r.macs[0]) / IP(src="192.168.1.2", dst="10.1.1.2")
            / TCP(sport=1234, dport=80))
    assert r.exchange(0, [good], 1)[0][TCP].sport == 1024
    raw = bytes(good)
    rnd = random.Random(3)
    bad = [
        b"",  # empty
        raw[:10],  # shorter than Ethernet
        raw[:30],  # truncated IPv4 header
        raw[:40],  # IPv4 whole, TCP cut
        raw[:14] + bytes([0x43]) + raw[15:],  # IHL 3
        raw[:16] + b"\xff\xff" + raw[18:],  # total length past the frame
        raw[:46] + bytes([0x10]) + raw[47:],  # TCP data offset 1 word
        bytes(Ether(src=GEN_MAC0, dst=r.macs[0]) / ARP(op=1))[:24],  # cut ARP
    ] + [bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 120))) for _ in range(50)]
    ipv6 = bytes(Ether(src=GEN_MAC0, dst=r.macs[0]) / IPv6(src="fd00::2", dst="fd00::1") / UDP())
    for port in (0, 1):
        assert r.exchange(port, bad + [ipv6], 1 - port) == []
    r.settle()
    drops = {side: sum(c[k] for k in ("malformed", "unsupported", "not-ours", "arp-ignored",
                                       "unknown", "to-self"))
             for side, c in r.nat.counters().items()}
    assert drops == {"outbound": len(bad) + 1, "inbound": len(bad) + 1}
    for side in ("outbound", "inbound"):
        assert r.counters(side)["malformed"] >= 7
    # The NF still runs and kept its mapping.
    back = (Ether(src=GEN_MAC1, dst=r.macs[1]) / IP(src="10.1.1.2", dst="10.1.1.1")
            / TCP(sport=80, dport=1024))
    assert [p[IP].dst for p in r.exchange(1, [back], 0)] == ["192.168.1.2"]
    stopped = [n for n in r.nf.stats()["nodes"] if n["op"] == "stopper"]
    assert sum(n["in"] for n in stopped) == 2 * (len(bad) + 1)
