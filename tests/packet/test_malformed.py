"""Truncated, corrupt and garbage frames: parsing and the ops never raise, never read or
write outside the frame (poison around it changes nothing) and flag what they reject."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packet_strategies import frames

from pktflow.packet import HeaderMissing, Packet, Pool, build, parse_batch
from pktflow.packet import meta as M
from pktflow.packet.ops import LAYER_METHODS, PACKET_METHODS

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HEADROOM = 256
POOL = Pool(buffers=2, bufsize=1024, headroom=HEADROOM, name="fuzz")
POISONS = (0x00, 0xFF, 0xA5)
# Ops a kernel may call on any packet; each must keep to the frame whatever the input.
SAFE_OPS = [
    (PACKET_METHODS["checksums_ok"], ()),
    (PACKET_METHODS["update_checksums"], ()),
    (LAYER_METHODS[("ipv4", "rewrite_src")], (0x0A000001,)),
    (LAYER_METHODS[("tcp", "rewrite_dst_port")], (80,)),
    (LAYER_METHODS[("udp", "rewrite_src_port")], (53,)),
    (PACKET_METHODS["checksums_ok"], ()),
]


def _parse_poisoned(raw: bytes, poison: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Parse `raw` with `poison` in every byte around it; run the ops; return the meta
    row, the buffer row and the ops' results."""
    POOL.data[0, :] = poison
    POOL.write(0, raw)
    POOL.meta[0, M.FLAGS] = 0
    idx = np.zeros(1, dtype=np.int32)
    parse_batch(POOL.data, POOL.meta, idx, 1)
    results = [fn(POOL.data, POOL.meta, 0, *args) for fn, args in SAFE_OPS]
    return POOL.meta[0].copy(), POOL.data[0].copy(), results


def check_confined(raw: bytes) -> np.ndarray:
    """Parse under three poisons: results must not depend on them, offsets must lie in
    the frame and the bytes around the frame must stay untouched. Returns the meta row."""
    rows = [_parse_poisoned(raw, p) for p in POISONS]
    meta0, _, res0 = rows[0]
    for (meta, data, res), poison in zip(rows, POISONS, strict=True):
        assert np.array_equal(meta, meta0), f"parse read outside the frame (poison {poison})"
        assert res == res0, f"an op read outside the frame (poison {poison})"
        assert np.all(data[:HEADROOM] == poison) and np.all(data[HEADROOM + len(raw):] == poison)
    end = HEADROOM + len(raw)
    for col in (M.L3, M.L4, M.PAYLOAD, M.MPLS, M.TUNNEL):
        assert meta0[col] == -1 or HEADROOM <= meta0[col] <= end, col
    return meta0


@SETTINGS
@given(frames(), st.data())
def test_truncated_frames_are_flagged_and_confined(sp, data):
    raw = bytes(sp)
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    meta = check_confined(raw[:cut])
    flags = int(meta[M.FLAGS])
    mpls_without_payload = flags & M.F_MPLS and meta[M.ETYPE] == -1
    assert flags & M.F_MALFORMED or mpls_without_payload, (cut, sp.summary())


@SETTINGS
@given(frames(), st.data())
def test_ip_packets_cut_short_with_consistent_lengths_are_confined(sp, data):
    """Cut inside L4 and fix the IP length to match, so the L4 parsers see short headers."""
    raw = bytearray(bytes(sp))
    pkt = build.put(POOL, 0, bytes(raw))
    if not pkt.has_ipv4 and not pkt.has_ipv6:
        return
    l3 = pkt.ipv4.offset if pkt.has_ipv4 else pkt.ipv6.offset
    hlen = pkt.ipv4.ihl * 4 if pkt.has_ipv4 else 40
    cut = data.draw(st.integers(l3 + hlen, len(raw)), label="cut")
    if pkt.has_ipv4:
        raw[l3 + 2:l3 + 4] = (cut - l3).to_bytes(2, "big")
    else:
        raw[l3 + 4:l3 + 6] = (cut - l3 - 40).to_bytes(2, "big")
    check_confined(bytes(raw[:cut]))


@SETTINGS
@given(frames(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6))
def test_corrupted_frames_are_confined(sp, flips):
    raw = bytearray(bytes(sp))
    for at, value in flips:
        raw[at % len(raw)] = value
    check_confined(bytes(raw))


ETYPES = [0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x8847]


@SETTINGS
@given(st.sampled_from(ETYPES), st.sampled_from([0x45, 0x4F, 0x41, 0x60, 0x00]),
       st.binary(max_size=120))
def test_garbage_after_a_plausible_start_is_confined(etype, first, tail):
    check_confined(bytes(12) + etype.to_bytes(2, "big") + bytes([first]) + tail)


def _flags(pool: Pool, raw: bytes) -> int:
    return int(build.put(pool, 0, raw).flags)


def test_short_ethernet(pool):
    for n in range(14):
        assert _flags(pool, bytes(range(n))) & M.F_BAD_L2
    pkt = build.put(pool, 0, b"\x00" * 13)
    with pytest.raises(HeaderMissing, match="no ipv4 header"):
        _ = pkt.ipv4


def test_ipv4_header_errors(pool):
    good = build.frame(ipv4={"src": "1.2.3.4"}, tcp={}, payload=b"x" * 10)
    assert _flags(pool, good) & M.F_MALFORMED == 0
    for ihl in range(5):
        raw = bytearray(good)
        raw[14] = 0x40 | ihl
        f = _flags(pool, bytes(raw))
        assert f & M.F_BAD_L3 and not f & M.F_IPV4
    raw = bytearray(good)
    raw[16:18] = (len(good) - 14 + 1).to_bytes(2, "big")  # total length past the frame
    assert _flags(pool, bytes(raw)) & M.F_BAD_L3
    raw = bytearray(good)
    raw[14] = 0x4F  # IHL 60 bytes, longer than the frame
    assert _flags(pool, bytes(raw)) & M.F_BAD_L3
    raw = bytearray(good)
    raw[14] = 0x65  # version 6 under ethertype IPv4
    assert _flags(pool, bytes(raw)) & M.F_BAD_L3
    pkt = build.put(pool, 0, bytes(raw))
    with pytest.raises(HeaderMissing, match="it has: eth"):
        _ = pkt.tcp


def test_ethernet_padding_is_not_l4_payload(pool):
    raw = build.frame(ipv4={}, udp={}, payload=b"ab") + b"\xee" * 16
    pkt = build.put(pool, 0, raw)
    assert pkt.layers() == ["eth", "ipv4", "udp"] and pkt.checksums_ok()


def _ipv6_with_ext(chain: list[int], plen_delta: int = 0, l4: bytes = b"") -> bytes:
    """IPv6 with 8-byte extension headers of the given types, then `l4` as UDP."""
    nexts = chain[1:] + [17]
    ext = b"".join(bytes([nh, 0]) + bytes(6) for nh in nexts)
    body = ext + l4
    ip = bytes([0x60, 0, 0, 0]) + (len(body) + plen_delta).to_bytes(2, "big") \
        + bytes([chain[0] if chain else 17, 64]) + bytes(32)
    return bytes(12) + b"\x86\xdd" + ip + body


def test_ipv6_extension_chains(pool):
    udp = (1).to_bytes(2, "big") + (2).to_bytes(2, "big") + (8).to_bytes(2, "big") + bytes(2)
    ok = _ipv6_with_ext([0, 60, 43], l4=udp)
    f = _flags(pool, ok)
    assert f & M.F_UDP and f & M.F_IPV6_EXT and not f & M.F_MALFORMED
    assert pool.meta[0, M.L4] - pool.meta[0, M.L3] == 40 + 24
    looping = _ipv6_with_ext([60] * 40, l4=udp)  # a chain that never ends in time
    f = _flags(pool, looping)
    assert f & M.F_BAD_L3 and not f & M.F_UDP
    truncated = _ipv6_with_ext([0, 60])[:-4]
    f = _flags(pool, truncated)
    assert f & M.F_BAD_L3
    cut_by_plen = _ipv6_with_ext([0, 60], plen_delta=-12, l4=udp)  # plen ends mid-chain
    assert _flags(pool, cut_by_plen) & M.F_BAD_L3
    for frag_word, is_fragment in ((0x0000, False), (0x0001, False), (0x0008, True)):
        raw = bytearray(_ipv6_with_ext([44], l4=udp))
        raw[54 + 2:54 + 4] = frag_word.to_bytes(2, "big")
        f = _flags(pool, bytes(raw))
        assert bool(f & M.F_FRAGMENT) == is_fragment
        assert bool(f & M.F_UDP) != is_fragment  # a later fragment has no L4 header


def test_l4_header_errors(pool):
    tcp = bytearray(build.frame(ipv4={}, tcp={}, payload=b"12345678"))
    for doff, bad in ((4, True), (5, False), (7, False), (8, True), (15, True)):
        tcp[14 + 20 + 12] = doff << 4
        f = _flags(pool, bytes(tcp))
        assert bool(f & M.F_BAD_L4) == bad and bool(f & M.F_TCP) != bad, doff
        assert f & M.F_IPV4  # the layers above stay usable
    udp = bytearray(build.frame(ipv4={}, udp={}, payload=b"abcd"))
    for length, bad in ((7, True), (8, False), (12, False), (13, True)):
        udp[14 + 20 + 4:14 + 20 + 6] = length.to_bytes(2, "big")
        f = _flags(pool, bytes(udp))
        assert bool(f & M.F_BAD_L4) == bad, length
    gre = bytearray(build.frame(ipv4={}, gre={}))
    gre[14 + 20] = 0xB0  # C, K and S set: 12 more bytes that are not there
    f = _flags(pool, bytes(gre))
    assert f & M.F_BAD_L4 and not f & M.F_GRE
    icmp = build.frame(ipv4={}, icmp={})
    raw = bytearray(icmp[:-2])
    raw[16:18] = (len(raw) - 14).to_bytes(2, "big")
    assert _flags(pool, bytes(raw)) & M.F_BAD_L4


def test_corrupt_metadata_does_not_escape_the_row(pool):
    batch = pool.alloc(1)
    b = int(batch.idx[0])
    pool.write(b, build.frame(ipv4={}, tcp={}))
    cases = ((-5, 60, True), (pool.bufsize - 10, 60, True), (pool.headroom, 10**6, False),
             (100, -3, True))
    for start, length, bad in cases:
        pool.meta[b, M.START] = start
        pool.meta[b, M.LEN] = length
        assert parse_batch(pool.data, pool.meta, batch.idx, 1) == int(bad)
        assert bool(Packet(pool, b).flags & M.F_BAD_L2) == bad
        for col in (M.L3, M.L4, M.PAYLOAD):
            assert -1 <= pool.meta[b, col] < pool.bufsize
        assert not PACKET_METHODS["encapsulate"](pool.data, pool.meta, b, 0, 4) or not bad
