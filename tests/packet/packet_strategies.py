"""Hypothesis strategies: random Scapy packets over every protocol pktflow parses."""

from __future__ import annotations

from hypothesis import strategies as st
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))
ipv4s = u32.map(lambda v: ".".join(str((v >> s) & 255) for s in (24, 16, 8, 0)))
ipv6s = st.integers(0, (1 << 128) - 1).map(
    lambda v: ":".join(f"{(v >> s) & 0xFFFF:x}" for s in range(112, -1, -16))
)
payloads = st.binary(max_size=48)


@st.composite
def l4_over_ipv4(draw):
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "gre", "vxlan", "none"]))
    if kind == "tcp":
        opts = draw(st.integers(0, 10))
        return TCP(sport=draw(u16), dport=draw(u16), seq=draw(u32), ack=draw(u32),
                   flags=draw(st.integers(0, 0x1FF)), window=draw(u16), urgptr=draw(u16),
                   options=[("NOP", None)] * (opts * 4))
    if kind == "udp":
        return UDP(sport=draw(u16), dport=draw(u16.filter(lambda p: p != 4789)))
    if kind == "icmp":
        return ICMP(type=draw(st.sampled_from([0, 8])), code=draw(u8), id=draw(u16),
                    seq=draw(u16))
    if kind == "gre":
        gre = GRE(proto=draw(u16), version=draw(st.integers(0, 7)))
        if draw(st.booleans()):
            gre.key_present, gre.key = 1, draw(u32)
        if draw(st.booleans()):
            gre.seqnum_present, gre.sequence_number = 1, draw(u32)
        if draw(st.booleans()):
            gre.chksum_present = 1
        return gre
    if kind == "vxlan":
        inner = Ether(src=draw(macs), dst=draw(macs)) / IP(src=draw(ipv4s)) / UDP()
        return UDP(sport=draw(u16), dport=4789) / VXLAN(vni=draw(st.integers(0, (1 << 24) - 1))) \
            / inner
    return Raw(b"")


@st.composite
def l4_over_ipv6(draw):
    kind = draw(st.sampled_from(["tcp", "udp", "echo", "reply", "ns", "na"]))
    if kind == "tcp":
        return TCP(sport=draw(u16), dport=draw(u16), seq=draw(u32), ack=draw(u32),
                   flags=draw(st.integers(0, 0x1FF)), window=draw(u16))
    if kind == "udp":
        return UDP(sport=draw(u16), dport=draw(u16.filter(lambda p: p != 4789)))
    if kind in ("echo", "reply"):
        cls = ICMPv6EchoRequest if kind == "echo" else ICMPv6EchoReply
        return cls(id=draw(u16), seq=draw(u16))
    if kind == "ns":
        return ICMPv6ND_NS(tgt=draw(ipv6s)) / ICMPv6NDOptSrcLLAddr(lladdr=draw(macs))
    return ICMPv6ND_NA(R=draw(st.integers(0, 1)), S=draw(st.integers(0, 1)),
                       O=draw(st.integers(0, 1)), tgt=draw(ipv6s)) \
        / ICMPv6NDOptDstLLAddr(lladdr=draw(macs))


@st.composite
def ipv6_packets(draw):
    pkt = IPv6(tc=draw(u8), fl=draw(st.integers(0, (1 << 20) - 1)), hlim=draw(u8),
               src=draw(ipv6s), dst=draw(ipv6s))
    for ext in draw(st.lists(st.sampled_from(["hbh", "rt", "frag", "dst"]), max_size=3)):
        if ext == "hbh":
            pkt = pkt / IPv6ExtHdrHopByHop()
        elif ext == "rt":
            pkt = pkt / IPv6ExtHdrRouting()
        elif ext == "frag":
            pkt = pkt / IPv6ExtHdrFragment(id=draw(u32))  # offset 0, M 0: not a fragment
        else:
            pkt = pkt / IPv6ExtHdrDestOpt()
    return pkt / draw(l4_over_ipv6())


@st.composite
def ipv4_packets(draw):
    nopts = draw(st.integers(0, 10))
    ip = IP(tos=draw(u8), id=draw(u16), flags=draw(st.sampled_from([0, 2])), ttl=draw(u8),
            src=draw(ipv4s), dst=draw(ipv4s), options=[IPOption_NOP()] * (4 * nopts))
    return ip / draw(l4_over_ipv4())


@st.composite
def frames(draw):
    """A random Scapy Ether packet: optional VLAN/QinQ or MPLS, then ARP, IPv4 or IPv6."""
    pkt = Ether(src=draw(macs), dst=draw(macs))
    l2 = draw(st.sampled_from(["plain", "vlan", "qinq", "mpls"]))
    l3 = draw(st.sampled_from(["ipv4", "ipv6", "arp"]))
    if l2 == "vlan":
        pkt = pkt / Dot1Q(prio=draw(st.integers(0, 7)), dei=draw(st.integers(0, 1)),
                          vlan=draw(st.integers(0, 4095)))
    elif l2 == "qinq":
        pkt = pkt / Dot1AD(vlan=draw(st.integers(0, 4095)), prio=draw(st.integers(0, 7))) \
            / Dot1Q(vlan=draw(st.integers(0, 4095)), dei=draw(st.integers(0, 1)))
    elif l2 == "mpls":
        n = draw(st.integers(1, 3))
        for i in range(n):
            pkt = pkt / MPLS(label=draw(st.integers(0, (1 << 20) - 1)),
                             cos=draw(st.integers(0, 7)), s=int(i == n - 1), ttl=draw(u8))
        l3 = draw(st.sampled_from(["ipv4", "ipv6"]))
    if l3 == "ipv4":
        pkt = pkt / draw(ipv4_packets())
    elif l3 == "ipv6":
        pkt = pkt / draw(ipv6_packets())
    else:
        return pkt / ARP(op=draw(st.integers(1, 2)), hwsrc=draw(macs), psrc=draw(ipv4s),
                         hwdst=draw(macs), pdst=draw(ipv4s))
    return pkt / Raw(draw(payloads))
