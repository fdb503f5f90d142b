"""The flow compiler: compiled and interpreted kernels agree, fall back with a reason.

Every equivalence test runs the same user function over the same random packets twice,
once compiled and once interpreted, and compares the verdicts and every byte and metadata
column of every buffer afterwards.
"""

from __future__ import annotations

import collections
import logging

import numpy as np
import pytest
from numba import njit

from pktflow.flow.compiler import check_signature, compile_node, copy_context
from pktflow.flow.kinds import VERDICT_ERROR, CompileError, NodeKind
from pktflow.packet import Pool, parse_batch
from pktflow.packet import meta as M

# ------------------------------------------------------------------ random packets

_RNG_SEED = 7


def _eth(dst: bytes, src: bytes, etype: int) -> bytes:
    return dst + src + etype.to_bytes(2, "big")


def _ipv4(src: int, dst: int, proto: int, payload: bytes, ttl: int) -> bytes:
    total = 20 + len(payload)
    head = bytes([0x45, 0]) + total.to_bytes(2, "big") + b"\x00\x01\x40\x00"
    head += bytes([ttl, proto]) + b"\x00\x00" + src.to_bytes(4, "big") + dst.to_bytes(4, "big")
    return head + payload


def _l4(proto: int, sport: int, dport: int, body: bytes) -> bytes:
    if proto == 6:
        return (sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + bytes(8)
                + b"\x50\x02\xff\xff" + bytes(4) + body)
    return sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + (8 + len(body)).to_bytes(
        2, "big") + b"\x00\x00" + body


def random_frames(count: int, seed: int = _RNG_SEED) -> list[bytes]:
    """IPv4 TCP/UDP (sources 111.2.0.0-3, some TTL 0), IPv6 UDP, ARP, VLAN and broken frames."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        dst, src = bytes(rng.integers(0, 256, 6, dtype=np.uint8)), b"\x02" + bytes(5)
        body = bytes(rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8))
        choice = int(rng.integers(0, 10))
        proto = 6 if rng.random() < 0.5 else 17
        sport, dport = int(rng.integers(1024, 1100)), int(rng.choice([53, 80, 5678]))
        ip_src = (111 << 24) | (2 << 16) | int(rng.integers(0, 4))
        ttl = int(rng.choice([0, 1, 64]))
        if choice <= 4:
            frame = _eth(dst, src, 0x0800) + _ipv4(ip_src, 0x0A000002, proto,
                                                   _l4(proto, sport, dport, body), ttl)
        elif choice == 5:
            l4 = _l4(17, sport, dport, body)
            ip6 = (b"\x60\x00\x00\x00" + len(l4).to_bytes(2, "big") + bytes([17, 64])
                   + bytes.fromhex("20010db8" + "0" * 23 + "1")
                   + bytes(rng.integers(0, 2, 16, dtype=np.uint8)))
            frame = _eth(dst, src, 0x86DD) + ip6 + l4
        elif choice == 6:
            arp = bytes.fromhex("0001080006040001") + src + bytes(4) + bytes(6) + bytes(4)
            frame = _eth(dst, src, 0x0806) + arp
        elif choice == 7:
            frame = (_eth(dst, src, 0x8100) + b"\x00\x05\x08\x00"
                     + _ipv4(ip_src, 0x0A000003, 17, _l4(17, sport, dport, body), ttl))
        elif choice == 8:  # IPv4 cut short inside its header
            frame = _eth(dst, src, 0x0800) + b"\x45\x00\x00\x28\x00"
        else:  # shorter than an Ethernet header
            frame = bytes(rng.integers(0, 256, int(rng.integers(1, 14)), dtype=np.uint8))
        frames.append(frame)
    return frames


def load(frames: list[bytes]) -> tuple[Pool, np.ndarray]:
    """A parsed pool holding `frames`; idx lists them in a shuffled buffer order."""
    pool = Pool(buffers=len(frames) + 1, bufsize=256, headroom=64, name="cmp")
    batch = pool.alloc(len(frames))
    for b, frame in zip(batch.idx, frames, strict=True):
        pool.write(int(b), frame)
    parse_batch(pool.data, pool.meta, batch.idx, batch.n)
    # Permute the buffer order so kernels must follow idx, not the row order.
    idx = np.random.default_rng(1).permutation(batch.idx[: batch.n]).astype(np.int32)
    return pool, idx


def ordered(frames: list[bytes]) -> list[bytes]:
    """`frames` in the order the kernels see them after load()."""
    pool, idx = load(frames)
    return [pool.read(int(b)) for b in idx]


FRAMES = random_frames(200)


def run_both(func, kind, ctx=None, ctx_copy=None, frames=FRAMES, batches=1):
    """Run compiled and interpreted over copies of the same packets; assert they agree."""
    results = []
    for mode in ("compiled", "interpreted"):
        kernel = compile_node(func, kind, ctx=ctx, mode=mode)
        assert kernel.path == mode
        pool, idx = load(frames)
        run_ctx = ctx if ctx_copy is None else ctx_copy(ctx)
        out = np.zeros(len(idx), dtype=np.int32)
        verdicts, errors = [], []
        for _ in range(batches):
            errors.append(kernel.run(pool, idx, len(idx), out, run_ctx))
            verdicts.append(out.copy())
        results.append((kernel, np.array(verdicts), errors, pool, run_ctx))
    (kc, vc, ec, pc, _), (ki, vi, ei, pi, _) = results
    np.testing.assert_array_equal(vc, vi)
    assert ec == ei
    np.testing.assert_array_equal(pc.data, pi.data)
    np.testing.assert_array_equal(pc.meta, pi.meta)
    return vc[-1], ec[-1], results


# ------------------------------------------------------------------ user functions


def rewrite_handler(pkt, ctx):
    pkt.eth.src, pkt.eth.dst = pkt.eth.dst, pkt.eth.src
    if pkt.has_ipv4:
        pkt.ipv4.ttl -= 1  # TTL 0 raises: the value does not fit the field
        pkt.ipv4.dst = "3.22.111.0"
        pkt.eth.dst = "00:11:22:33:44:55"


def dns_separator(pkt):
    return pkt.has_tcp and pkt.tcp.dst_port == 53


def source_separator(pkt, ctx):
    return pkt.ipv4.src != "111.2.0.2"  # raises without IPv4, as in the object API


def source_splitter(pkt, ctx):
    return pkt.ipv4.src & 3


def huge_splitter(pkt):
    if pkt.length > 60:
        return 1 << 40
    return -(1 << 40)


def length_drop(pkt, ctx):
    return pkt.length > 70 and pkt.port == -1


def raising_handler(pkt, ctx):
    if pkt.length % 3 == 0:
        raise ValueError("every third length")
    assert pkt.length != 61, "no 61-byte frames"
    pkt.eth.type = pkt.length


def layer_alias_handler(pkt, ctx):
    ip = pkt.ipv4
    ip.tos = ip.ttl
    ip.id += 1  # wraps past 0xffff? no: it raises there, in both paths
    udp = pkt.udp
    udp.src_port = udp.dst_port


def checksum_handler(pkt, ctx):
    if pkt.has_ipv4:
        pkt.ipv4.rewrite_src("10.1.1.1")
        pkt.ipv4.ttl = 9
        pkt.update_checksums()
        return pkt.checksums_ok()
    return False


def ipv6_handler(pkt, ctx):
    if pkt.has_ipv6:
        if pkt.ipv6.dst == "::1":
            pkt.ipv6.hop_limit = 1
        pkt.ipv6.src, pkt.ipv6.dst = pkt.ipv6.dst, pkt.ipv6.src
        pkt.ipv6.dst = "2001:db8::99"


def vector_handler(pkts, mask, ctx):
    for i in range(len(pkts)):
        if mask[i] and pkts[i].has_ipv4:
            pkts[i].ipv4.ttl = 5
    for p in pkts:
        p.eth.src = "02:00:00:00:00:01"


def vector_separator(pkts, mask, answers, ctx):
    for i in range(len(pkts)):
        p = pkts[i]
        answers[i] = mask[i] and p.has_udp


def vector_splitter(pkts, mask, answers):
    for i in range(len(pkts)):
        answers[i] = pkts[i].length % 4


def raising_vector(pkts, mask, ctx):
    pkts[0].eth.type = 7
    if len(pkts) > 10:
        raise RuntimeError("vector too long")


def ctx_handler(pkt, ctx):
    ctx[0] += 1
    ctx[1] += pkt.length


DNS_PORT = 53
SEEN = np.zeros(2, dtype=np.int64)


def _port_of(pkt):
    if pkt.has_tcp:
        return pkt.tcp.dst_port
    return pkt.udp.dst_port


def _bucket(value):
    return value % 3


def global_handler(pkt):
    SEEN[0] += 1
    if _port_of(pkt) == DNS_PORT:
        SEEN[1] += 1
        return 1
    return _bucket(pkt.length) + 1


def make_closure_splitter(threshold, counts):
    def splitter(pkt, ctx):
        counts[pkt.port + 1] += 1
        return 0 if pkt.length < threshold else 1
    return splitter


# A tiny real kernel-bound object: a table from IPv4 source's last byte to a flow index.
@njit(cache=True, nogil=True)
def _route_lookup(state, data, meta, b, default):
    table = state[0]
    if (meta[b, M.FLAGS] & M.F_IPV4) == 0:
        return default
    last = data[b, meta[b, M.L3] + 15]
    return table[last % table.shape[0]]


class RouteTable:
    """Flow index by the low bits of the IPv4 source; `load` swaps the whole table."""

    kernel_methods = {"lookup": _route_lookup}

    def __init__(self, flows: list[int]) -> None:
        self.load(flows)

    def load(self, flows: list[int]) -> None:
        self._table = np.array(flows, dtype=np.int64)

    def kernel_state(self) -> tuple:
        return (self._table,)

    def lookup(self, pkt, default):
        if not pkt.has_ipv4:
            return default
        return int(self._table[(int(pkt.ipv4.src) & 0xFF) % len(self._table)])


ROUTES = RouteTable([0, 1, 2, 1])


def route_splitter(pkt, ctx):
    return ROUTES.lookup(pkt, 9)


# ------------------------------------------------------------------ equivalence


@pytest.mark.parametrize(
    ("func", "kind"),
    [
        (rewrite_handler, NodeKind.HANDLER),
        (dns_separator, NodeKind.SEPARATOR),
        (source_separator, NodeKind.SEPARATOR),
        (source_splitter, NodeKind.SPLITTER),
        (huge_splitter, NodeKind.SPLITTER),
        (length_drop, NodeKind.HANDLER_DROP),
        (raising_handler, NodeKind.HANDLER),
        (layer_alias_handler, NodeKind.HANDLER),
        (checksum_handler, NodeKind.HANDLER_DROP),
        (ipv6_handler, NodeKind.HANDLER),
        (vector_handler, NodeKind.VECTOR_HANDLER),
        (vector_separator, NodeKind.VECTOR_SEPARATOR),
        (vector_splitter, NodeKind.VECTOR_SPLITTER),
        (route_splitter, NodeKind.SPLITTER),
    ],
)
def test_compiled_and_interpreted_agree(func, kind):
    # Two batches: the second sees the first's writes (TTLs run down, errors appear).
    run_both(func, kind, batches=2)


def test_verdicts_follow_the_functions():
    verdicts, errors, _ = run_both(rewrite_handler, NodeKind.HANDLER)
    # Errors: TTL 0 cannot go down, frames shorter than Ethernet have no MACs to swap.
    failing = [i for i, f in enumerate(ordered(FRAMES)) if _ipv4_ttl(f) == 0 or len(f) < 14]
    assert errors == len(failing) > 0
    assert set(np.flatnonzero(verdicts == VERDICT_ERROR)) == set(failing)
    assert set(verdicts[verdicts != VERDICT_ERROR]) == {0}

    verdicts, errors, results = run_both(source_splitter, NodeKind.SPLITTER)
    pool, idx = results[0][3], load(FRAMES)[1]
    for k, b in enumerate(idx):
        has_ip = pool.meta[b, M.FLAGS] & M.F_IPV4
        assert verdicts[k] == (pool.data[b, pool.meta[b, M.L3] + 15] & 3 if has_ip
                               else VERDICT_ERROR)

    verdicts, _, _ = run_both(huge_splitter, NodeKind.SPLITTER)
    assert set(verdicts) <= {2**31 - 1, -(2**31) + 1}  # clamped, never VERDICT_ERROR


def _ipv4_ttl(frame: bytes) -> int | None:
    if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
        return frame[22]
    if len(frame) >= 38 and frame[12:14] == b"\x81\x00" and frame[16:18] == b"\x08\x00":
        return frame[26]
    return None


def test_vector_errors_mark_the_whole_vector():
    verdicts, errors, results = run_both(raising_vector, NodeKind.VECTOR_HANDLER)
    assert errors == len(FRAMES)
    assert (verdicts == VERDICT_ERROR).all()
    small = FRAMES[:5]
    verdicts, errors, _ = run_both(raising_vector, NodeKind.VECTOR_HANDLER, frames=small)
    assert errors == 0 and (verdicts == 0).all()


def test_context_arrays_are_shared_state_of_one_clone():
    ctx = np.zeros(2, dtype=np.int64)
    _, _, results = run_both(ctx_handler, NodeKind.HANDLER, ctx=ctx, ctx_copy=copy_context,
                             batches=3)
    for *_, run_ctx in results:
        assert run_ctx[0] == 3 * len(FRAMES)
        assert run_ctx[1] == 3 * sum(len(f) for f in FRAMES)
    assert ctx.sum() == 0  # each run got its own copy


def test_globals_helpers_and_closures():
    SEEN[:] = 0
    kernel = compile_node(global_handler, NodeKind.SPLITTER, mode="compiled")
    pool, idx = load(FRAMES)
    out = np.zeros(len(idx), dtype=np.int32)
    kernel.run(pool, idx, len(idx), out, None)
    compiled_seen = SEEN.copy()
    SEEN[:] = 0
    run_both(global_handler, NodeKind.SPLITTER)
    assert SEEN[0] > 0 and (compiled_seen * 2 == SEEN).all()  # run_both ran it twice more

    counts_c, counts_i = np.zeros(4, np.int64), np.zeros(4, np.int64)
    outs = []
    for counts, mode in ((counts_c, "compiled"), (counts_i, "interpreted")):
        kernel = compile_node(make_closure_splitter(80, counts), NodeKind.SPLITTER, mode=mode)
        pool, idx = load(FRAMES)
        out = np.zeros(len(idx), dtype=np.int32)
        kernel.run(pool, idx, len(idx), out, None)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(counts_c, counts_i)
    assert counts_c[0] == len(FRAMES)  # written packets have port -1


def test_kernel_bound_state_is_read_once_per_batch():
    table = RouteTable([1, 1, 1, 1])

    def split(pkt, ctx):
        return table.lookup(pkt, 0)

    kernel = compile_node(split, NodeKind.SPLITTER, mode="compiled")
    pool, idx = load(FRAMES)
    out = np.zeros(len(idx), dtype=np.int32)
    kernel.run(pool, idx, len(idx), out, None)
    ipv4 = (pool.meta[idx, M.FLAGS] & M.F_IPV4) != 0
    assert (out[ipv4] == 1).all() and (out[~ipv4] == 0).all()
    table.load([2, 2])  # a live reload: the next batch sees the new table
    kernel.run(pool, idx, len(idx), out, None)
    assert (out[ipv4] == 2).all()


@njit(cache=True, nogil=True)
def _version_of(state, data, meta, b):
    return state[0][0]


class Versioned:
    """A kernel-bound object whose `reload()` installs a new version (a new state)."""

    kernel_methods = {"version": _version_of}

    def __init__(self) -> None:
        self._state = (np.array([1], dtype=np.int64),)

    def kernel_state(self) -> tuple:
        return self._state

    def reload(self) -> None:
        self._state = (self._state[0] + 1,)

    def version(self, pkt) -> int:
        return int(self._state[0][0])


VERSIONED = Versioned()


def _reloads_mid_batch(pkt, ctx):
    """Tags each packet with the version it saw; every fourth packet triggers a reload."""
    ctx[0] += 1
    if ctx[0] % 4 == 0:
        VERSIONED.reload()  # lands in the middle of the batch
    return VERSIONED.version(pkt)


def test_interpreted_path_sees_one_version_per_batch():
    kernel = compile_node(_reloads_mid_batch, NodeKind.SPLITTER, mode="interpreted")
    pool, idx = load(FRAMES[:8])
    out = np.zeros(8, dtype=np.int32)
    ctx = [0]
    first = VERSIONED.version(None)
    for batch in range(3):
        assert kernel.run(pool, idx, 8, out, ctx) == 0
        # The reloads inside a batch take effect at the next batch, as on compiled code.
        assert out.tolist() == [first + 2 * batch] * 8
    assert VERSIONED.version(None) == first + 6  # the reloads themselves did happen

    local = Versioned()  # the same through a closure variable, in a vector function

    def tag(pkts, mask, answers, ctx):
        for i in range(len(pkts)):
            answers[i] = local.version(pkts[i])
            local.reload()

    kernel = compile_node(tag, NodeKind.VECTOR_SPLITTER, mode="interpreted")
    for batch in range(2):
        kernel.run(pool, idx, 8, out, None)
        assert out.tolist() == [1 + 8 * batch] * 8
    assert local.kernel_state()[0][0] == 17


CALLS = 0


def _counts_in_a_global(pkt, ctx):
    global CALLS
    CALLS += 1
    return VERSIONED.version(pkt)


def test_function_assigning_globals_keeps_them_and_says_why(caplog):
    caplog.set_level(logging.INFO, logger="pktflow.flow")
    kernel = compile_node(_counts_in_a_global, NodeKind.SPLITTER, mode="interpreted")
    assert "assigns globals, so VERSIONED is read per packet" in caplog.text
    pool, idx = load(FRAMES[:8])
    out = np.zeros(8, dtype=np.int32)
    before = CALLS
    kernel.run(pool, idx, 8, out, None)
    assert CALLS == before + 8  # the module's global, not a per-batch copy
    assert (out == VERSIONED.version(None)).all()


def test_generator_fills_fresh_packets():
    def gen(pkt, ctx):
        pkt.init_ipv4_udp(18)
        pkt.ipv4.src = "111.2.0.1"
        pkt.udp.dst_port = ctx[0]

    frames = []
    for mode in ("compiled", "interpreted"):
        ctx = (np.int64(5678),)
        kernel = compile_node(gen, NodeKind.GENERATOR, ctx=ctx, mode=mode)
        pool = Pool(buffers=8, bufsize=256, headroom=64)
        batch = pool.alloc(8)
        out = np.ones(8, dtype=np.int32)
        assert kernel.run(pool, batch.idx, 8, out, ctx) == 0
        assert (out == 0).all()
        frames.append(batch.frames())
    assert frames[0] == frames[1]
    assert len(frames[0][0]) == 14 + 20 + 8 + 18 and frames[0][0][36:38] == b"\x16\x2e"


# ------------------------------------------------------------------ paths and reasons


def test_python_objects_fall_back_with_a_reason(caplog):
    names = {"a": 1}

    def uses_dict(pkt, ctx):
        return names["a"] == pkt.length

    with caplog.at_level(logging.INFO, logger="pktflow.flow"):
        kernel = compile_node(uses_dict, NodeKind.SEPARATOR, name="dict-user")
    assert kernel.path == "interpreted"
    assert "names" in kernel.reason and "dict" in kernel.reason
    logged = [r.getMessage() for r in caplog.records if "dict-user" in r.getMessage()]
    assert len(logged) == 1 and "interpreted" in logged[0] and "dict" in logged[0]
    with pytest.raises(CompileError, match="dict-user cannot be compiled.*names"):
        compile_node(uses_dict, NodeKind.SEPARATOR, mode="compiled", name="dict-user")
    # It still works, interpreted.
    pool, idx = load(FRAMES[:4])
    out = np.zeros(4, dtype=np.int32)
    assert kernel.run(pool, idx, 4, out, None) == 0


def test_unsupported_syntax_names_the_line():
    def prints_packet(pkt, ctx):
        print(pkt)

    kernel = compile_node(prints_packet, NodeKind.HANDLER)
    assert kernel.path == "interpreted"
    assert "packet pkt is used as a value" in kernel.reason
    assert "test_compiler.py:" in kernel.reason

    def bad_literal(pkt, ctx):
        return pkt.ipv4.src == "300.1.1.1"

    kernel = compile_node(bad_literal, NodeKind.SEPARATOR)
    assert kernel.path == "interpreted" and '"300.1.1.1"' in kernel.reason


def test_python_object_context_falls_back():
    Ctx = collections.namedtuple("Ctx", "limit")

    def limited(pkt, ctx):
        return pkt.length < ctx.limit

    assert compile_node(limited, NodeKind.SEPARATOR, ctx=Ctx(80)).path == "compiled"

    class Plain:
        limit = 80

    kernel = compile_node(limited, NodeKind.SEPARATOR, ctx=Plain())
    assert kernel.path == "interpreted" and "context is a Plain" in kernel.reason
    # A context of a new type seen only at run time: the node switches, the batch runs.
    kernel = compile_node(limited, NodeKind.SEPARATOR, ctx=Ctx(80))
    pool, idx = load(FRAMES[:20])
    out = np.zeros(20, dtype=np.int32)
    assert kernel.run(pool, idx, 20, out, Plain()) == 0
    assert kernel.path == "interpreted" and "Plain" in kernel.reason
    expected = [int(len(f) < 80) for f in ordered(FRAMES[:20])]
    assert out.tolist() == expected


def test_forced_interpreted_and_last_error():
    kernel = compile_node(raising_handler, NodeKind.HANDLER, mode="interpreted")
    assert kernel.path == "interpreted" and "interpreted" in kernel.reason
    pool, idx = load(FRAMES)
    out = np.zeros(len(idx), dtype=np.int32)
    assert kernel.run(pool, idx, len(idx), out, None) > 0
    text = kernel.last_error()
    assert "raising_handler" in text and ("ValueError" in text or "AssertionError" in text)
    compiled = compile_node(raising_handler, NodeKind.HANDLER)
    assert compiled.path == "compiled" and 'mode="interpreted"' in compiled.last_error()
    with pytest.raises(ValueError, match="mode must be one of"):
        compile_node(raising_handler, NodeKind.HANDLER, mode="fast")


def test_signatures():
    def three(a, b, c):
        pass

    with pytest.raises(TypeError, match=r"handler three takes \(pkt, ctx\); got \(a, b, c\)"):
        check_signature(three, NodeKind.HANDLER)
    def two(a, b):
        pass

    with pytest.raises(TypeError, match=r"vector separator two takes "
                                        r"\(pkts, mask, answers, ctx\); got \(a, b\)"):
        compile_node(two, NodeKind.VECTOR_SEPARATOR)
    assert check_signature(three, NodeKind.VECTOR_SEPARATOR) is False
    assert check_signature(three, NodeKind.VECTOR_HANDLER) is True
    assert check_signature(dns_separator, NodeKind.SEPARATOR) is False
    assert check_signature(lambda pkt, ctx=None: 0, NodeKind.HANDLER) is True
    with pytest.raises(TypeError, match="is not a function"):
        check_signature(42, NodeKind.HANDLER)


def test_copy_context():
    class Counter:
        def __init__(self):
            self.n = 0

        def copy(self):
            twin = Counter()
            twin.n = self.n + 100
            return twin

    assert copy_context(None) is None
    assert copy_context(Counter()).n == 100
    nested = {"hits": [1, 2]}
    twin = copy_context(nested)
    twin["hits"].append(3)
    assert nested == {"hits": [1, 2]}
    arr = np.arange(3)
    arr_copy = copy_context(arr)
    arr_copy[0] = 9
    assert arr[0] == 0


def test_acl_table_is_kernel_bound(tmp_path):
    """Tutorial steps 5 and 8: separate and split by a real rules file, reloaded live."""
    from pktflow.acl.table import L3Rules

    rules = tmp_path / "rules2.conf"
    rules.write_text("111.2.0.0/31 ANY ANY ANY ANY 1\n111.2.0.2/32 ANY ANY ANY ANY 0\n"
                     "ANY ANY ANY ANY ANY 2\n")
    table = L3Rules.load(rules)

    def by_rules(pkt, ctx):
        return table.output(pkt)

    def accepted(pkt, ctx):
        return table.permit(pkt)

    frames = FRAMES  # IPv6 frames included: an IPv4-only table leaves them unmatched
    assert any(f[12:14] == b"\x86\xdd" for f in frames)
    run_both(accepted, NodeKind.SEPARATOR, frames=frames)
    verdicts, errors, results = run_both(by_rules, NodeKind.SPLITTER, frames=frames)
    assert errors == 0
    sources = {}
    for k, frame in enumerate(ordered(frames)):
        if _ipv4_ttl(frame) is not None and frame[12:14] == b"\x08\x00":
            sources.setdefault(frame[29], set()).add(int(verdicts[k]))
    assert sources == {0: {1}, 1: {1}, 2: {0}, 3: {2}}
    # IPv6 (and ARP, broken) frames match only the ANY rule
    assert {int(verdicts[k]) for k, frame in enumerate(ordered(frames))
            if frame[12:14] == b"\x86\xdd"} == {2}

    kernel = results[0][0]
    pool, idx = load(frames)
    out = np.zeros(len(idx), dtype=np.int32)
    rules.write_text("111.2.0.0/32 ANY ANY ANY ANY 1\nANY ANY ANY ANY ANY 2\n")
    table.reload()
    kernel.run(pool, idx, len(idx), out, None)
    after = {}
    for k, frame in enumerate(ordered(frames)):
        if _ipv4_ttl(frame) is not None and frame[12:14] == b"\x08\x00":
            after.setdefault(frame[29], set()).add(int(out[k]))
    assert after == {0: {1}, 1: {2}, 2: {2}, 3: {2}}
