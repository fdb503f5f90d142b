"""Packet operations beyond single fields, shared by both faces of the packet API.

Each operation is one Numba function `f(data, meta, b, *args)`. `PACKET_METHODS[name]`
backs `pkt.name(*args)` and `LAYER_METHODS[(layer, name)]` backs `pkt.layer.name(*args)`,
in interpreted code (through `view.py`) and in compiled user functions (through the
flow compiler's rewrite) alike.
"""

from __future__ import annotations

from collections.abc import Callable

from pktflow.packet.parse import parse_packet

PACKET_METHODS: dict[str, Callable] = {
    "parse": parse_packet,
}

LAYER_METHODS: dict[tuple[str, str], Callable] = {}
