"""The protocol library: one field table per header.

Offsets are from the header's first byte. Sub-byte fields name their byte range and bit
position. Adding a protocol is adding a table here (and teaching `parse.py` to find it).
"""

from __future__ import annotations

from pktflow.packet import meta as M
from pktflow.packet.fields import Layer, bits, ipv4, ipv6, mac, register, u8, u16, u32

ETHERNET = register(Layer("eth", "START", 0, 0, 14, (
    mac("dst", 0), mac("src", 6), u16("type", 12, "ethertype, or 0x8100/0x88a8 before a tag"),
), "Ethernet II"))

VLAN = register(Layer("vlan", "START", 12, M.F_VLAN, 18, (
    u16("tpid", 0), u16("tci", 2),
    bits("pcp", 2, 2, 13, 3), bits("dei", 2, 2, 12, 1), bits("vid", 2, 2, 0, 12),
    u16("type", 4, "ethertype after this tag"),
), "802.1Q tag (the outer tag of QinQ)"))

INNER_VLAN = register(Layer("inner_vlan", "START", 16, M.F_QINQ, 22, (
    u16("tpid", 0), u16("tci", 2),
    bits("pcp", 2, 2, 13, 3), bits("dei", 2, 2, 12, 1), bits("vid", 2, 2, 0, 12),
    u16("type", 4),
), "inner 802.1Q tag of QinQ (802.1ad)"))

MPLS = register(Layer("mpls", "MPLS", 0, M.F_MPLS, 4, (
    bits("label", 0, 4, 12, 20), bits("tc", 0, 4, 9, 3), bits("s", 0, 4, 8, 1), u8("ttl", 3),
), "first MPLS label stack entry"))

ARP = register(Layer("arp", "L3", 0, M.F_ARP, 28, (
    u16("htype", 0), u16("ptype", 2), u8("hlen", 4), u8("plen", 5), u16("op", 6),
    mac("sha", 8), ipv4("spa", 14), mac("tha", 18), ipv4("tpa", 24),
), "ARP for IPv4 over Ethernet"))

IPV4 = register(Layer("ipv4", "L3", 0, M.F_IPV4, 20, (
    bits("version", 0, 1, 4, 4), bits("ihl", 0, 1, 0, 4, "header length in 32-bit words"),
    u8("tos", 1), bits("dscp", 1, 1, 2, 6), bits("ecn", 1, 1, 0, 2),
    u16("total_length", 2), u16("id", 4),
    bits("flags", 6, 2, 13, 3), bits("df", 6, 2, 14, 1), bits("mf", 6, 2, 13, 1),
    bits("frag_offset", 6, 2, 0, 13, "in 8-byte units"),
    u8("ttl", 8), u8("proto", 9), u16("checksum", 10),
    ipv4("src", 12), ipv4("dst", 16),
), "IPv4 (options are counted in ihl)"))

IPV6 = register(Layer("ipv6", "L3", 0, M.F_IPV6, 40, (
    bits("version", 0, 4, 28, 4), bits("traffic_class", 0, 4, 20, 8),
    bits("flow_label", 0, 4, 0, 20),
    u16("payload_length", 4), u8("next_header", 6), u8("hop_limit", 7),
    ipv6("src", 8), ipv6("dst", 24),
), "IPv6 fixed header (extension headers are skipped by the parser)"))

TCP = register(Layer("tcp", "L4", 0, M.F_TCP, 20, (
    u16("src_port", 0), u16("dst_port", 2), u32("seq", 4), u32("ack", 8),
    bits("data_offset", 12, 1, 4, 4, "header length in 32-bit words"),
    bits("flags", 12, 2, 0, 9, "NS CWR ECE URG ACK PSH RST SYN FIN"),
    u16("window", 14), u16("checksum", 16), u16("urgent", 18),
), "TCP"))

UDP = register(Layer("udp", "L4", 0, M.F_UDP, 8, (
    u16("src_port", 0), u16("dst_port", 2), u16("length", 4), u16("checksum", 6),
), "UDP"))

ICMP = register(Layer("icmp", "L4", 0, M.F_ICMP, 8, (
    u8("type", 0), u8("code", 1), u16("checksum", 2), u16("id", 4), u16("seq", 6),
), "ICMP for IPv4 (id and seq as in echo messages)"))

ICMP6 = register(Layer("icmp6", "L4", 0, M.F_ICMP6, 4, (
    u8("type", 0), u8("code", 1), u16("checksum", 2),
    u16("id", 4, "echo"), u16("seq", 6, "echo"),
    bits("nd_flags", 4, 1, 5, 3, "neighbour advertisement R S O"),
    ipv6("target", 8, "neighbour solicitation/advertisement target"),
    u8("nd_opt_type", 24, "first ND option: 1 source, 2 target link-layer address"),
    u8("nd_opt_len", 25), mac("nd_lladdr", 26, "link-layer address of the first ND option"),
), "ICMPv6 with neighbour discovery fields"))

GRE = register(Layer("gre", "L4", 0, M.F_GRE, 4, (
    bits("checksum_present", 0, 2, 15, 1), bits("key_present", 0, 2, 13, 1),
    bits("seq_present", 0, 2, 12, 1), bits("version", 0, 2, 0, 3), u16("proto", 2),
), "GRE (RFC 2784/2890 base header)"))

VXLAN = register(Layer("vxlan", "TUNNEL", 0, M.F_VXLAN, 8, (
    u8("flags", 0), bits("vni", 4, 4, 8, 24),
), "VXLAN (UDP port 4789)"))
