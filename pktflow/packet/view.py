"""The per-packet object API: `pkt.ipv4.src`, `pkt.tcp.dst_port = 53`.

A `Packet` is a light view of one buffer of a pool; `pkt.<layer>` returns a view of that
header whose attributes are the fields of its table in `protocols.py`. Asking for a header
the packet does not have raises `HeaderMissing`, which says which headers it has. Values
are the same integers compiled accessors return (addresses as int subclasses that print
as addresses); writes also accept address text. Operations registered in `ops.py` are
methods too (`pkt.update_checksums()`, `pkt.ipv4.rewrite_src("10.0.0.1")`): each calls
the same Numba function compiled code calls, with the pool's arrays and this buffer.
"""

from __future__ import annotations

from typing import Any

from pktflow.packet import meta as M
from pktflow.packet import protocols  # noqa: F401  (fills the layer registry)
from pktflow.packet.addr import parse_ipv4, parse_ipv6, parse_mac
from pktflow.packet.fields import LAYERS, Field, Layer
from pktflow.packet.ops import LAYER_METHODS, OP_ARG_KINDS, PACKET_METHODS
from pktflow.packet.pool import Pool

_PARSERS = {"ipv4": parse_ipv4, "ipv6": parse_ipv6, "mac": parse_mac}


def _bind_op(key: str | tuple[str, str], fn: Any, pkt: Packet) -> Any:
    """`fn(data, meta, b, *args)` as a method of one packet, taking address text where the
    op declares an address argument, and returning plain Python values."""
    kinds = OP_ARG_KINDS.get(key, ())
    name = key if isinstance(key, str) else ".".join(key)

    def method(*args: Any) -> Any:
        conv = [
            _PARSERS[kinds[i]](a) if isinstance(a, str) and i < len(kinds) and kinds[i]
            in _PARSERS else a
            for i, a in enumerate(args)
        ]
        result = fn(pkt.pool.data, pkt.pool.meta, pkt.b, *conv)
        return result.item() if hasattr(result, "item") else result

    method.__name__ = name
    method.__doc__ = fn.__doc__
    return method


class HeaderMissing(AttributeError):
    """Code asked for a header (or a field past the end) that this packet does not have."""


class LayerView:
    """Base of the generated header views; `_layer` is set on each subclass."""

    __slots__ = ("_pkt", "_off")
    _layer: Layer

    def __init__(self, pkt: Packet, off: int) -> None:
        self._pkt = pkt
        self._off = off

    def _span(self, f: Field) -> tuple[int, int]:
        lo = self._off + f.offset
        hi = lo + f.size
        if hi > self._pkt.end:
            raise HeaderMissing(
                f"{self._layer.name}.{f.name} lies past the end of this "
                f"{self._pkt.length}-byte packet"
            )
        return lo, hi

    @property
    def offset(self) -> int:
        """Offset of this header from the start of the frame."""
        return self._off - self._pkt.start

    def __getattr__(self, name: str) -> Any:
        fn = LAYER_METHODS.get((self._layer.name, name))
        field = next((f for f in self._layer.fields if f.name == name), None)
        if field is not None:
            # Python retries a property whose getter raised AttributeError (HeaderMissing is
            # one) here; say why the field failed, not that it does not exist.
            self._span(field)
        if fn is None:
            raise AttributeError(
                f"{self._layer.name} has no field or method {name!r}; fields: "
                f"{', '.join(f.name for f in self._layer.fields)}"
            )
        return _bind_op((self._layer.name, name), fn, self._pkt)

    def fields(self) -> dict[str, Any]:
        """Every field that fits in the packet, by name."""
        out = {}
        for f in self._layer.fields:
            try:
                out[f.name] = getattr(self, f.name)
            except HeaderMissing:
                pass
        return out

    def __repr__(self) -> str:
        inner = " ".join(f"{k}={v}" for k, v in self.fields().items())
        return f"<{self._layer.name} {inner}>"


def _field_property(f: Field) -> property:
    def get(self: LayerView) -> int:
        lo, hi = self._span(f)
        return f.to_python(self._pkt.pool.data[self._pkt.b, lo:hi].tobytes())

    def set(self: LayerView, value: object) -> None:
        lo, hi = self._span(f)
        row = self._pkt.pool.data[self._pkt.b]
        row[lo:hi] = list(f.merge(row[lo:hi].tobytes(), f.coerce(value)))

    return property(get, set, doc=f.doc or f"{f.name}: {f.width}-bit {f.kind}")


def _make_view_class(layer: Layer) -> type[LayerView]:
    attrs: dict[str, Any] = {"__slots__": (), "_layer": layer, "__doc__": layer.doc}
    for f in layer.fields:
        attrs[f.name] = _field_property(f)
    return type(f"{layer.name.title().replace('_', '')}View", (LayerView,), attrs)


VIEWS: dict[str, type[LayerView]] = {name: _make_view_class(ly) for name, ly in LAYERS.items()}


class Packet:
    """One packet in a pool: a view, not a copy. Cheap to make; not for the fast path."""

    __slots__ = ("pool", "b")

    def __init__(self, pool: Pool, b: int) -> None:
        self.pool = pool
        self.b = int(b)

    # Metadata
    @property
    def start(self) -> int:
        return int(self.pool.meta[self.b, M.START])

    @property
    def length(self) -> int:
        return int(self.pool.meta[self.b, M.LEN])

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def port(self) -> int:
        """Input port id (-1 for generated packets)."""
        return int(self.pool.meta[self.b, M.PORT])

    @property
    def flags(self) -> int:
        return int(self.pool.meta[self.b, M.FLAGS])

    @property
    def malformed(self) -> bool:
        return bool(self.flags & M.F_MALFORMED)

    def bytes(self) -> bytes:
        return self.pool.read(self.b)

    def has(self, layer: str) -> bool:
        ly = LAYERS.get(layer)
        if ly is None:
            raise AttributeError(f"unknown layer {layer!r}; known: {', '.join(LAYERS)}")
        if ly.flag == 0:
            return not (self.flags & M.F_BAD_L2) and self.length >= ly.min_len
        return bool(self.flags & ly.flag)

    def layers(self) -> list[str]:
        """Names of the headers this packet has, outermost first."""
        return [name for name in LAYERS if self.has(name)]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("has_") and name[4:] in LAYERS:
            return self.has(name[4:])
        layer = LAYERS.get(name)
        if layer is None:
            fn = PACKET_METHODS.get(name)
            if fn is None:
                raise AttributeError(f"Packet has no attribute {name!r}")
            return _bind_op(name, fn, self)
        if not self.has(name):
            raise HeaderMissing(
                f"packet has no {name} header (it has: {', '.join(self.layers()) or 'none'})"
            )
        off = int(self.pool.meta[self.b, layer.column]) + layer.base_add
        return VIEWS[name](self, off)

    def __repr__(self) -> str:
        return f"<Packet b={self.b} len={self.length} {'/'.join(self.layers())}>"
