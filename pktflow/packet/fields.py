"""Declaring a protocol header once: a small table of fields.

A `Layer` names where its header starts (a metadata column plus a constant) and lists its
`Field`s (offset, size, optional bit range, kind). Everything else is derived from this one
declaration: the per-packet object API (`pkt.ipv4.src`) in `view.py` and the compiled
batch accessors (`ipv4_src_get(data, meta, b)`) in `accessors.py`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from pktflow.packet import meta as M
from pktflow.packet.addr import IPv4Addr, IPv6Addr, MACAddr, parse_ipv4, parse_ipv6, parse_mac

KINDS = ("uint", "mac", "ipv4", "ipv6")


@dataclass(frozen=True)
class Field:
    """One header field: `size` bytes at `offset`; with `bits`, a bit range of them."""

    name: str
    offset: int
    size: int
    kind: str = "uint"
    shift: int = 0  # bit fields: value = (raw >> shift) & ((1 << bits) - 1)
    bits: int = 0  # 0 means the whole `size` bytes
    doc: str = ""

    @property
    def width(self) -> int:
        """Width of the value in bits."""
        return self.bits or self.size * 8

    @property
    def max_value(self) -> int:
        return (1 << self.width) - 1

    def to_python(self, raw: bytes) -> int:
        """Decode the field's bytes to its value (an address type for address kinds)."""
        value = int.from_bytes(raw, "big")
        if self.bits:
            value = (value >> self.shift) & self.max_value
        if self.kind == "mac":
            return MACAddr(value)
        if self.kind == "ipv4":
            return IPv4Addr(value)
        if self.kind == "ipv6":
            return IPv6Addr(value)
        return value

    def coerce(self, value: object) -> int:
        """Accept an int or, for address kinds, text; check the range; return an int."""
        if isinstance(value, str):
            parse = {"mac": parse_mac, "ipv4": parse_ipv4, "ipv6": parse_ipv6}.get(self.kind)
            if parse is None:
                raise TypeError(f"field {self.name} takes a number, not text {value!r}")
            return parse(value)
        if isinstance(value, bytes | bytearray):
            value = int.from_bytes(value, "big")
        if isinstance(value, numbers.Integral) and not isinstance(value, int):
            value = int(value)  # NumPy integers, as context arrays and compiled code give them
        if not isinstance(value, int):
            raise TypeError(f"field {self.name} takes an int, got {type(value).__name__}")
        if not 0 <= value <= self.max_value:
            raise ValueError(f"field {self.name} is {self.width} bits wide: {value} does not fit")
        return int(value)

    def merge(self, raw: bytes, value: int) -> bytes:
        """The field's new bytes after writing `value` (bit fields keep their neighbours)."""
        if not self.bits:
            return value.to_bytes(self.size, "big")
        old = int.from_bytes(raw, "big")
        mask = self.max_value << self.shift
        return ((old & ~mask) | (value << self.shift)).to_bytes(self.size, "big")


def u8(name: str, offset: int, doc: str = "") -> Field:
    return Field(name, offset, 1, doc=doc)


def u16(name: str, offset: int, doc: str = "") -> Field:
    return Field(name, offset, 2, doc=doc)


def u32(name: str, offset: int, doc: str = "") -> Field:
    return Field(name, offset, 4, doc=doc)


def bits(name: str, offset: int, size: int, shift: int, width: int, doc: str = "") -> Field:
    return Field(name, offset, size, shift=shift, bits=width, doc=doc)


def mac(name: str, offset: int, doc: str = "") -> Field:
    return Field(name, offset, 6, kind="mac", doc=doc)


def ipv4(name: str, offset: int, doc: str = "") -> Field:
    return Field(name, offset, 4, kind="ipv4", doc=doc)


def ipv6(name: str, offset: int, doc: str = "") -> Field:
    return Field(name, offset, 16, kind="ipv6", doc=doc)


BASES = {"START": M.START, "L3": M.L3, "L4": M.L4, "MPLS": M.MPLS, "TUNNEL": M.TUNNEL}


@dataclass(frozen=True)
class Layer:
    """A protocol header: where it starts, when it is present, and its fields.

    The header starts at `meta[b, base] + base_add`. It is present when `flag` is set in
    `meta[b, FLAGS]` (flag 0: always present, as Ethernet is once parsing succeeded).
    """

    name: str
    base: str
    base_add: int
    flag: int
    min_len: int
    fields: tuple[Field, ...]
    doc: str = ""

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ValueError(f"layer {self.name}: unknown base column {self.base}")
        seen = set()
        for f in self.fields:
            if f.name in seen:
                raise ValueError(f"layer {self.name}: field {f.name} declared twice")
            seen.add(f.name)
            if f.kind not in KINDS:
                raise ValueError(f"layer {self.name}.{f.name}: unknown kind {f.kind}")

    @property
    def column(self) -> int:
        return BASES[self.base]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        names = ", ".join(f.name for f in self.fields)
        raise AttributeError(f"{self.name} has no field {name!r}; its fields are: {names}")


LAYERS: dict[str, Layer] = {}


def register(layer: Layer) -> Layer:
    """Add a layer to the registry that the object API and the accessors derive from."""
    if layer.name in LAYERS:
        raise ValueError(f"layer {layer.name} registered twice")
    LAYERS[layer.name] = layer
    return layer
