"""The synthesis kernel against Scapy: every byte of every packet, for any settings.

The kernel writes only the fields that step and adds their words to precomputed checksum
bases, so each packet is compared whole with the frame Scapy builds from the values the
range walk says it must carry (headers, lengths, checksums and payload).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Dot1Q, Ether

from pktflow.packet import Pool
from pktflow.packet import meta as M
from pktflow.packet.addr import IPv4Addr, IPv6Addr, MACAddr
from pktflow.pktgen.config import (
    FCS_LEN,
    FIELD_LIMITS,
    FILL_PATTERN,
    MAX_SIZE,
    RANGE_FIELDS,
    TCP_ACK,
    TCP_ACKNUM,
    TCP_SEQ,
    TCP_WINDOW,
    RangeField,
    build_template,
    default_config,
    words_view,
)
from pktflow.pktgen.kernels import synth_batch
from tests.pktgen.test_range import walk

POOLS = {
    "aligned": Pool(64, name="synth-aligned"),
    # Odd headroom and row size: the kernel falls back from word copies to byte copies.
    "odd": Pool(64, bufsize=1613, headroom=13, name="synth-odd"),
}
PACKETS = 9


def expected_frame(cfg, proto: int, values: dict[str, int]) -> bytes:
    """The frame Scapy builds for one packet of `cfg` carrying `values`."""
    frame = Ether(dst=str(MACAddr(values["dst_mac"])), src=str(MACAddr(values["src_mac"])))
    if cfg.vlan:
        frame /= Dot1Q(prio=cfg.cos, vlan=values["vlan"] & 0xFFF)
    if cfg.ipv6:
        ip = IPv6(src=str(IPv6Addr(cfg.src_ip6)), dst=str(IPv6Addr(cfg.dst_ip6)),
                  hlim=values["ttl"])
    else:
        ip = IP(src=str(IPv4Addr(values["src_ip"])), dst=str(IPv4Addr(values["dst_ip"])),
                ttl=values["ttl"], id=0, flags=0)
    if proto == M.IPPROTO_TCP:
        l4 = TCP(sport=values["src_port"], dport=values["dst_port"], seq=TCP_SEQ,
                 ack=TCP_ACKNUM, flags=TCP_ACK, window=TCP_WINDOW)
    elif proto == M.IPPROTO_UDP:
        l4 = UDP(sport=values["src_port"], dport=values["dst_port"])
    elif cfg.ipv6:
        l4 = ICMPv6EchoRequest(id=0, seq=0)
    else:
        l4 = ICMP(type=8, code=0, id=0, seq=0)
    headers = frame / ip / l4
    hdr_len = len(headers)
    flen = min(max(values["size"] - FCS_LEN, hdr_len), MAX_SIZE - FCS_LEN)
    fill = FILL_PATTERN * (MAX_SIZE // len(FILL_PATTERN) + 1)
    return bytes(headers / fill[:flen - hdr_len])


def run_kernel(cfg, pool: Pool, counts: tuple[int, ...]) -> list[bytes]:
    """Frames from one template, made in consecutive kernel calls of the given sizes."""
    t = build_template(cfg)
    cur = t.fields[:, 0].copy()
    words = words_view(pool.data)
    frames: list[bytes] = []
    for n in counts:
        batch = pool.alloc(n)
        try:
            cum = np.zeros(n, dtype=np.int64)
            total = synth_batch(pool.data, words, pool.meta, batch.idx, n, t.frame, t.frame64,
                                t.layout, t.payload_sums, t.fields, t.offsets, cur, cum)
            got = batch.frames()
            assert total == cum[-1] == sum(len(f) for f in got)
            assert list(cum) == list(np.cumsum([len(f) for f in got]))
            frames += got
        finally:
            pool.free(batch)
    return frames


def check(cfg, pool: Pool, counts: tuple[int, ...] = (4, PACKETS - 4)) -> None:
    proto = build_template(cfg).layout[5]  # LAY_PROTO: icmp becomes ICMPv6 on IPv6
    got = run_kernel(cfg, pool, counts)
    n = sum(counts)
    seq = {}
    for name in RANGE_FIELDS:
        r = cfg.ranges[name]
        seq[name] = walk(r.start, r.min, r.max, r.inc, n) if cfg.range else None
    single = {"dst_mac": cfg.dst_mac, "src_mac": cfg.src_mac, "dst_ip": cfg.dst_ip,
              "src_ip": cfg.src_ip, "dst_port": cfg.dport, "src_port": cfg.sport,
              "ttl": cfg.ttl, "vlan": cfg.vlan_id, "size": cfg.size}
    for k, frame in enumerate(got):
        values = {name: seq[name][k] if cfg.range else single[name] for name in RANGE_FIELDS}
        want = expected_frame(cfg, int(proto), values)
        assert frame == want, f"packet {k} of {cfg}: differs from Scapy's {Ether(want)!r}"


def field_range(name: str):
    lo, hi = FIELD_LIMITS[name]
    fixed = st.integers(lo, hi).map(lambda v: RangeField(v, v, v, 0))
    stepping = st.tuples(st.integers(lo, hi), st.integers(lo, hi), st.integers(lo, hi),
                         st.integers(1, min(hi, 70000))).map(
        lambda t: RangeField(t[0], min(t[1], t[2]), max(t[1], t[2]), t[3]))
    narrow = st.integers(lo, max(lo, hi - 5)).flatmap(
        lambda base: st.tuples(st.integers(base, base + 5), st.integers(1, 3)).map(
            lambda t: RangeField(t[0], base, base + 4, t[1])))
    return st.one_of(fixed, stepping, narrow)


configs = st.fixed_dictionaries({
    "proto": st.sampled_from([M.IPPROTO_TCP, M.IPPROTO_UDP, M.IPPROTO_ICMP]),
    "ipv6": st.booleans(),
    "vlan": st.booleans(),
    "cos": st.integers(0, 7),
    "ranges": st.fixed_dictionaries({name: field_range(name) for name in RANGE_FIELDS}),
    "pool": st.sampled_from(sorted(POOLS)),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_range_packets_equal_scapy_frames(c):
    cfg = default_config(0, [0, 1], {0: 0x020000000001, 1: 0x020000000002})
    cfg.proto, cfg.ipv6, cfg.vlan, cfg.cos = c["proto"], c["ipv6"], c["vlan"], c["cos"]
    cfg.ranges = c["ranges"]
    cfg.range = True
    check(cfg, POOLS[c["pool"]])


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("proto", [M.IPPROTO_TCP, M.IPPROTO_UDP, M.IPPROTO_ICMP])
@pytest.mark.parametrize("ipv6", [False, True])
def test_single_packets_equal_scapy_frames(pool, proto, ipv6):
    cfg = default_config(1, [0, 1], {0: 0x020000000001, 1: 0x020000000002})
    cfg.proto, cfg.ipv6, cfg.vlan, cfg.vlan_id, cfg.cos = proto, ipv6, True, 77, 5
    cfg.size, cfg.ttl, cfg.sport, cfg.dport = 333, 9, 65535, 0
    check(cfg, POOLS[pool], counts=(2, 1))


def test_field_values_carry_across_batches():
    cfg = default_config(0, [0], {})
    cfg.range = True
    cfg.ranges["dst_port"] = RangeField(10, 10, 12, 1)
    one_call = run_kernel(cfg, POOLS["aligned"], (7,))
    assert run_kernel(cfg, POOLS["aligned"], (1, 2, 4)) == one_call
