"""Scapy interop (optional extra `pktflow[scapy]`): convert packets both ways.

Importing pktflow never needs Scapy; this module imports it on first use and says how to
install it when it is missing. Conversions copy bytes (they are for tools and tests).
"""

from __future__ import annotations

from typing import Any

from pktflow.packet.build import put
from pktflow.packet.pool import Batch, Pool
from pktflow.packet.view import Packet


def _scapy_l2() -> Any:
    try:
        from scapy.contrib import mpls  # noqa: F401  (teaches Ether to decode MPLS)
        from scapy.layers import l2
    except ImportError:
        raise ImportError(
            "Scapy interop needs Scapy: pip install 'pktflow[scapy]' (or pip install scapy)"
        ) from None
    return l2


def to_scapy(pkt: Packet) -> Any:
    """The packet's frame decoded as a Scapy `Ether` packet (a copy)."""
    return _scapy_l2().Ether(pkt.bytes())


def from_scapy(sp: Any, pool: Pool, b: int | None = None) -> Packet:
    """Put a Scapy packet (built from Ether down) into buffer `b` of `pool`, or into a
    freshly allocated buffer, and parse it. The caller owns a freshly allocated buffer."""
    raw = bytes(sp)
    if b is None:
        batch = pool.alloc(1)
        b = int(batch.idx[0])
    return put(pool, b, raw)


def batch_from_scapy(packets: list[Any], pool: Pool) -> Batch:
    """A parsed batch holding the Scapy packets, in order."""
    batch = pool.alloc(len(packets))
    for k, sp in enumerate(packets):
        put(pool, int(batch.idx[k]), bytes(sp))
    return batch


def batch_to_scapy(batch: Batch) -> list[Any]:
    """Every packet of a batch as a Scapy packet."""
    ether = _scapy_l2().Ether
    return [ether(raw) for raw in batch.frames()]
