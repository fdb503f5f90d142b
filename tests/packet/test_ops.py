"""Packet operations: checksums (full, incremental, batch), encapsulation, construction,
through the object API and from inside other compiled code (as generated kernels call them)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Dot1Q, Ether

from pktflow.packet import HeaderMissing, Pool, build, parse_batch
from pktflow.packet import checksum as C
from pktflow.packet import meta as M
from pktflow.packet.ops import LAYER_METHODS, PACKET_METHODS

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def _internet_checksum(raw: bytes) -> int:
    raw += b"\x00" * (len(raw) % 2)
    s = sum(int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=2, max_size=40).filter(lambda b: len(b) % 2 == 0), st.data())
def test_checksum_adjust_equals_recomputing(raw, data):
    """RFC 1624: adjusting for a changed word gives the checksum of the changed data."""
    at = data.draw(st.integers(0, len(raw) // 2 - 1)) * 2
    new_word = data.draw(u16)
    old_csum = _internet_checksum(raw)
    old_word = int.from_bytes(raw[at:at + 2], "big")
    changed = raw[:at] + new_word.to_bytes(2, "big") + raw[at + 2:]
    adjusted = C.checksum_adjust(old_csum, old_word, new_word)
    # Both are right in ones' complement; compare as numbers mod 0xFFFF.
    assert adjusted % 0xFFFF == _internet_checksum(changed) % 0xFFFF


@settings(max_examples=60, deadline=None)
@given(u32, u32, u16, u16, st.sampled_from(["tcp", "udp"]), st.booleans())
def test_rewrites_keep_checksums_valid(src, dst, sport, dport, l4, v4_udp_zero):
    pool = Pool(buffers=2, name="rw")
    fields = {"udp": {"checksum": 0}} if l4 == "udp" and v4_udp_zero else {l4: {}}
    pkt = build.put(pool, 0, build.frame(ipv4={"src": "10.0.0.1"}, payload=b"xyz", **fields))
    assert pkt.checksums_ok()
    assert pkt.ipv4.rewrite_src(src) and pkt.ipv4.rewrite_dst(dst)
    view = getattr(pkt, l4)
    assert view.rewrite_src_port(sport) and view.rewrite_dst_port(dport)
    assert (pkt.ipv4.src, pkt.ipv4.dst, view.src_port, view.dst_port) == (src, dst, sport, dport)
    assert pkt.checksums_ok()
    if l4 == "udp" and v4_udp_zero:
        assert pkt.udp.checksum == 0  # "no checksum" stays so
    else:
        assert view.checksum == view.compute_checksum()
    assert pkt.ipv4.checksum == pkt.ipv4.compute_checksum()


def test_rewrite_on_missing_header_is_refused(pool):
    pkt = build.put(pool, 0, build.frame(ipv6={}, udp={}))
    raw = pkt.bytes()
    with pytest.raises(HeaderMissing):
        pkt.ipv4.rewrite_src("1.2.3.4")
    assert not LAYER_METHODS[("ipv4", "rewrite_src")](pool.data, pool.meta, 0, 1)
    assert not LAYER_METHODS[("tcp", "rewrite_dst_port")](pool.data, pool.meta, 0, 1)
    assert pkt.bytes() == raw


@pytest.mark.parametrize("sp", [
    Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / TCP(sport=1, dport=2) / b"payload!",
    Ether() / Dot1Q(vlan=3) / IP(options=b"\x01" * 8) / UDP() / b"odd",
    Ether() / IP() / ICMP(id=7, seq=9) / b"ping",
    Ether() / IPv6(src="2001:db8::1", dst="fe80::2") / TCP() / b"v6",
    Ether() / IPv6() / UDP(sport=5, dport=6) / b"v6 udp",
    Ether() / IPv6() / ICMPv6EchoRequest(id=1, seq=2) / b"echo",
])
def test_batch_update_checksums_matches_scapy(pool, sp):
    raw = bytes(sp)
    batch = pool.alloc(3)
    for b in batch.idx[:3]:
        pool.write(int(b), raw)
    parse_batch(pool.data, pool.meta, batch.idx, batch.n)
    for b in batch.idx[:3]:  # break every checksum
        for csum in ("ipv4", "tcp", "udp", "icmp", "icmp6"):
            view = build.Packet(pool, int(b))
            if view.has(csum):
                getattr(view, csum).checksum ^= 0x5A5A
                assert not view.checksums_ok()
    assert C.update_checksums(pool.data, pool.meta, batch.idx, batch.n) == 3
    assert batch.frames() == [raw] * 3


def test_encapsulate_outer_ipv4_as_tutorial_step_9(pool):
    inner = build.frame(eth={"src": "02:00:00:00:00:01"}, ipv4={"src": "111.2.0.1"},
                        tcp={}, payload=b"p" * 20)
    pkt = build.put(pool, 0, inner)
    start = pkt.start
    assert pkt.encapsulate(14, 20)
    assert pkt.start == start - 20 and pkt.length == len(inner) + 20
    assert pkt.bytes()[:14] == inner[:14] and pkt.bytes()[34:] == inner[14:]
    ip = pkt.bytes()[14:34]
    assert ip == bytes(20)  # the gap is zeroed, not stale headroom bytes
    assert not pkt.has_ipv4  # a zeroed header is not IPv4 yet
    # Write the outer header's version and length at frame offsets, parse, then fields.
    assert pkt.set_u8(14, 0x45) and pkt.set_u16(16, pkt.length - 14)
    assert pkt.get_u16(16) == pkt.length - 14 and not pkt.set_u32(pkt.length - 3, 1)
    pkt.parse()
    outer = pkt.ipv4
    assert outer.offset == 14 and outer.ihl == 5
    outer.ttl, outer.proto = 64, 4
    outer.src, outer.dst = "111.22.3.0", "3.22.111.0"
    outer.update_checksum()
    pkt.parse()
    assert pkt.ipv4.src == "111.22.3.0" and pkt.ipv4.proto == 4 and pkt.checksums_ok()
    sp = Ether(pkt.bytes())
    assert sp[IP].src == "111.22.3.0" and sp[IP].payload[IP].src == "111.2.0.1"
    assert sp[IP].payload[TCP].dport == 5678
    assert pkt.decapsulate(14, 20) and pkt.bytes() == inner and pkt.start == start


def test_push_and_pop_ipv4(pool):
    inner = build.frame(vlan={"vid": 9}, ipv4={"src": "111.2.0.1"}, udp={}, payload=b"x")
    pkt = build.put(pool, 0, inner)
    assert pkt.push_ipv4("111.22.3.0", "3.22.111.0", 4)
    assert pkt.layers() == ["eth", "vlan", "ipv4"] and pkt.checksums_ok()
    sp = Ether(pkt.bytes())
    assert sp[IP].len == len(inner) - 18 + 20 and sp[IP].ttl == 64 and sp[Dot1Q].vlan == 9
    assert sp[IP].chksum == IP(bytes(sp[IP])[:20] + b"")[IP].chksum
    del sp[IP].chksum
    assert bytes(Ether(bytes(sp))) == pkt.bytes()  # Scapy agrees on the checksum
    assert pkt.pop_ipv4() and pkt.bytes() == inner
    assert not pkt.pop_ipv4()  # the inner packet is UDP, not a tunnel
    padded = build.frame(ipv4={}, udp={}) + bytes(18)  # a 60-byte minimum frame
    pkt = build.put(pool, 0, padded)
    assert pkt.push_ipv4("1.1.1.1", "2.2.2.2", 4)
    assert pkt.ipv4.total_length == 20 + 28 and pkt.checksums_ok()
    assert pkt.pop_ipv4() and pkt.bytes() == padded and pkt.udp.checksum_ok()


def test_encapsulate_refuses_without_headroom_or_length():
    pool = Pool(buffers=1, bufsize=256, headroom=16, name="tight")
    raw = build.frame(ipv4={}, udp={})
    pkt = build.put(pool, 0, raw)
    assert not pkt.encapsulate(14, 17) and not pkt.push_ipv4(1, 2, 4)
    assert not pkt.encapsulate(len(raw) + 1, 4) and not pkt.encapsulate(-1, 4)
    assert not pkt.decapsulate(len(raw) - 3, 4) and not pkt.decapsulate(0, -1)
    assert pkt.bytes() == raw and pkt.start == 16
    assert pkt.encapsulate(len(raw), 16)  # appending at the end is an insert too
    assert pkt.length == len(raw) + 16 and pkt.start == 0


IP0 = IP(ttl=64, flags=0, id=0, src="0.0.0.0", dst="0.0.0.0")
IP6 = IPv6(hlim=64, src="::", dst="::")


@pytest.mark.parametrize("op,sp", [
    ("init_ipv4_udp", Ether(type=0x800) / IP0 / UDP(sport=0, dport=0)),
    ("init_ipv4_tcp", Ether(type=0x800) / IP0 / TCP(sport=0, dport=0, flags=0, window=0)),
    ("init_ipv4_icmp", Ether(type=0x800) / IP0 / ICMP(type=8)),
    ("init_ipv6_udp", Ether(type=0x86DD) / IP6 / UDP(sport=0, dport=0)),
    ("init_ipv6_tcp", Ether(type=0x86DD) / IP6 / TCP(sport=0, dport=0, flags=0, window=0)),
    ("init_ipv6_icmp6", Ether(type=0x86DD) / IP6 / ICMPv6EchoRequest()),
])
def test_init_ops_build_what_scapy_builds(pool, op, sp):
    batch = pool.alloc(1)
    b = int(batch.idx[0])
    pool.data[b, :] = 0xEE  # stale bytes from an earlier packet must not leak
    pkt = build.Packet(pool, b)
    assert getattr(pkt, op)(10)
    pkt.update_checksums()
    want = sp / (b"\x00" * 10)
    want = Ether(bytes(Ether(dst="00:00:00:00:00:00", src="00:00:00:00:00:00") / want.payload))
    assert pkt.bytes() == bytes(want)
    assert pkt.checksums_ok() and not pkt.malformed


def test_init_ether_and_limits(pool):
    pkt = build.Packet(pool, int(pool.alloc(1).idx[0]))
    assert pkt.init_ether(60) and pkt.length == 60 and pkt.layers() == ["eth"]
    assert not pkt.init_ether(13) and not pkt.init_ipv4_udp(pool.max_frame)
    assert not pkt.init_ipv4_tcp(-1)


@njit(cache=True, nogil=True)
def _generator_kernel(data, meta, idx, n, init, put_src, set_port, fix, encap):
    """What a compiled generator node does: registry ops called from compiled code."""
    ok = 0
    for k in range(n):
        b = idx[k]
        if init(data, meta, b, 18):
            put_src(data, meta, b, 0x0A000000 + k)
            set_port(data, meta, b, 1000 + k)
            fix(data, meta, b)
            if encap(data, meta, b, 0x6F160300, 0x03166F00, 4):
                ok += 1
    return ok


def test_ops_are_callable_from_compiled_kernels(pool):
    batch = pool.alloc(8)
    got = _generator_kernel(
        pool.data, pool.meta, batch.idx, batch.n, PACKET_METHODS["init_ipv4_udp"],
        LAYER_METHODS[("ipv4", "rewrite_src")], LAYER_METHODS[("udp", "rewrite_dst_port")],
        PACKET_METHODS["update_checksums"], PACKET_METHODS["push_ipv4"])
    assert got == 8
    for k, raw in enumerate(batch.frames()):
        sp = Ether(raw)
        assert sp[IP].src == "111.22.3.0" and sp[IP].dst == "3.22.111.0" and sp[IP].proto == 4
        inner = sp[IP].payload
        assert inner[IP].src == f"10.0.0.{k}" and inner[UDP].dport == 1000 + k
        assert inner[UDP].len == 26
        inner_raw = bytes(inner)
        fresh = IP(inner_raw)
        del fresh.chksum, fresh[UDP].chksum  # Scapy recomputes both
        assert bytes(fresh) == inner_raw
        outer = IP(bytes(sp[IP]))
        del outer.chksum
        assert bytes(outer) == bytes(sp[IP])
    assert np.all(pool.meta[batch.idx[:8], M.FLAGS] & M.F_IPV4)
