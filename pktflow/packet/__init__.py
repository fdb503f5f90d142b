"""Packet data model and protocol library (layer 1: imports nothing else of pktflow)."""

from pktflow.packet import build, checksum, meta, ops
from pktflow.packet.addr import (
    CIDR,
    AddressError,
    IPv4Addr,
    IPv6Addr,
    MACAddr,
    parse_cidr,
    parse_ipv4,
    parse_ipv6,
    parse_mac,
)
from pktflow.packet.fields import LAYERS, Field, Layer
from pktflow.packet.parse import parse_batch, parse_packet
from pktflow.packet.pool import Batch, Pool, PoolExhausted, default_pool
from pktflow.packet.view import HeaderMissing, Packet

__all__ = [
    "CIDR", "AddressError", "Batch", "Field", "HeaderMissing", "IPv4Addr", "IPv6Addr",
    "build", "checksum", "ops",
    "LAYERS", "Layer", "MACAddr", "Packet", "Pool", "PoolExhausted", "default_pool", "meta",
    "parse_batch", "parse_cidr", "parse_ipv4", "parse_ipv6", "parse_mac", "parse_packet",
]
