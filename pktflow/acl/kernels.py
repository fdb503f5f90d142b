"""Numba classification kernels over the arrays built by `build.py`.

Every function takes the table's `state` tuple (one consistent version, read once per
batch) and a parsed packet `(data, meta, b)`. The per-packet functions back the
kernel-bound object protocol of the flow compiler (`kernel_methods`) and the tables'
Python methods alike, so compiled and interpreted code classify identically.

What a rule needs, a packet must have: L3 rules match only IPv4/IPv6 packets (with the
family of their addresses; ANY/ANY rules both); a rule with a port range matches only
packets with a TCP or UDP header (not non-first fragments or truncated L4 headers); L2
rules match only frames with a whole Ethernet header, and a VLAN id only tagged frames.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload

from pktflow.acl.build import NO_PORT, NO_VLAN
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

_ONE = np.uint64(1)
_DEBRUIJN = np.uint64(0x03F79D71B4CA8B09)
_SHIFT = np.uint64(58)
_DEBRUIJN_POS = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _DEBRUIJN_POS[((1 << _i) * 0x03F79D71B4CA8B09 % (1 << 64)) >> 58] = _i
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


@njit(cache=True, nogil=True)
def _lowest_bit(x):
    """Index of the lowest set bit of a non-zero uint64."""
    return _DEBRUIJN_POS[((x & (~x + _ONE)) * _DEBRUIJN) >> _SHIFT]


@njit(cache=True, nogil=True)
def _row(bounds, index, field, key):
    """Row of the interval of `field` that holds `key`: the skip table narrows it to the
    intervals of the key's block; a dense block is halved down to a few, which are then
    counted without branches (sorted starts at or below the key)."""
    skip_at = index[1 + 2 * field]
    block = np.int64(key >> np.uint64(index[2 + 2 * field]))
    lo = index[skip_at + block]
    hi = index[skip_at + block + 1]
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

@njit(cache=True, nogil=True)
def _first(bits, r0, r1, r2, r3, r4, r5, r6):
    """Lowest rule set in all of rows r0..r6 (repeat a row for fewer fields), or -1."""
    pos = -1
    for w in range(bits.shape[1]):
        x = (bits[r0, w] & bits[r1, w] & bits[r2, w] & bits[r3, w] & bits[r4, w]
             & bits[r5, w] & bits[r6, w])
        if x != 0:
            pos = w * 64 + _lowest_bit(x)
            break
    return pos


@njit(cache=True, nogil=True)
def _be(data, b, o, size):
    """Big-endian unsigned integer of `size` (<= 8) bytes at data[b, o]."""
    v = np.uint64(0)
    for i in range(size):
        v = (v << np.uint64(8)) | np.uint64(data[b, o + i])
    return v


@njit(cache=True, nogil=True)
def _ports(data, meta, b, flags):
    sport = np.uint64(NO_PORT)
    dport = np.uint64(NO_PORT)
    if flags & _PORT_FLAGS:
        l4 = meta[b, M.L4]  # TCP and UDP keep both ports at the same offsets
        sport = _be(data, b, l4 + _SPORT, 2)
        dport = _be(data, b, l4 + _DPORT, 2)
    return sport, dport


@njit(cache=True, nogil=True)
def _result(index, nfields, pos, what):
    """Rule index (what=0; -1 if none) or output (what=1; 0 if none) of family rule `pos`."""
    return what - 1 if pos < 0 else index[1 + 2 * nfields + what * index[0] + pos]


@njit(cache=True, nogil=True, inline="always")
def _v4_pos(bounds, bits, index, data, meta, b, flags):
    """Family position of the first IPv4 rule the packet matches, or -1."""
    sport, dport = _ports(data, meta, b, flags)
    l3 = meta[b, M.L3]
    r0 = _row(bounds, index, 0, _be(data, b, l3 + _IP4_SRC, 4))
    return _first(bits, r0, _row(bounds, index, 1, _be(data, b, l3 + _IP4_DST, 4)),
                  _row(bounds, index, 2, np.uint64(meta[b, M.PROTO])),
                  _row(bounds, index, 3, sport), _row(bounds, index, 4, dport), r0, r0)


@njit(cache=True, nogil=True, inline="always")
def _v6_pos(bounds, bits, index, data, meta, b, flags):
    """Family position of the first IPv6 rule the packet matches, or -1."""
    sport, dport = _ports(data, meta, b, flags)
    l3 = meta[b, M.L3]
    return _first(bits,
                  _row(bounds, index, 0, _be(data, b, l3 + _IP6_SRC, 8)),
                  _row(bounds, index, 1, _be(data, b, l3 + _IP6_SRC + 8, 8)),
                  _row(bounds, index, 2, _be(data, b, l3 + _IP6_DST, 8)),
                  _row(bounds, index, 3, _be(data, b, l3 + _IP6_DST + 8, 8)),
                  _row(bounds, index, 4, np.uint64(meta[b, M.PROTO])),
                  _row(bounds, index, 5, sport), _row(bounds, index, 6, dport))


@njit(cache=True, nogil=True, inline="always")
def _l3(v4_bounds, v4_bits, v4_index, v6_bounds, v6_bits, v6_index, data, meta, b, what):
    flags = meta[b, M.FLAGS]
    found = what - 1
    if flags & M.F_IPV4:
        pos = _v4_pos(v4_bounds, v4_bits, v4_index, data, meta, b, flags)
        found = _result(v4_index, 5, pos, what)
    elif flags & M.F_IPV6:
        pos = _v6_pos(v6_bounds, v6_bits, v6_index, data, meta, b, flags)
        found = _result(v6_index, 7, pos, what)
    return found


@njit(cache=True, nogil=True)
def l3_match(state, data, meta, b):
    """Index in the table of the first L3 rule the packet matches, or -1."""
    return _l3(_borrow(state[0]), _borrow(state[1]), _borrow(state[2]), _borrow(state[3]),
               _borrow(state[4]), _borrow(state[5]), _borrow(data), _borrow(meta), b, 0)


@njit(cache=True, nogil=True)
def l3_output(state, data, meta, b):
    """Output of the first matching L3 rule (Accept 1, Reject 0, flow n); 0 if none."""
    return _l3(_borrow(state[0]), _borrow(state[1]), _borrow(state[2]), _borrow(state[3]),
               _borrow(state[4]), _borrow(state[5]), _borrow(data), _borrow(meta), b, 1)


@njit(cache=True, nogil=True)
def l3_permit(state, data, meta, b):
    """True when the first matching L3 rule's output is non-zero (Accept or a flow > 0)."""
    return l3_output(state, data, meta, b) != 0


@njit(cache=True, nogil=True)
def l3_classify_batch(state, data, meta, idx, n, out):
    """Outputs of `n` packets `idx[:n]` into `out[:n]`; one version for the whole batch."""
    v4_bounds, v4_bits, v4_index = _borrow(state[0]), _borrow(state[1]), _borrow(state[2])
    v6_bounds, v6_bits, v6_index = _borrow(state[3]), _borrow(state[4]), _borrow(state[5])
    data_view, meta_view = _borrow(data), _borrow(meta)
    for k in range(n):
        out[k] = _l3(v4_bounds, v4_bits, v4_index, v6_bounds, v6_bits, v6_index, data_view,
                     meta_view, idx[k], 1)


@njit(cache=True, nogil=True, inline="always")
def _l2(bounds, bits, index, data, meta, b, what):
    flags = meta[b, M.FLAGS]
    start = meta[b, M.START]
    type_at = start + 12 + 4 * meta[b, M.NVLAN]
    found = what - 1
    if not flags & M.F_BAD_L2 and type_at + 2 <= start + meta[b, M.LEN]:
        vlan = np.uint64(NO_VLAN)
        if flags & M.F_VLAN:
            raw = _be(data, b, meta[b, _VLAN_COLUMN] + _VID, _VID_SIZE)
            vlan = (raw >> np.uint64(_VID_SHIFT)) & np.uint64(_VID_MAX)
        r0 = _row(bounds, index, 0, _be(data, b, start + _ETH_SRC, 6))
        pos = _first(bits, r0, _row(bounds, index, 1, _be(data, b, start + _ETH_DST, 6)),
                     _row(bounds, index, 2, _be(data, b, type_at, 2)),
                     _row(bounds, index, 3, vlan), r0, r0, r0)
        found = _result(index, 4, pos, what)
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
    bounds, bits, index = _borrow(state[0]), _borrow(state[1]), _borrow(state[2])
    data_view, meta_view = _borrow(data), _borrow(meta)
    for k in range(n):
        out[k] = _l2(bounds, bits, index, data_view, meta_view, idx[k], 1)
