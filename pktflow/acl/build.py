"""Compile a rule list into the arrays the classification kernels walk.

The structure is a per-field bit-vector scheme: each field's value space is cut into
elementary intervals at every rule boundary, and each interval (a row) holds a bit vector
of the rules whose range covers it (bit i = rule i, in table order). A packet's match is
the lowest bit set in the AND of its fields' rows, found a block of words at a time.

A field's row comes from a lookup structure over its value space:
  - fields of up to 32 bits (IPv4 addresses, protocol, ports, ethertype, VLAN id) get a
    multibit trie: a root indexed by the top bits, then 256-entry nodes for the blocks an
    interval boundary cuts. Every key walks the same number of levels (a leaf repeats
    itself), so the walk has no data-dependent branches: a fixed number of loads;
  - wider fields (IPv6 address halves, MACs) get a skip table on the top bits and a short
    search of the intervals of the key's block.

Per family (IPv4 rules, IPv6 rules, Ethernet rules) there are three arrays:
    bounds  uint64 [rows]           start of each interval, fields one after another
    bits    uint64 [rows, W]        rule bit vectors, W = ceil(rules / 64) rounded up to
                                    whole blocks of BLOCK_WORDS
    table   int32                   [R, (lookup offset, shift, levels) per field, rule
                                    index in the table of each family rule (R), output of
                                    each (R), the fields' tries and skip tables]
A packet that lacks ports (or a VLAN tag) looks them up as the sentinel value just above
the field's range, which only rules with ANY in that field cover.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pktflow.acl.rules import L2Rule, L3Rule
from pktflow.packet.addr import CIDR

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
MAC_MAX = (1 << 48) - 1
NO_PORT = 0x10000  # key of a packet without TCP/UDP ports
NO_VLAN = 0x1000  # key of an untagged frame

# Field order of each family; the kernels in kernels.py read keys in the same order.
V4_FIELDS = (("src", U32_MAX), ("dst", U32_MAX), ("proto", 255), ("sport", NO_PORT),
             ("dport", NO_PORT))
V6_FIELDS = (("src_hi", U64_MAX), ("src_lo", U64_MAX), ("dst_hi", U64_MAX),
             ("dst_lo", U64_MAX), ("proto", 255), ("sport", NO_PORT), ("dport", NO_PORT))
L2_FIELDS = (("src", MAC_MAX), ("dst", MAC_MAX), ("ethertype", 0xFFFF), ("vlan", NO_VLAN))

Family = tuple[np.ndarray, np.ndarray, np.ndarray]
MAX_TABLE_BYTES = 1 << 30  # bit vectors grow with rules x intervals; refuse beyond 1 GiB


class TableTooLarge(ValueError):
    """The compiled table would need more memory than MAX_TABLE_BYTES."""


def _cidr_range(c: CIDR | None, bits: int) -> tuple[int, int]:
    if c is None:
        return 0, (1 << bits) - 1
    return c.network, c.network | ((1 << (bits - c.prefix)) - 1)


def _cidr6_ranges(c: CIDR | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """A /p IPv6 prefix as a product of a range of the high and of the low 64 bits."""
    lo, hi = _cidr_range(c, 128)
    if c is None or c.prefix <= 64:
        return (lo >> 64, hi >> 64), (0, U64_MAX)
    return (lo >> 64, lo >> 64), (lo & U64_MAX, hi & U64_MAX)


def _value_range(v: int | None, top: int) -> tuple[int, int]:
    return (0, top) if v is None else (v, v)


def _ports(r: tuple[int, int] | None, sentinel: int) -> tuple[int, int]:
    return (0, sentinel) if r is None else r


def l3_field_ranges(rule: L3Rule, family: int) -> list[tuple[int, int]]:
    """The inclusive range each field of `family` (4 or 6) must fall in for `rule`."""
    proto = _value_range(rule.proto, 255)
    ports = [_ports(rule.src_ports, NO_PORT), _ports(rule.dst_ports, NO_PORT)]
    if family == 4:
        return [_cidr_range(rule.src, 32), _cidr_range(rule.dst, 32), proto, *ports]
    return [*_cidr6_ranges(rule.src), *_cidr6_ranges(rule.dst), proto, *ports]


def l2_field_ranges(rule: L2Rule) -> list[tuple[int, int]]:
    """The inclusive range each L2 field must fall in for `rule`."""
    return [_value_range(rule.src, MAC_MAX), _value_range(rule.dst, MAC_MAX),
            _value_range(rule.ethertype, 0xFFFF), _ports(rule.vlan, NO_VLAN)]


MAX_SKIP_BITS = 16  # skip tables of at most 64 Ki entries (256 KiB) per wide field
TRIE_MAX_WIDTH = 32  # fields up to this wide get a trie, wider ones a skip table
TRIE_STRIDE = 8  # bits each trie level below the root consumes
MAX_ROOT_STRIDE = 16  # trie roots of at most 64 Ki entries (256 KiB)
HEADER = 1  # table[0] = family rules R, then FIELD_WORDS values per field:
FIELD_WORDS = 3  # offset of its trie or skip table, shift of the top bits, trie levels
BLOCK_WORDS = 4  # rule words ANDed per step: no branches inside a block


def _skip_bits(intervals: int, width: int) -> int:
    """Bits of the skip table index: about eight blocks per interval (fewer search steps
    where the intervals spread out), none for tiny fields."""
    return 0 if intervals <= 2 else min(width, intervals.bit_length() + 3, MAX_SKIP_BITS)


def _skip_table(bounds: np.ndarray, width: int, row0: int) -> tuple[np.ndarray, int, int]:
    """Skip table of a wide field (rows of each block's first value, then the last row),
    its shift, and 0 (no trie levels)."""
    k = max(_skip_bits(len(bounds), width), width - 63)  # shifts stay below 64
    shift = width - k
    block_starts = np.arange(1 << k, dtype=np.uint64) << np.uint64(shift)
    skip = row0 + np.searchsorted(bounds, block_starts, side="right") - 1
    return np.append(skip, row0 + len(bounds) - 1), shift, 0


def _root_stride(width: int, intervals: int) -> int:
    """Bits of a trie's root: about four entries per interval, at most MAX_ROOT_STRIDE,
    and such that the levels below take whole TRIE_STRIDE steps."""
    stride = width % TRIE_STRIDE or TRIE_STRIDE
    want = intervals.bit_length() + 2
    while stride < want and stride + TRIE_STRIDE <= min(MAX_ROOT_STRIDE, width):
        stride += TRIE_STRIDE
    return stride


def _trie(bounds: np.ndarray, width: int, row0: int, at: int,
          budget: int) -> tuple[np.ndarray, int, int]:
    """Multibit trie of a field of at most TRIE_MAX_WIDTH bits, placed at offset `at` of
    the family table, its root shift and its number of levels below the root.

    A root entry per block of the top bits, then nodes of 2**TRIE_STRIDE entries for each
    block that an interval boundary cuts: an entry >= 0 is the row of the interval holding
    the whole block, an entry < 0 is minus the offset of the node that splits it further.
    A key's row is then 1 + levels loads (a walk that reaches a row stays on it).
    """
    starts = bounds.astype(np.int64)
    stride = _root_stride(width, len(starts))
    root_shift = shift = width - stride
    prefixes = np.zeros(1, dtype=np.int64)
    levels, size = [], 0
    while True:
        children = ((prefixes[:, None] << stride) | np.arange(1 << stride)).ravel()
        size += len(children)
        if 4 * size > budget:
            raise TableTooLarge(f"the rules' ranges need more than {MAX_TABLE_BYTES >> 20} MiB "
                                "of bit vectors and lookup tables; split the table")
        entries = (row0 + np.searchsorted(starts, children << shift, side="right") - 1)
        entries = entries.astype(np.int32)
        inner = starts[(starts & ((1 << shift) - 1)) != 0] >> shift  # cut blocks (sorted)
        split = np.unique(inner)
        if len(split):
            nodes = at + size + (np.arange(len(split)) << TRIE_STRIDE)
            entries[np.searchsorted(children, split)] = -nodes
        levels.append(entries)
        if not len(split):
            return np.concatenate(levels), root_shift, len(levels) - 1
        prefixes, stride, shift = split, TRIE_STRIDE, shift - TRIE_STRIDE


def build_family(ranges: Sequence[Sequence[tuple[int, int]]], tops: Sequence[int],
                 rule_index: Sequence[int], outputs: Sequence[int]) -> Family:
    """Arrays for one family from each rule's per-field ranges (rules in match order)."""
    nrules = len(ranges)
    blocks = (nrules + 64 * BLOCK_WORDS - 1) // (64 * BLOCK_WORDS)
    words = blocks * BLOCK_WORDS
    nfields = len(tops)
    table = np.array(ranges, dtype=np.uint64).reshape(nrules, nfields, 2)
    positions = np.arange(nrules)
    word_of = positions // 64
    bit_of = np.left_shift(np.uint64(1), (positions % 64).astype(np.uint64))
    lo, hi = table[:, :, 0], table[:, :, 1]
    has_next = hi < np.array(tops, dtype=np.uint64)
    after = np.where(has_next, hi + np.uint64(1), hi)
    all_bounds = [np.unique(np.concatenate((np.zeros(1, np.uint64), lo[:, f],
                                            after[has_next[:, f], f])))
                  for f in range(nfields)]
    nrows = sum(len(bounds) for bounds in all_bounds)
    used = nrows * words * 8  # bytes of bit vectors, then lookup tables too
    if used > MAX_TABLE_BYTES:
        raise TableTooLarge(f"{nrules} rules with these many distinct ranges need more "
                            f"than {MAX_TABLE_BYTES >> 20} MiB of bit vectors; split the table")
    bits = np.zeros((nrows, words), dtype=np.uint64)
    lookups, header = [], [nrules]
    row0 = 0
    lookup_at = HEADER + FIELD_WORDS * nfields + 2 * nrules
    for f, (bounds, top) in enumerate(zip(all_bounds, tops, strict=True)):
        rows = bits[row0:row0 + len(bounds)]
        # Set each rule's bit where its range starts and flip it back past its end; a
        # running XOR down the intervals then leaves it set exactly over its range.
        np.bitwise_xor.at(rows, (np.searchsorted(bounds, lo[:, f]), word_of), bit_of)
        ends = has_next[:, f]
        np.bitwise_xor.at(rows, (np.searchsorted(bounds, after[ends, f]), word_of[ends]),
                          bit_of[ends])
        np.bitwise_xor.accumulate(rows, axis=0, out=rows)
        width = int(top).bit_length()
        if width <= TRIE_MAX_WIDTH:
            lookup, shift, levels = _trie(bounds, width, row0, lookup_at, MAX_TABLE_BYTES - used)
        else:
            lookup, shift, levels = _skip_table(bounds, width, row0)
        used += 4 * len(lookup)
        header += [lookup_at, shift, levels]
        lookups.append(lookup)
        lookup_at += len(lookup)
        row0 += len(bounds)
    if lookup_at >= 2**31:
        raise TableTooLarge("the rules' lookup tables exceed 2**31 entries; split the table")
    index = np.concatenate([np.array(header, dtype=np.int64),
                            np.array(rule_index, dtype=np.int64).reshape(nrules),
                            np.array(outputs, dtype=np.int64).reshape(nrules), *lookups])
    return (
        np.ascontiguousarray(np.concatenate(all_bounds)),
        bits,
        index.astype(np.int32),
    )


def build_l3(rules: Sequence[L3Rule]) -> tuple[np.ndarray, ...]:
    """Kernel state of an L3 table: the IPv4 family's arrays, then the IPv6 family's."""
    state: list[np.ndarray] = []
    for family, fields in ((4, V4_FIELDS), (6, V6_FIELDS)):
        members = [i for i, r in enumerate(rules) if family in r.families]
        ranges = [l3_field_ranges(rules[i], family) for i in members]
        state.extend(build_family(ranges, [top for _, top in fields], members,
                                  [rules[i].output for i in members]))
    return tuple(state)


def build_l2(rules: Sequence[L2Rule]) -> tuple[np.ndarray, ...]:
    """Kernel state of an L2 table: the Ethernet family's arrays."""
    ranges = [l2_field_ranges(r) for r in rules]
    return build_family(ranges, [top for _, top in L2_FIELDS], range(len(rules)),
                        [r.output for r in rules])
