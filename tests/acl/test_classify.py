"""First-match classification: tutorial semantics, layer requirements, compiled vs Python,
and random tables against a brute-force reference classifier."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from acl_helpers import (
    GRE,
    ICMP,
    ICMP6,
    TCP,
    UDP,
    Eth,
    Pkt,
    outputs_of,
    parsed_batch,
    reference_l2,
    reference_l3,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit
from numba.core.errors import TypingError

from pktflow.acl import (
    L2Rule,
    L2Rules,
    L3Rule,
    L3Rules,
    RuleError,
    l3_classify_batch,
    l3_classify_ipv4_tuples,
)
from pktflow.acl.build import NO_PORT
from pktflow.packet import Packet, Pool
from pktflow.packet.addr import CIDR

DATA = Path(__file__).resolve().parents[2] / "examples" / "tutorial"  # the tutorial's rules
SOURCES = [0x6F020000 + i for i in range(4)]  # 111.2.0.0 .. 111.2.0.3


def _tutorial_batch(pool: Pool):
    return parsed_batch(pool, [Pkt(4, s, 0x0A000001).frame() for s in SOURCES])


def test_rules1_accepts_three_sources_of_four(pool):
    rules = L3Rules.load(DATA / "rules1.conf")
    batch = _tutorial_batch(pool)
    pkts = [Packet(pool, b) for b in batch.idx[: batch.n]]
    assert [rules.permit(p) for p in pkts] == [True, True, False, True]
    assert [rules.output(p) for p in pkts] == [1, 1, 0, 1]
    assert [rules.match(p) for p in pkts] == [0, 0, 1, 2]
    assert rules.classify(batch).tolist() == [1, 1, 0, 1]


def test_rules2_splits_into_three_flows(pool):
    rules = L3Rules.load(DATA / "rules2.conf")
    batch = _tutorial_batch(pool)
    pkts = [Packet(pool, b) for b in batch.idx[: batch.n]]
    assert [rules.output(p) for p in pkts] == [1, 1, 0, 2]
    assert [rules.permit(p) for p in pkts] == [True, True, False, True]
    assert rules.classify(batch).tolist() == [1, 1, 0, 2]


def test_tutorial_edits_change_the_split(pool):
    """Step 7: Reject rule widened to 111.2.0.2/31; step 8: first rule narrowed to /32."""
    batch = _tutorial_batch(pool)
    step7 = L3Rules.parse("111.2.0.0/31 ANY ANY ANY ANY Accept\n"
                          "111.2.0.2/31 ANY ANY ANY ANY Reject\nANY ANY ANY ANY ANY Accept")
    assert step7.classify(batch).tolist() == [1, 1, 0, 0]
    step8 = L3Rules.parse("111.2.0.0/32 ANY ANY ANY ANY 1\n"
                          "111.2.0.2/32 ANY ANY ANY ANY 0\nANY ANY ANY ANY ANY 2")
    assert step8.classify(batch).tolist() == [1, 2, 0, 2]


def test_packets_lacking_a_rules_layers_do_not_match_it(pool):
    rules = L3Rules.parse(
        "ANY ANY ANY ANY 80 1\n"  # needs TCP or UDP ports
        "ANY ANY tcp ANY ANY 2\n"  # needs only the protocol number
        "10.0.0.0/8 ANY ANY ANY ANY 3\n"  # needs IPv4
        "ANY ANY ANY 0:65535 ANY 4\n"  # the full range is ANY: packets without ports too
    )
    cases = [
        (Pkt(4, 0x0A000001, 1, TCP, 5, 80), 1),
        (Pkt(6, 1, 2, UDP, 5, 80), 1),
        (Pkt(4, 0x0A000001, 1, TCP, 5, 81), 2),
        (Pkt(4, 0x0A000001, 1, TCP, 5, 80, fragment=True), 2),  # fragment: no ports
        (Pkt(4, 0x0A000001, 1, ICMP), 3),
        (Pkt(4, 0x0B000001, 1, GRE), 4),
        (Pkt(6, 7, 8, ICMP6), 4),
        (Pkt(0), 0),  # ARP: no L3 rule matches, output 0
    ]
    batch = parsed_batch(pool, [p.frame() for p in cases_pkts(cases)])
    assert rules.classify(batch).tolist() == [o for _, o in cases]
    assert rules.permit(Packet(pool, batch.idx[7])) is False


def cases_pkts(cases):
    return [p for p, _ in cases]


def test_truncated_and_unparsed_packets_match_nothing(pool):
    rules = L3Rules.parse("ANY ANY ANY ANY ANY 5")
    l2 = L2Rules.parse("ANY ANY ANY 6")
    good = Pkt(4, 1, 2).frame()
    batch = parsed_batch(pool, [good, good[:30], good[:10]])
    assert rules.classify(batch).tolist() == [5, 0, 0]  # IPv4 cut short: F_BAD_L3
    assert l2.classify(batch).tolist() == [6, 6, 0]  # 10 bytes: no Ethernet header
    fresh = pool.alloc(1)  # never parsed: no layers known
    assert rules.classify(fresh).tolist() == [0]


def test_ipv6_prefixes_on_both_halves(pool):
    rules = L3Rules.parse(
        "2001:db8:1::/48    ANY   ANY  ANY  ANY  1\n"
        "2001:db8::5/128    ANY   ANY  ANY  ANY  2\n"
        "2001:db8::/120     ANY   udp  ANY  53   3\n"
        "ANY  fe80::/10  ANY  ANY  ANY  4\n"
    )
    a = int.from_bytes
    ip = lambda text: a(__import__("ipaddress").IPv6Address(text).packed, "big")  # noqa: E731
    cases = [
        (Pkt(6, ip("2001:db8:1:ffff::1"), ip("::1")), 1),
        (Pkt(6, ip("2001:db8::5"), ip("::1")), 2),
        (Pkt(6, ip("2001:db8::6"), ip("::1"), UDP, 9, 53), 3),
        (Pkt(6, ip("2001:db8::106"), ip("::1"), UDP, 9, 53), 0),
        (Pkt(6, ip("2001:db9::1"), ip("fe80::77")), 4),
        (Pkt(4, 0x0A000001, 0xFE800000), 0),  # an IPv4 packet never matches IPv6 rules
    ]
    batch = parsed_batch(pool, [p.frame() for p in cases_pkts(cases)])
    assert rules.classify(batch).tolist() == [o for _, o in cases]


def test_l2_rules(pool):
    rules = L2Rules.parse(
        "02:00:00:00:00:01  ANY  ANY    ANY  1\n"
        "ANY  02:00:00:00:00:0b  ipv6   ANY  2\n"
        "ANY  ANY                ANY    100  3\n"
        "ANY  ANY                arp    ANY  4\n"
        "ANY  ANY                ipv4   Reject\n"
    )
    cases = [
        (Eth(0x020000000001, 7, 0x86DD), 1),
        (Eth(5, 0x02000000000B, 0x86DD), 2),
        (Eth(5, 0x02000000000B, 0x0800), 0),
        (Eth(5, 6, 0x0800, vlan=100), 3),  # the ethertype after the tag is 0x0800
        (Eth(5, 6, 0x0800, vlan=101), 0),
        (Eth(5, 6, 0x0806, vlan=7), 4),
        (Eth(5, 6, 0x86DD), -1),
    ]
    batch = parsed_batch(pool, [e.frame() for e, _ in cases])
    assert rules.classify(batch).tolist() == [max(o, 0) for _, o in cases]
    pkts = [Packet(pool, b) for b in batch.idx[: batch.n]]
    assert [rules.match(p) for p in pkts] == [0, 1, 4, 2, 4, 3, -1]
    assert [rules.permit(p) for p in pkts] == [True, True, False, True, False, True, False]


def test_empty_table_matches_nothing(pool):
    batch = _tutorial_batch(pool)
    assert L3Rules().classify(batch).tolist() == [0] * 4
    assert L2Rules().classify(batch).tolist() == [0] * 4


@njit(cache=True, nogil=True)
def _user_kernel(method, state, data, meta, idx, n, out):
    """What a compiled user function does with a kernel-bound object: state once per batch."""
    for k in range(n):
        out[k] = method(state, data, meta, idx[k])


def test_kernel_bound_protocol_gives_compiled_code_the_same_answers(pool):
    rules = L3Rules.load(DATA / "rules2.conf")
    batch = _tutorial_batch(pool)
    state = rules.kernel_state()
    for name, expect in (("output", [1, 1, 0, 2]), ("permit", [1, 1, 0, 1]),
                         ("match", [0, 0, 1, 2])):
        out = np.zeros(batch.n, dtype=np.int64)
        _user_kernel(L3Rules.kernel_methods[name], state, pool.data, pool.meta, batch.idx,
                     batch.n, out)
        assert out.tolist() == expect
        pkts = [Packet(pool, b) for b in batch.idx[: batch.n]]
        assert [int(getattr(rules, name)(p)) for p in pkts] == expect


# Random tables and packets against the reference classifier.

V4_BASES = [0x0A000000, 0x0A010000, 0xC0A80100, 0x6F020000]
V6_BASES = [0x20010DB8 << 96, (0x20010DB8 << 96) | (1 << 64), 0xFE80 << 112]
PROTOS = [TCP, UDP, ICMP, GRE, ICMP6]
PORTS = [0, 53, 80, 443, 1024, 5678, 65535]


def _cidr(draw, family: int) -> CIDR | None:
    if draw(st.integers(0, 3)) == 0:
        return None
    bits = 32 if family == 4 else 128
    base = draw(st.sampled_from(V4_BASES if family == 4 else V6_BASES))
    prefix = draw(st.sampled_from([0, 8, 16, 24, 31, 32] if family == 4 else
                                  [0, 16, 48, 64, 65, 96, 120, 128]))
    address = base | draw(st.integers(0, 3))
    mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
    return CIDR(family, address & mask, prefix)


def _port_range(draw) -> tuple[int, int] | None:
    if draw(st.booleans()):
        return None
    a, b = sorted(draw(st.sampled_from(PORTS)) + draw(st.integers(0, 2)) * k for k in (0, 1))
    return (min(a, 65535), min(b, 65535)) if (a, b) != (0, 65535) else None


@st.composite
def l3_rules(draw, max_rules: int = 40) -> list[L3Rule]:
    rules = []
    for line in range(1, draw(st.integers(0, max_rules)) + 1):
        family = draw(st.sampled_from([4, 6]))
        src, dst = _cidr(draw, family), _cidr(draw, family)
        proto = draw(st.sampled_from([None, None, TCP, UDP, ICMP, GRE]))
        ports = proto in (None, TCP, UDP)
        sports = _port_range(draw) if ports else None
        dports = _port_range(draw) if ports else None
        rules.append(L3Rule(src, dst, proto, sports, dports, draw(st.integers(0, 9)), line))
    return rules


@st.composite
def l3_packets(draw) -> list[Pkt]:
    pkts = []
    for _ in range(draw(st.integers(1, 24))):
        family = draw(st.sampled_from([4, 4, 6, 0]))
        if family == 0:
            pkts.append(Pkt(0))
            continue
        bases = V4_BASES if family == 4 else V6_BASES
        src = draw(st.sampled_from(bases)) | draw(st.integers(0, 300))
        dst = draw(st.sampled_from(bases)) | draw(st.integers(0, 300))
        proto = draw(st.sampled_from(PROTOS if family == 6 else PROTOS[:-1]))
        sport = draw(st.sampled_from(PORTS)) + draw(st.integers(0, 2))
        dport = draw(st.sampled_from(PORTS)) + draw(st.integers(0, 2))
        pkts.append(Pkt(family, src, dst, proto, min(sport, 65535), min(dport, 65535),
                        fragment=draw(st.integers(0, 9)) == 0))
    return pkts


def _check_l3(pool: Pool, rules: list[L3Rule], pkts: list[Pkt]) -> None:
    table = L3Rules(rules)
    batch = parsed_batch(pool, [p.frame() for p in pkts])
    try:
        expected = [reference_l3(rules, p) for p in pkts]
        views = [Packet(pool, b) for b in batch.idx[: batch.n]]
        assert [table.match(v) for v in views] == expected, (rules, pkts)
        assert table.classify(batch).tolist() == outputs_of(rules, expected).tolist()
        assert [table.permit(v) for v in views] == [
            m >= 0 and rules[m].output != 0 for m in expected]
    finally:
        pool.free(batch)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(rules=l3_rules(), pkts=l3_packets())
def test_random_l3_tables_agree_with_the_reference(rules, pkts):
    _check_l3(POOL, rules, pkts)


POOL = Pool(buffers=2048, name="acl-random")


def _seeded_cidr(rnd: random.Random, fam: int) -> CIDR | None:
    if rnd.random() < 0.3:
        return None
    bits = 32 if fam == 4 else 128
    prefix = rnd.choice([8, 16, 24, 30, 32] if fam == 4 else [32, 64, 100, 128])
    mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
    addr = rnd.choice(V4_BASES if fam == 4 else V6_BASES) | rnd.randrange(256)
    return CIDR(fam, addr & mask, prefix)


def _seeded_ports(rnd: random.Random) -> tuple[int, int] | None:
    if rnd.random() < 0.5:
        return None
    a = rnd.choice(PORTS)
    return a, min(65535, a + rnd.choice([0, 0, 10, 1000]))


def test_large_table_spanning_many_bit_vector_words():
    """700 rules (11 words of rule bits) and 400 packets, seeded, against the reference."""
    rnd = random.Random(4)
    rules = []
    for line in range(1, 701):
        fam = 4 if rnd.random() < 0.8 else 6
        proto = rnd.choice([None, TCP, UDP, ICMP])
        has_ports = proto in (None, TCP, UDP)
        rules.append(L3Rule(_seeded_cidr(rnd, fam), _seeded_cidr(rnd, fam), proto,
                            _seeded_ports(rnd) if has_ports else None,
                            _seeded_ports(rnd) if has_ports else None, rnd.randrange(50), line))
    pkts = []
    for _ in range(400):
        fam = 4 if rnd.random() < 0.8 else 6
        bases = V4_BASES if fam == 4 else V6_BASES
        pkts.append(Pkt(fam, rnd.choice(bases) | rnd.randrange(256),
                        rnd.choice(bases) | rnd.randrange(256), rnd.choice([TCP, UDP, ICMP]),
                        rnd.choice(PORTS), min(65535, rnd.choice(PORTS) + rnd.randrange(20))))
    expected = [reference_l3(rules, p) for p in pkts]
    assert len({m // 64 for m in expected if m >= 0}) > 3  # matches fall in several words
    _check_l3(POOL, rules, pkts)


MACS = [0x020000000001, 0x020000000002, 0x0A0B0C0D0E0F, 0xFFFFFFFFFFFF]


@st.composite
def l2_case(draw) -> tuple[list[L2Rule], list[Eth]]:
    maybe = lambda s: draw(st.one_of(st.none(), s))  # noqa: E731
    rules = []
    for line in range(1, draw(st.integers(0, 30)) + 1):
        vlan = maybe(st.integers(0, 20))
        rules.append(L2Rule(maybe(st.sampled_from(MACS)), maybe(st.sampled_from(MACS)),
                            maybe(st.sampled_from([0x0800, 0x86DD, 0x0806])),
                            None if vlan is None else (vlan, vlan + draw(st.integers(0, 3))),
                            draw(st.integers(0, 9)), line))
    frames = [Eth(draw(st.sampled_from(MACS)), draw(st.sampled_from(MACS)),
                  draw(st.sampled_from([0x0800, 0x86DD, 0x0806])),
                  maybe(st.integers(0, 24))) for _ in range(draw(st.integers(1, 16)))]
    return rules, frames


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=l2_case())
def test_random_l2_tables_agree_with_the_reference(case):
    rules, frames = case
    table = L2Rules(rules)
    batch = parsed_batch(POOL, [e.frame() for e in frames])
    try:
        expected = [reference_l2(rules, e) for e in frames]
        assert [table.match(Packet(POOL, b)) for b in batch.idx[: batch.n]] == expected
        assert table.classify(batch).tolist() == outputs_of(rules, expected).tolist()
    finally:
        POOL.free(batch)


def test_single_family_tables_meet_packets_of_the_other_family(pool):
    """A table with only IPv4 rules has an empty IPv6 family, and the other way round."""
    v4_only = L3Rules.parse("111.2.0.0/30 ANY ANY ANY ANY 5")
    v6_only = L3Rules.parse("2001:db8::/32 ANY ANY ANY ANY 3")
    batch = parsed_batch(pool, [Pkt(6, 0x20010DB8 << 96, 1).frame(),
                                Pkt(6, 0xFE80 << 112, 1, UDP).frame(),
                                Pkt(4, SOURCES[2], 1).frame()])
    assert v4_only.classify(batch).tolist() == [0, 0, 5]
    assert v6_only.classify(batch).tolist() == [3, 0, 0]


def test_kernels_refuse_non_contiguous_arrays(pool):
    rules = L3Rules.parse("ANY ANY ANY ANY ANY 3")
    batch = _tutorial_batch(pool)
    out = np.zeros(batch.n, dtype=np.int32)
    with pytest.raises(TypingError, match="need C-contiguous arrays"):
        l3_classify_batch(rules.kernel_state(), pool.data[::2], pool.meta, batch.idx, 2, out)


# The 5-tuple entry point and the compiled structure's edges.

def _v4_tuples(pkts: list[Pkt]) -> np.ndarray:
    """The columns l3_classify_ipv4_tuples takes; NO_PORT where a packet has no ports."""
    ports = [p.ports or (NO_PORT, NO_PORT) for p in pkts]
    return np.array([[p.src for p in pkts], [p.dst for p in pkts], [p.proto for p in pkts],
                     [s for s, _ in ports], [d for _, d in ports]], dtype=np.uint32)


def test_ipv4_tuples_classify_as_their_packets_do():
    rnd = random.Random(11)
    rules = [L3Rule(_seeded_cidr(rnd, 4), _seeded_cidr(rnd, 4), rnd.choice([None, TCP, UDP]),
                    _seeded_ports(rnd), _seeded_ports(rnd), rnd.randrange(1, 9), line)
             for line in range(1, 301)]
    pkts = [Pkt(4, rnd.choice(V4_BASES) | rnd.randrange(256),
                rnd.choice(V4_BASES) | rnd.randrange(256), rnd.choice([TCP, UDP, ICMP, GRE]),
                rnd.choice(PORTS), rnd.choice(PORTS), fragment=rnd.random() < 0.1)
            for _ in range(300)]
    table = L3Rules(rules)
    tuples = _v4_tuples(pkts)
    kept = tuples.copy()
    out = np.full(len(pkts), -7, dtype=np.int32)
    l3_classify_ipv4_tuples(table.kernel_state(), tuples, len(pkts), out)
    expected = outputs_of(rules, [reference_l3(rules, p) for p in pkts])
    assert out.tolist() == expected.tolist()
    assert np.array_equal(tuples, kept)  # the caller's array is left as it was
    batch = parsed_batch(POOL, [p.frame() for p in pkts])
    try:
        assert table.classify(batch).tolist() == expected.tolist()
    finally:
        POOL.free(batch)


def test_values_at_the_ends_of_each_field(pool):
    """The first and last entries of every trie level: 0.0.0.0, 255.255.255.255, ports 0
    and 65535, protocol 255, next to their neighbours."""
    rules = L3Rules.parse(
        "255.255.255.255 ANY ANY ANY ANY 1\n"
        "0.0.0.0/32 ANY ANY ANY ANY 2\n"
        "ANY 255.255.255.254/31 udp 65535 ANY 3\n"
        "ANY ANY tcp ANY 0 4\n"
        "ANY ANY 255 ANY ANY 5\n"
        "ANY ANY ANY ANY ANY 6\n")
    top = 0xFFFFFFFF
    cases = [
        (Pkt(4, top, 9), 1), (Pkt(4, top - 1, 9), 6), (Pkt(4, 0, 9), 2), (Pkt(4, 1, 9), 6),
        (Pkt(4, 5, top - 1, UDP, 65535, 1), 3), (Pkt(4, 5, top - 1, UDP, 65534, 1), 6),
        (Pkt(4, 5, top - 2, UDP, 65535, 1), 6), (Pkt(4, 5, 9, TCP, 7, 0), 4),
        (Pkt(4, 5, 9, TCP, 7, 1), 6), (Pkt(4, 5, 9, 255), 5), (Pkt(4, 5, 9, 254), 6),
    ]
    batch = parsed_batch(pool, [p.frame() for p, _ in cases])
    assert rules.classify(batch).tolist() == [o for _, o in cases]
    out = np.zeros(len(cases), dtype=np.int32)
    l3_classify_ipv4_tuples(rules.kernel_state(), _v4_tuples(cases_pkts(cases)), len(cases), out)
    assert out.tolist() == [o for _, o in cases]


def test_thousands_of_clustered_rules_agree_with_the_reference():
    """3,000 rules (12 blocks of rule words) on clustered prefixes, so the address tries
    split down to single addresses; the first matches spread over the whole table."""
    rnd = random.Random(5)
    sites = [rnd.getrandbits(32) & 0xFFFFFF00 for _ in range(40)]

    def prefix() -> CIDR | None:
        length = rnd.choice([0, 16, 24, 28, 30, 32, 32, 32])
        if length == 0:
            return None
        return CIDR(4, (rnd.choice(sites) | rnd.randrange(256)) >> (32 - length)
                    << (32 - length), length)

    def inside(c: CIDR | None) -> int:
        return rnd.getrandbits(32) if c is None else c.network | rnd.getrandbits(32 - c.prefix)

    def port(r: tuple[int, int] | None) -> int:
        return rnd.choice(PORTS) if r is None else rnd.randint(*r)

    rules = [L3Rule(prefix(), prefix(), rnd.choice([TCP, UDP]), _seeded_ports(rnd),
                    _seeded_ports(rnd), line % 7, line) for line in range(1, 3001)]
    targets = [rnd.choice(rules) for _ in range(250)]  # each packet inside some rule
    pkts = [Pkt(4, inside(r.src), inside(r.dst), r.proto, port(r.src_ports),
                port(r.dst_ports)) for r in targets]
    expected = [reference_l3(rules, p) for p in pkts]
    assert len({m // 256 for m in expected if m >= 0}) > 4  # hits in many blocks
    _check_l3(POOL, rules, pkts)


def test_ipv4_tuples_out_of_range_are_refused_not_classified():
    state = L3Rules.parse("ANY ANY ANY ANY ANY 3").kernel_state()
    out = np.zeros(4, dtype=np.int32)
    good = _v4_tuples([Pkt(4, 1, 2)] * 2)
    for row, value, what in ((2, 256, "protocol above 255"), (3, NO_PORT + 1, "port above"),
                             (4, 70000, "port above")):
        bad = good.copy()
        bad[row, 1] = value
        with pytest.raises(ValueError, match=what):
            l3_classify_ipv4_tuples(state, bad, 2, out)
    with pytest.raises(ValueError, match=r"shape \(5, >= n\)"):
        l3_classify_ipv4_tuples(state, good, 3, out)
    with pytest.raises(TypingError, match="uint32"):
        l3_classify_ipv4_tuples(state, good.astype(np.int64), 2, out)
    l3_classify_ipv4_tuples(state, np.hstack([good, good])[:, ::2], 2, out)  # any layout
    assert out[:2].tolist() == [3, 3]


def test_lookup_tables_count_toward_the_size_limit(monkeypatch):
    """The bit vectors of these rules fit in 64 KiB, their address trie (a 256 KiB root)
    does not: the table is refused as a whole, with the reason."""
    monkeypatch.setattr("pktflow.acl.build.MAX_TABLE_BYTES", 1 << 16)
    text = "".join(f"10.{i}.{i}.0/24 ANY ANY ANY ANY 1\n" for i in range(100))
    with pytest.raises(RuleError, match="bit vectors and lookup tables"):
        L3Rules.parse(text)
    monkeypatch.undo()
    assert len(L3Rules.parse(text)) == 100
