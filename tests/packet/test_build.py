"""`build.frame` makes the same bytes Scapy makes from the same fields, and refuses
impossible stacks and bad fields with a message naming them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packet_strategies import ipv4s, ipv6s, macs, payloads, u8, u16, u32
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from pktflow.packet import Pool, build

vids = st.integers(0, 4095)


@settings(max_examples=80, deadline=None)
@given(macs, macs, st.none() | vids, u8, u16, ipv4s, ipv4s, u16, u16, u32,
       st.sampled_from(["tcp", "udp", "icmp"]), payloads)
def test_ipv4_frames_match_scapy(dst, src, vid, ttl, ident, sip, dip, sport, dport, seq, l4,
                                 payload):
    ours = {"eth": {"dst": dst, "src": src},
            "ipv4": {"ttl": ttl, "id": ident, "src": sip, "dst": dip}}
    theirs = Ether(dst=dst, src=src)
    if vid is not None:
        ours["vlan"] = {"vid": vid}
        theirs = theirs / Dot1Q(vlan=vid)
    theirs = theirs / IP(ttl=ttl, id=ident, src=sip, dst=dip, flags=0)
    if l4 == "tcp":
        ours["tcp"] = {"src_port": sport, "dst_port": dport, "seq": seq}
        theirs = theirs / TCP(sport=sport, dport=dport, seq=seq)  # both default SYN, 8192
    elif l4 == "udp":
        ours["udp"] = {"src_port": sport, "dst_port": dport}
        theirs = theirs / UDP(sport=sport, dport=dport)
    else:
        ours["icmp"] = {"id": sport, "seq": dport}
        theirs = theirs / ICMP(id=sport, seq=dport)
    assert build.frame(**ours, payload=payload) == bytes(theirs / payload)


@settings(max_examples=40, deadline=None)
@given(ipv6s, ipv6s, ipv6s, macs, st.integers(0, 7))
def test_ipv6_neighbour_advertisement_matches_scapy(sip, dip, target, lladdr, rso):
    ours = build.frame(ipv6={"src": sip, "dst": dip, "hop_limit": 255},
                       icmp6={"type": 136, "nd_flags": rso, "target": target,
                              "nd_opt_type": 2, "nd_opt_len": 1, "nd_lladdr": lladdr})
    theirs = Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00") \
        / IPv6(src=sip, dst=dip, hlim=255) \
        / ICMPv6ND_NA(R=rso >> 2, S=(rso >> 1) & 1, O=rso & 1, tgt=target) \
        / ICMPv6NDOptDstLLAddr(lladdr=lladdr)
    assert ours == bytes(theirs)


Z = {"src": "00:00:00:00:00:00", "dst": "00:00:00:00:00:00"}


@pytest.mark.parametrize("ours,theirs", [
    (dict(vlan={"vid": 10, "pcp": 5}, inner_vlan={"vid": 20}, arp={"op": 2, "spa": "10.0.0.1",
          "sha": "02:00:00:00:00:01"}),
     Ether(**Z) / Dot1AD(vlan=10, prio=5) / Dot1Q(vlan=20)
     / ARP(op=2, psrc="10.0.0.1", hwsrc="02:00:00:00:00:01", pdst="0.0.0.0",
           hwdst="00:00:00:00:00:00")),
    (dict(mpls=[{"label": 100}, {"label": 200, "tc": 3}], ipv4={"src": "1.1.1.1"}, udp={}),
     Ether(**Z) / MPLS(label=100, s=0, ttl=64) / MPLS(label=200, cos=3, s=1, ttl=64)
     / IP(src="1.1.1.1", dst="0.0.0.0", id=0, flags=0) / UDP(sport=1234, dport=5678)),
    (dict(ipv4={"src": "2.2.2.2"}, gre={"key": 7, "seq": 9, "proto": 0x6558}),
     Ether(**Z) / IP(src="2.2.2.2", dst="0.0.0.0", id=0, flags=0)
     / GRE(key_present=1, key=7, seqnum_present=1, sequence_number=9, proto=0x6558)),
    (dict(ipv4={"src": "3.3.3.3", "options": b"\x94\x04\x00\x00"}, tcp={"options": b"\x01"}),
     Ether(**Z) / IP(src="3.3.3.3", dst="0.0.0.0", id=0, flags=0, options=b"\x94\x04\x00\x00")
     / TCP(sport=1234, dport=5678, options=[("NOP", None), ("EOL", None)])),
])
def test_other_stacks_match_scapy(ours, theirs):
    assert build.frame(**ours) == bytes(theirs)


def test_vxlan_carries_an_inner_frame():
    inner = build.frame(ipv4={"src": "10.9.9.9"}, icmp={})
    raw = build.frame(ipv4={"src": "4.4.4.4"}, udp={"src_port": 999}, vxlan={"vni": 0xABCDE},
                      payload=inner)
    sp = Ether(raw)
    assert sp[UDP].dport == 4789 and sp[VXLAN].vni == 0xABCDE and sp[VXLAN].flags == 0x08
    assert bytes(sp[VXLAN].payload) == inner
    pkt = build.put(Pool(buffers=1, name="vx"), 0, raw)
    assert pkt.vxlan.vni == 0xABCDE and pkt.checksums_ok()


def test_explicit_fields_override_the_automatic_ones(pool):
    raw = build.frame(ipv4={"total_length": 999, "checksum": 0x1234}, udp={"checksum": 0})
    sp = Ether(raw)
    assert sp[IP].len == 999 and sp[IP].chksum == 0x1234 and sp[UDP].chksum == 0
    pkt = build.put(pool, 0, raw)
    assert pkt.malformed  # built as asked, and the parser says what is wrong with it


@pytest.mark.parametrize("kwargs,needle", [
    (dict(ipv4={"srcc": "1.2.3.4"}), "ipv4 has no field 'srcc'"),
    (dict(ipv4={"ttl": 256}), "ipv4.ttl: field ttl is 8 bits wide: 256 does not fit"),
    (dict(ipv4={"src": "1.2.3"}), 'ipv4.src: bad IPv4 address "1.2.3"'),
    (dict(ipv4={}, ipv6={}), "one L3 and one L4 header at most"),
    (dict(tcp={}), "tcp needs an ipv4 or ipv6 header"),
    (dict(ipv6={}, icmp={}), "icmp goes over ipv4"),
    (dict(ipv4={}, tcp={}, vxlan={}), "vxlan needs a udp header"),
    (dict(inner_vlan={"vid": 1}), "needs an outer vlan"),
    (dict(ipv4={"options": b"\x01" * 41}), "at most 40 fit"),
    (dict(ipv6={}, icmp6={"type": 128, "nd_lladdr": "00:11:22:33:44:55"}), "icmp6.nd_lladdr"),
])
def test_bad_requests_name_the_problem(kwargs, needle):
    with pytest.raises(build.BuildError, match=needle.replace("(", "\\(")):
        build.frame(**kwargs)
