"""Numba classification kernels over the arrays built by `build.py`.

Every function takes the table's `state` tuple (one consistent version, read once per
batch) and a parsed packet `(data, meta, b)`. The per-packet functions back the
kernel-bound object protocol of the flow compiler (`kernel_methods`) and the tables'
Python methods alike, so compiled and interpreted code classify identically. The batch
kernel classifies a batch's IPv4 packets in phases (gather 5-tuples, one field's rows for
all, then the ANDs), which `l3_classify_ipv4_tuples` also offers for 5-tuples in hand.

What a rule needs, a packet must have: L3 rules match only IPv4/IPv6 packets (with the
family of their addresses; ANY/ANY rules both); a rule with a port range matches only
packets with a TCP or UDP header (not non-first fragments or truncated L4 headers); L2
rules match only frames with a whole Ethernet header, and a VLAN id only tagged frames.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core.errors import TypingError
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic, overload

from pktflow.acl.build import BLOCK_WORDS, FIELD_WORDS, HEADER, NO_PORT, NO_VLAN, TRIE_STRIDE
from pktflow.packet import meta as M
from pktflow.packet import protocols  # noqa: F401  (fills the layer registry)
from pktflow.packet.fields import LAYERS


def _where(layer: str, field: str) -> tuple[int, int, int, int, int]:
    """(metadata column, byte offset from it, size, shift, max value) of a declared field.

    Offsets come from the field tables as compile-time constants rather than through the
    generated accessor module: Numba's on-disk cache of these kernels would otherwise
    refer to one generated module by name and fail to load once that module changes.
    """
    ly = LAYERS[layer]
    f = ly.field(field)
    return ly.column, ly.base_add + f.offset, f.size, f.shift, f.max_value


_IP4_SRC = _where("ipv4", "src")[1]
_IP4_DST = _where("ipv4", "dst")[1]
_IP6_SRC = _where("ipv6", "src")[1]
_IP6_DST = _where("ipv6", "dst")[1]
_SPORT = _where("udp", "src_port")[1]
_DPORT = _where("udp", "dst_port")[1]
assert (_SPORT, _DPORT) == _where("tcp", "src_port")[1:2] + _where("tcp", "dst_port")[1:2]
_ETH_SRC = _where("eth", "src")[1]
_ETH_DST = _where("eth", "dst")[1]
_VLAN_COLUMN, _VID, _VID_SIZE, _VID_SHIFT, _VID_MAX = _where("vlan", "vid")
assert _VID_SIZE == 2 and _where("eth", "src")[2] == _where("eth", "dst")[2] == 6

_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_NONE = np.int64(1) << 62  # no rule found yet
_BYTE = np.uint64(0xFF)
_STRIDE = np.uint64(TRIE_STRIDE)
_PORT_FLAGS = M.F_TCP | M.F_UDP
LINEAR_SEARCH = 16  # intervals counted without branches; larger blocks are halved first


@intrinsic
def _address_as_pointer(typingctx, address):
    """An integer address as a void pointer (to build a view with `carray`)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))
    return types.voidptr(types.uintp), codegen


def _borrow(a):
    """A view of C-contiguous `a` without a reference count, for the caller's lifetime.

    Numba counts references to arrays passed between functions with atomic operations;
    per packet that costs more than the lookup itself. Views made once per call carry
    no count, so the per-packet code below does none. Compiled code only.
    """
    raise TypeError("_borrow is only for compiled code")


@overload(_borrow, inline="always")
def _borrow_typed(a):
    if not isinstance(a, types.Array) or a.layout != "C":
        raise TypingError(f"pktflow.acl kernels need C-contiguous arrays, got {a}")

    def view(a):
        return carray(_address_as_pointer(a.ctypes.data), a.shape, a.dtype)
    return view


def _uint32_columns(a):
    """`a` itself, if it is a uint32 array (5-tuple columns); compiled code only."""
    raise TypeError("_uint32_columns is only for compiled code")


@overload(_uint32_columns, inline="always")
def _uint32_columns_typed(a):
    if not isinstance(a, types.Array) or a.dtype != types.uint32 or a.ndim != 2:
        raise TypingError(f"5-tuple columns must be a 2-D uint32 array, got {a}")
    return lambda a: a


@njit(cache=True, nogil=True, inline="always")
def _trie_row(table, field, key):
    """Row of the interval of a trie field (see build._trie) that holds `key`. Every walk
    takes the field's full number of levels: once at a row, it reads that row again, so
    no branch depends on the key and walks of many packets overlap."""
    at = HEADER + FIELD_WORDS * field
    shift = np.uint64(table[at + 1])
    i = np.uint64(table[at]) + (key >> shift)
    entry = table[i]
    for _ in range(table[at + 2]):
        shift -= _STRIDE
        below = np.uint64(-np.int64(entry)) + ((key >> shift) & _BYTE)
        i = below if entry < 0 else i
        entry = table[i]
    return np.int64(entry)


@njit(cache=True, nogil=True)
def _search_row(bounds, table, field, key):
    """Row of the interval of a wide field that holds `key`: the skip table narrows it to
    the intervals of the key's block; a dense block is halved down to a few, which are
    then counted without branches (sorted starts at or below the key)."""
    at = HEADER + FIELD_WORDS * field
    skip_at = table[at]
    block = np.int64(key >> np.uint64(table[at + 1]))
    lo = np.int64(table[skip_at + block])
    hi = np.int64(table[skip_at + block + 1])
    while hi - lo > LINEAR_SEARCH:
        mid = (lo + hi + 1) >> 1
        if bounds[mid] <= key:
            lo = mid
        else:
            hi = mid - 1
    row = lo
    for i in range(lo + 1, hi + 1):
        row += np.int64(bounds[i] <= key)
    return row


# Every function below that takes arrays has a single return: Numba then drops the
# reference counting of its array arguments, which otherwise costs more than the lookup.

@njit(cache=True, nogil=True, inline="always")
def _first(bits, rows):
    """Lowest rule whose bit is set in every row of `rows` (a tuple), or -1. Words are
    ANDed a block at a time; inside a block the lowest hit is kept without branches, so
    the only unpredictable branch is the one that leaves at the first block with a hit."""
    nblocks = bits.shape[1] // BLOCK_WORDS
    pos = _NONE
    block = 0
    while block < nblocks:
        base = block * BLOCK_WORDS
        for j in range(BLOCK_WORDS - 1, -1, -1):
            x = _ALL
            for r in rows:
                x &= bits[r, base + j]
            hit = (base + j) * 64 + np.int64(trailing_zeros(x))
            pos = hit if x != 0 else pos
        block = nblocks if pos != _NONE else block + 1
    return pos if pos != _NONE else -1


def _big_endian_load(nbytes: int):
    """An intrinsic reading an unaligned big-endian integer of `nbytes` at an address as
    uint64: one load and a byte swap, where Numba would load and shift byte by byte."""
    width = 8 * nbytes

    @intrinsic
    def load(typingctx, address):
        def codegen(context, builder, signature, args):
            pointer = builder.inttoptr(args[0], ir.IntType(width).as_pointer())
            value = builder.bswap(builder.load(pointer, align=1))
            return value if width == 64 else builder.zext(value, ir.IntType(64))
        return types.uint64(types.uintp), codegen
    return load


_load_be16, _load_be32, _load_be64 = (_big_endian_load(n) for n in (2, 4, 8))


@njit(cache=True, nogil=True, inline="always")
def _address(data, b, o):
    """Address of data[b, o] in a C-contiguous array."""
    return (np.uint64(data.ctypes.data) + np.uint64(b) * np.uint64(data.strides[0])
            + np.uint64(o))


# Callers read only header bytes the parser checked lie inside the frame.
@njit(cache=True, nogil=True, inline="always")
def _be16(data, b, o):
    return _load_be16(_address(data, b, o))


@njit(cache=True, nogil=True, inline="always")
def _be32(data, b, o):
    return _load_be32(_address(data, b, o))


@njit(cache=True, nogil=True, inline="always")
def _be64(data, b, o):
    return _load_be64(_address(data, b, o))


@njit(cache=True, nogil=True, inline="always")
def _mac(data, b, o):
    """The 6-byte address at data[b, o] (8 bytes read: both MACs lie before the ethertype)."""
    return _be64(data, b, o) >> np.uint64(16)


@njit(cache=True, nogil=True)
def _ports(data, meta, b, flags):
    sport = np.uint64(NO_PORT)
    dport = np.uint64(NO_PORT)
    if flags & _PORT_FLAGS:
        l4 = meta[b, M.L4]  # TCP and UDP keep both ports at the same offsets
        sport = _be16(data, b, l4 + _SPORT)
        dport = _be16(data, b, l4 + _DPORT)
    return sport, dport


@njit(cache=True, nogil=True)
def _result(table, nfields, pos, what):
    """Rule index (what=0; -1 if none) or output (what=1; 0 if none) of family rule `pos`."""
    return what - 1 if pos < 0 else table[HEADER + FIELD_WORDS * nfields + what * table[0] + pos]


@njit(cache=True, nogil=True, inline="always")
def _v4_keys(data, meta, b, flags):
    """(source, destination, protocol, source port, destination port) of an IPv4 packet."""
    sport, dport = _ports(data, meta, b, flags)
    l3 = meta[b, M.L3]
    return (_be32(data, b, l3 + _IP4_SRC), _be32(data, b, l3 + _IP4_DST),
            np.uint64(meta[b, M.PROTO]), sport, dport)


@njit(cache=True, nogil=True, inline="always")
def _v4_pos(bits, table, keys):
    """Family position of the first IPv4 rule the 5-tuple `keys` matches, or -1."""
    src, dst, proto, sport, dport = keys
    return _first(bits, (_trie_row(table, 0, src), _trie_row(table, 1, dst),
                         _trie_row(table, 2, proto), _trie_row(table, 3, sport),
                         _trie_row(table, 4, dport)))


@njit(cache=True, nogil=True, inline="always")
def _v6_pos(bounds, bits, table, data, meta, b, flags):
    """Family position of the first IPv6 rule the packet matches, or -1."""
    sport, dport = _ports(data, meta, b, flags)
    l3 = meta[b, M.L3]
    rows = (_search_row(bounds, table, 0, _be64(data, b, l3 + _IP6_SRC)),
            _search_row(bounds, table, 1, _be64(data, b, l3 + _IP6_SRC + 8)),
            _search_row(bounds, table, 2, _be64(data, b, l3 + _IP6_DST)),
            _search_row(bounds, table, 3, _be64(data, b, l3 + _IP6_DST + 8)),
            _trie_row(table, 4, np.uint64(meta[b, M.PROTO])), _trie_row(table, 5, sport),
            _trie_row(table, 6, dport))
    return _first(bits, rows)


@njit(cache=True, nogil=True, inline="always")
def _l3(v4_bits, v4_table, v6_bounds, v6_bits, v6_table, data, meta, b, what):
    flags = meta[b, M.FLAGS]
    found = what - 1
    if flags & M.F_IPV4:
        pos = _v4_pos(v4_bits, v4_table, _v4_keys(data, meta, b, flags))
        found = _result(v4_table, 5, pos, what)
    elif flags & M.F_IPV6:
        pos = _v6_pos(v6_bounds, v6_bits, v6_table, data, meta, b, flags)
        found = _result(v6_table, 7, pos, what)
    return found


@njit(cache=True, nogil=True)
def l3_match(state, data, meta, b):
    """Index in the table of the first L3 rule the packet matches, or -1."""
    return _l3(_borrow(state[1]), _borrow(state[2]), _borrow(state[3]), _borrow(state[4]),
               _borrow(state[5]), _borrow(data), _borrow(meta), b, 0)


@njit(cache=True, nogil=True)
def l3_output(state, data, meta, b):
    """Output of the first matching L3 rule (Accept 1, Reject 0, flow n); 0 if none."""
    return _l3(_borrow(state[1]), _borrow(state[2]), _borrow(state[3]), _borrow(state[4]),
               _borrow(state[5]), _borrow(data), _borrow(meta), b, 1)


@njit(cache=True, nogil=True)
def l3_permit(state, data, meta, b):
    """True when the first matching L3 rule's output is non-zero (Accept or a flow > 0)."""
    return l3_output(state, data, meta, b) != 0


@njit(cache=True, nogil=True, inline="always")
def _classify_v4_tuples(bits, table, tuples, n, rows, out):
    """Outputs of the IPv4 5-tuples `tuples[:, :n]` into `out[:n]`, a phase at a time:
    each field's rows for all tuples (one small table at a time, walks that overlap),
    then each tuple's AND. `rows` may be `tuples` itself."""
    for f in range(5):
        for k in range(n):
            rows[f, k] = _trie_row(table, f, np.uint64(tuples[f, k]))
    for k in range(n):
        pos = _first(bits, (rows[0, k], rows[1, k], rows[2, k], rows[3, k], rows[4, k]))
        out[k] = _result(table, 5, pos, 1)


@njit(cache=True, nogil=True)
def l3_classify_ipv4_tuples(state, tuples, n, out):
    """Outputs of `n` IPv4 5-tuples given as columns of `tuples` (uint32, shape (5, >= n):
    source, destination, protocol, source port, destination port; a port is NO_PORT for
    a packet without TCP/UDP ports), as an IPv4 packet with those fields would get."""
    columns = _uint32_columns(tuples)
    if n > columns.shape[1] or n > out.shape[0] or columns.shape[0] != 5:
        raise ValueError("l3_classify_ipv4_tuples: tuples needs shape (5, >= n), out n places")
    for k in range(n):  # a value past its field's range would walk off the tables
        if columns[2, k] > 255:
            raise ValueError("5-tuple column has a protocol above 255:", k)
        if columns[3, k] > NO_PORT or columns[4, k] > NO_PORT:
            raise ValueError("5-tuple column has a port above 65535 (NO_PORT = 65536):", k)
    rows = np.empty((5, n), dtype=np.uint32)
    _classify_v4_tuples(_borrow(state[1]), _borrow(state[2]), columns, n, rows, out)


@njit(cache=True, nogil=True)
def l3_classify_batch(state, data, meta, idx, n, out):
    """Outputs of `n` packets `idx[:n]` into `out[:n]`; one version for the whole batch.

    IPv4 packets' 5-tuples are gathered first and classified a field at a time (see
    `_classify_v4_tuples`); other packets are classified one by one as they come."""
    v4_bits, v4_table = _borrow(state[1]), _borrow(state[2])
    v6_bounds, v6_bits, v6_table = _borrow(state[3]), _borrow(state[4]), _borrow(state[5])
    data_view, meta_view = _borrow(data), _borrow(meta)
    tuples = np.empty((5, n), dtype=np.uint32)
    slots = np.empty(n, dtype=np.int64)
    m = 0
    for k in range(n):
        b = idx[k]
        flags = meta_view[b, M.FLAGS]
        if flags & M.F_IPV4:
            src, dst, proto, sport, dport = _v4_keys(data_view, meta_view, b, flags)
            tuples[0, m], tuples[1, m], tuples[2, m] = src, dst, proto
            tuples[3, m], tuples[4, m] = sport, dport
            slots[m] = k
            m += 1
        else:
            out[k] = _l3(v4_bits, v4_table, v6_bounds, v6_bits, v6_table, data_view,
                         meta_view, b, 1)
    found = np.empty(m, dtype=np.int32)
    _classify_v4_tuples(v4_bits, v4_table, tuples, m, tuples, found)
    for j in range(m):
        out[slots[j]] = found[j]


@njit(cache=True, nogil=True, inline="always")
def _l2(bounds, bits, table, data, meta, b, what):
    flags = meta[b, M.FLAGS]
    start = meta[b, M.START]
    type_at = start + 12 + 4 * meta[b, M.NVLAN]
    found = what - 1
    if not flags & M.F_BAD_L2 and type_at + 2 <= start + meta[b, M.LEN]:
        vlan = np.uint64(NO_VLAN)
        if flags & M.F_VLAN:
            raw = _be16(data, b, meta[b, _VLAN_COLUMN] + _VID)
            vlan = (raw >> np.uint64(_VID_SHIFT)) & np.uint64(_VID_MAX)
        rows = (_search_row(bounds, table, 0, _mac(data, b, start + _ETH_SRC)),
                _search_row(bounds, table, 1, _mac(data, b, start + _ETH_DST)),
                _trie_row(table, 2, _be16(data, b, type_at)), _trie_row(table, 3, vlan))
        found = _result(table, 4, _first(bits, rows), what)
    return found


@njit(cache=True, nogil=True)
def l2_match(state, data, meta, b):
    """Index in the table of the first L2 rule the frame matches, or -1."""
    return _l2(_borrow(state[0]), _borrow(state[1]), _borrow(state[2]), _borrow(data),
               _borrow(meta), b, 0)


@njit(cache=True, nogil=True)
def l2_output(state, data, meta, b):
    """Output of the first matching L2 rule (Accept 1, Reject 0, flow n); 0 if none."""
    return _l2(_borrow(state[0]), _borrow(state[1]), _borrow(state[2]), _borrow(data),
               _borrow(meta), b, 1)


@njit(cache=True, nogil=True)
def l2_permit(state, data, meta, b):
    """True when the first matching L2 rule's output is non-zero."""
    return l2_output(state, data, meta, b) != 0


@njit(cache=True, nogil=True)
def l2_classify_batch(state, data, meta, idx, n, out):
    """Outputs of `n` frames `idx[:n]` into `out[:n]`; one version for the whole batch."""
    bounds, bits, table = _borrow(state[0]), _borrow(state[1]), _borrow(state[2])
    data_view, meta_view = _borrow(data), _borrow(meta)
    for k in range(n):
        out[k] = _l2(bounds, bits, table, data_view, meta_view, idx[k], 1)
