"""Building frames from fields, for tests, tools and generator templates (not the fast path).

`frame(eth={...}, ipv4={...}, tcp={...}, payload=b"")` stacks headers in wire order
(eth, vlan, inner_vlan, mpls, arp|ipv4|ipv6, tcp|udp|icmp|icmp6|gre, vxlan, payload),
writes every named field through the same field tables the object API uses, and fills
what follows from the stack unless given: ethertypes and TPIDs, IP versions, header and
total lengths, protocol numbers, TTL/hop limit 64, MPLS bottom-of-stack, the VXLAN port
and every checksum (computed by the same ops compiled kernels call). Give a field
explicitly (even a wrong length or checksum) and it is written as given.

Compiled code builds packets with the init ops instead (`pkt.init_ipv4_udp(n)`, ops.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pktflow.packet import checksum as C
from pktflow.packet import meta as M
from pktflow.packet import protocols  # noqa: F401  (fills the layer registry)
from pktflow.packet.fields import LAYERS
from pktflow.packet.parse import parse_packet
from pktflow.packet.pool import Pool
from pktflow.packet.view import Packet

Fields = Mapping[str, Any]

L3_TYPES = {"arp": M.ETYPE_ARP, "ipv4": M.ETYPE_IPV4, "ipv6": M.ETYPE_IPV6}
L4_PROTOS = {
    "tcp": M.IPPROTO_TCP, "udp": M.IPPROTO_UDP, "icmp": M.IPPROTO_ICMP,
    "icmp6": M.IPPROTO_ICMPV6, "gre": M.IPPROTO_GRE,
}
# Default ports are DPDK Pktgen's, so built and generated traffic look alike.
DEFAULTS: dict[str, dict[str, int]] = {
    "mpls": {"ttl": 64},
    "arp": {"htype": 1, "ptype": M.ETYPE_IPV4, "hlen": 6, "plen": 4, "op": 1},
    "ipv4": {"version": 4, "ttl": 64},
    "ipv6": {"version": 6, "hop_limit": 64},
    "tcp": {"src_port": 1234, "dst_port": 5678, "flags": 0x02, "window": 8192},
    "udp": {"src_port": 1234, "dst_port": 5678},
    "icmp": {"type": 8},
    "icmp6": {"type": 128},
    "gre": {"proto": M.ETYPE_IPV4},
    "vxlan": {"flags": 0x08},
}
EXTRA_KEYS = {"ipv4": {"options"}, "tcp": {"options"}, "gre": {"key", "seq"}}
CHECKSUMMED = ("ipv4", "tcp", "udp", "icmp", "icmp6")


class BuildError(ValueError):
    """The layers or fields given to `frame` do not make a packet; the message says why."""


def _check_keys(layer: str, values: Fields) -> None:
    known = {f.name for f in LAYERS[layer].fields} | EXTRA_KEYS.get(layer, set())
    for key in values:
        if key not in known:
            raise BuildError(f"{layer} has no field {key!r}; its fields are: {', '.join(known)}")


def _padded_options(layer: str, values: Fields) -> bytes:
    opts = bytes(values.get("options", b""))
    opts += b"\x00" * (-len(opts) % 4)
    if len(opts) > 40:
        raise BuildError(f"{layer} options are {len(opts)} bytes; at most 40 fit")
    return opts


def _icmp6_length(values: Fields) -> int:
    if values.get("type", 128) in (135, 136) or "target" in values:
        return 32 if {"nd_opt_type", "nd_opt_len", "nd_lladdr"} & set(values) else 24
    return 8


def _write_fields(buf: bytearray, layer: str, at: int, end: int, values: Fields) -> None:
    """Write `values` into the header that starts at `at` (fields must end before `end`)."""
    table = LAYERS[layer]
    for name, value in values.items():
        if name in EXTRA_KEYS.get(layer, ()):
            continue
        f = table.field(name)
        lo, hi = at + f.offset, at + f.offset + f.size
        if hi > end:
            raise BuildError(f"{layer}.{name} lies past this {end - at}-byte {layer} header")
        try:
            buf[lo:hi] = f.merge(bytes(buf[lo:hi]), f.coerce(value))
        except (TypeError, ValueError) as e:
            raise BuildError(f"{layer}.{name}: {e}") from None


def frame(
    *,
    eth: Fields | None = None,
    vlan: Fields | None = None,
    inner_vlan: Fields | None = None,
    mpls: Fields | Sequence[Fields] | None = None,
    arp: Fields | None = None,
    ipv4: Fields | None = None,
    ipv6: Fields | None = None,
    tcp: Fields | None = None,
    udp: Fields | None = None,
    icmp: Fields | None = None,
    icmp6: Fields | None = None,
    gre: Fields | None = None,
    vxlan: Fields | None = None,
    payload: bytes = b"",
) -> bytes:
    """The bytes of one Ethernet frame with the given headers, lengths and checksums filled.

    Example: `frame(ipv4={"src": "10.0.0.1", "dst": "10.0.0.2"}, udp={"dst_port": 53})`.
    """
    given = {k: dict(v) for k, v in (
        ("eth", eth or {}), ("vlan", vlan), ("inner_vlan", inner_vlan), ("arp", arp),
        ("ipv4", ipv4), ("ipv6", ipv6), ("tcp", tcp), ("udp", udp), ("icmp", icmp),
        ("icmp6", icmp6), ("gre", gre), ("vxlan", vxlan),
    ) if v is not None}
    labels = [dict(mpls)] if isinstance(mpls, Mapping) else [dict(x) for x in mpls or ()]
    for name, values in given.items():
        _check_keys(name, values)
    for values in labels:
        _check_keys("mpls", values)
    l3 = [n for n in L3_TYPES if n in given]
    l4 = [n for n in L4_PROTOS if n in given]
    if len(l3) > 1 or len(l4) > 1:
        raise BuildError(f"one L3 and one L4 header at most, got {', '.join(l3 + l4)}")
    l3name, l4name = (l3 or [None])[0], (l4 or [None])[0]
    if inner_vlan is not None and vlan is None:
        raise BuildError("inner_vlan (QinQ) needs an outer vlan tag too")
    if l4name and l3name not in ("ipv4", "ipv6"):
        raise BuildError(f"{l4name} needs an ipv4 or ipv6 header under it")
    if l4name == "icmp" and l3name != "ipv4" or l4name == "icmp6" and l3name != "ipv6":
        raise BuildError(f"{l4name} goes over {'ipv4' if l4name == 'icmp' else 'ipv6'}")
    if vxlan is not None and l4name != "udp":
        raise BuildError("vxlan needs a udp header under it")

    # Layout: header name -> (offset, length), in wire order.
    ntags = (vlan is not None) + (inner_vlan is not None)
    pos = M.ETH_HLEN + 4 * ntags + 4 * len(labels)
    ipv4_opts = _padded_options("ipv4", given["ipv4"]) if l3name == "ipv4" else b""
    tcp_opts = _padded_options("tcp", given["tcp"]) if l4name == "tcp" else b""
    l3_at = pos
    l3_len = {None: 0, "arp": 28, "ipv4": 20 + len(ipv4_opts), "ipv6": 40}[l3name]
    l4_at = l3_at + l3_len
    if l4name == "gre":
        l4_len = 4 + 4 * (("key" in given["gre"]) + ("seq" in given["gre"]))
    elif l4name == "icmp6":
        l4_len = _icmp6_length(given["icmp6"])
    else:
        l4_len = {None: 0, "tcp": 20 + len(tcp_opts), "udp": 8, "icmp": 8}[l4name]
    vx_at = l4_at + l4_len
    total = vx_at + (8 if vxlan is not None else 0) + len(payload)
    buf = bytearray(total)
    buf[total - len(payload):] = payload

    # Automatic values first, so anything the caller gave overrides them.
    inner_type = M.ETYPE_MPLS if labels else L3_TYPES.get(l3name or "", 0)
    buf[pos - 4 * len(labels) - 2:pos - 4 * len(labels)] = inner_type.to_bytes(2, "big")
    if vlan is not None:
        buf[12:14] = (M.ETYPE_QINQ if inner_vlan is not None else M.ETYPE_VLAN).to_bytes(2, "big")
    if inner_vlan is not None:
        buf[16:18] = M.ETYPE_VLAN.to_bytes(2, "big")
    for i, values in enumerate(labels):
        auto = {**DEFAULTS["mpls"], "s": int(i == len(labels) - 1)}
        at = M.ETH_HLEN + 4 * ntags + 4 * i
        _write_fields(buf, "mpls", at, at + 4, {**auto, **values})
    if l3name == "ipv4":
        buf[l3_at + 20:l4_at] = ipv4_opts
        auto = {"ihl": l3_len // 4, "total_length": total - l3_at,
                "proto": L4_PROTOS.get(l4name or "", 0)}
        given["ipv4"] = {**DEFAULTS["ipv4"], **auto, **given["ipv4"]}
    elif l3name == "ipv6":
        auto = {"payload_length": total - l4_at, "next_header": L4_PROTOS.get(l4name or "", 59)}
        given["ipv6"] = {**DEFAULTS["ipv6"], **auto, **given["ipv6"]}
    elif l3name == "arp":
        given["arp"] = {**DEFAULTS["arp"], **given["arp"]}
    if l4name == "tcp":
        buf[l4_at + 20:vx_at] = tcp_opts
        given["tcp"] = {**DEFAULTS["tcp"], "data_offset": l4_len // 4, **given["tcp"]}
    elif l4name == "udp":
        auto = {"length": total - l4_at}
        if vxlan is not None:
            auto["dst_port"] = M.VXLAN_PORT
        given["udp"] = {**DEFAULTS["udp"], **auto, **given["udp"]}
    elif l4name == "gre":
        g = given["gre"]
        extra = 4
        for key, flag in (("key", "key_present"), ("seq", "seq_present")):
            if key in g:
                buf[l4_at + extra:l4_at + extra + 4] = int(g[key]).to_bytes(4, "big")
                g = {flag: 1, **g}
                extra += 4
        given["gre"] = {**DEFAULTS["gre"], **g}
    elif l4name in ("icmp", "icmp6"):
        given[l4name] = {**DEFAULTS[l4name], **given[l4name]}
    if vxlan is not None:
        given["vxlan"] = {**DEFAULTS["vxlan"], **given["vxlan"]}

    spans = {"eth": (0, 14), "vlan": (12, 18), "inner_vlan": (16, 22),
             "arp": (l3_at, l4_at), "ipv4": (l3_at, l4_at), "ipv6": (l3_at, l4_at),
             "vxlan": (vx_at, vx_at + 8)}
    for name in LAYERS:
        if name in given:
            lo, hi = spans.get(name, (l4_at, vx_at))
            _write_fields(buf, name, lo, hi, given[name])
    return _fill_checksums(bytes(buf), [n for n in CHECKSUMMED
                                        if n in given and "checksum" not in given[n]])


def _fill_checksums(raw: bytes, layers: list[str]) -> bytes:
    """Compute the named layers' checksums with the compiled checksum ops."""
    if not layers:
        return raw
    pool = Pool(buffers=1, bufsize=max(128, len(raw) + 64), headroom=0, name="build")
    pool.write(0, raw)
    parse_packet(pool.data, pool.meta, 0)
    # L4 first would be wrong for nothing here: the IPv4 checksum does not cover L4.
    for name in layers:
        getattr(C, f"{name}_update_checksum")(pool.data, pool.meta, 0)
    return pool.read(0)


def put(pool: Pool, b: int, raw: bytes) -> Packet:
    """Write frame `raw` into buffer `b` of `pool` (at the headroom), parse it, view it."""
    pool.write(b, raw)
    parse_packet(pool.data, pool.meta, b)
    return Packet(pool, b)
