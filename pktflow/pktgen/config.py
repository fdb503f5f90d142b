"""Per-port generator settings with Pktgen's defaults, and the packet template they make.

A port's settings (single-packet fields, range fields, mode flags, count, rate) change
only through commands; each change bumps `version`, and the port's worker rebuilds its
`Template` between batches. The template holds the frame bytes at the largest size and
the per-field start/min/max/inc table that the synthesis kernel steps through, so single
mode is simply range mode with every increment zero.

Sizes follow Pktgen: `size` counts the 4-byte FCS, so `set 0 size 64` sends 60-byte
frames; rates count 20 more bytes of preamble and inter-frame gap per frame.
"""

from __future__ import annotations

import copy
import struct
from dataclasses import dataclass, field

import numpy as np

from pktflow.packet import meta as M
from pktflow.packet.addr import MACAddr

FCS_LEN = 4
WIRE_OVERHEAD = 20  # preamble + SFD + inter-frame gap, bytes per frame on the wire
MIN_SIZE = 64  # Pktgen sizes include the FCS
MAX_SIZE = 1518
DEFAULT_SPEED_MBPS = 10_000
DEFAULT_BURST = 32  # Pktgen's DEFAULT_PKT_TX_BURST
MAX_BURST = 256  # Pktgen's MAX_PKT_TX_BURST
TCP_ACK = 0x10
TCP_SEQ = 0x12378
TCP_ACKNUM = 0x12390
TCP_WINDOW = 8192
# Pktgen's "abc" fill pattern for payload bytes.
FILL_PATTERN = b"abcdefghijklmnopqrstuvwxyz0123456789"

PROTOS = {"tcp": M.IPPROTO_TCP, "udp": M.IPPROTO_UDP, "icmp": M.IPPROTO_ICMP}
PROTO_NAMES = {v: k for k, v in PROTOS.items()}

# Range fields, in the order of the kernel's parameter rows.
RANGE_FIELDS = ("dst_mac", "src_mac", "dst_ip", "src_ip", "dst_port", "src_port", "ttl",
                "vlan", "size")
F_DST_MAC, F_SRC_MAC, F_DST_IP, F_SRC_IP, F_DST_PORT, F_SRC_PORT, F_TTL, F_VLAN, F_SIZE = range(9)
# A RangeField `inc` that draws every value uniformly from [min, max] instead of stepping
# (the kernel pktgen's *_RND flags).
RANDOM_STEP = -(1 << 62)
FIELD_LIMITS = {
    "dst_mac": (0, (1 << 48) - 1), "src_mac": (0, (1 << 48) - 1),
    "dst_ip": (0, (1 << 32) - 1), "src_ip": (0, (1 << 32) - 1),
    "dst_port": (0, 65535), "src_port": (0, 65535), "ttl": (0, 255),
    "vlan": (1, 4095), "size": (MIN_SIZE, MAX_SIZE),
}

# Columns of Template.layout (int64), read by the synthesis kernel.
LAY_L3, LAY_L4, LAY_PAYLOAD, LAY_VLAN, LAY_IPV6, LAY_PROTO, LAY_HDR_LEN, LAY_COS = range(8)
LAY_IP_BASE = 8  # IPv4 header word sum without the bytes the kernel writes per packet
LAY_L4_BASE = 9  # the same for the L4 checksum (header, pseudo header, fixed-size payload)
LAY_FLEN = 10  # frame length when the size does not step, else 0
LAY_L4_CSUM = 11  # offset of the L4 checksum word from the L4 header
LAY_ADDR_PSEUDO = 12  # 1 when stepped IPv4 addresses also enter the L4 pseudo header
LAY_NCOLS = 13

@dataclass
class RangeField:
    """One stepped field: the first packet carries `start`, each next one adds `inc`;
    past `max` it wraps to `min` (below `min` to `max`), as Pktgen's range mode does."""

    start: int
    min: int
    max: int
    inc: int


@dataclass
class PortConfig:
    """Everything `set`, `range` and `enable` change on one port."""

    port_id: int
    size: int = MIN_SIZE
    count: int = 0  # 0 sends until stopped, as in Pktgen
    rate: float = 100.0  # percent of the port speed
    pps: int = 0  # packets per second; when > 0 it overrides `rate`
    burst: int = DEFAULT_BURST
    sport: int = 1234
    dport: int = 5678
    ttl: int = 64
    proto: int = M.IPPROTO_TCP
    ipv6: bool = False
    vlan_id: int = 1
    cos: int = 0
    src_mac: int = 0
    dst_mac: int = 0
    src_ip: int = 0
    src_prefix: int = 24
    dst_ip: int = 0
    src_ip6: int = 0
    src_prefix6: int = 64
    dst_ip6: int = 0
    vlan: bool = False  # insert an 802.1Q tag
    tos: int = 0  # IPv4 TOS byte / IPv6 traffic class
    payload: bytes | None = None  # payload prefix, zeros after; None: Pktgen's "abc" fill
    l2: bytes | None = None  # bytes between source MAC and L3 (tags, MPLS); None: ethertype
    range: bool = False
    pcap: bool = False
    range_proto: int | None = None  # `range <pl> proto`; None keeps the single proto
    ranges: dict[str, RangeField] = field(default_factory=dict)
    version: int = 0

    def bump(self) -> None:
        self.version += 1

    @property
    def mode(self) -> str:
        return "pcap" if self.pcap else "range" if self.range else "single"

    def clone(self) -> PortConfig:
        return copy.deepcopy(self)


def default_config(port_id: int, port_ids: list[int], macs: dict[int, int]) -> PortConfig:
    """Pktgen's defaults for `port_id`: TCP 1234 -> 5678, TTL 64, 64 bytes, source
    192.168.<pid>.1/24 to 192.168.<pair>.1 where ports pair up 0-1, 2-3, ...; source MAC
    the port's own, destination MAC that of the paired port (zero if it has none)."""
    pair = port_id + 1 if port_id % 2 == 0 else port_id - 1
    if len(port_ids) == 1:
        pair = port_id + 1
    cfg = PortConfig(port_id)
    cfg.src_mac = macs.get(port_id, 0)
    cfg.dst_mac = macs.get(pair, 0)
    cfg.src_ip = (192 << 24) | (168 << 16) | ((port_id & 255) << 8) | 1
    cfg.dst_ip = (192 << 24) | (168 << 16) | ((pair & 255) << 8) | 1
    # Pktgen leaves IPv6 addresses unset; documentation prefixes keep them valid.
    cfg.src_ip6 = (0x20010DB8 << 96) | ((port_id & 0xFFFF) << 64) | 1
    cfg.dst_ip6 = (0x20010DB8 << 96) | ((pair & 0xFFFF) << 64) | 1
    cfg.ranges = default_ranges(cfg)
    return cfg


def default_ranges(cfg: PortConfig) -> dict[str, RangeField]:
    """Pktgen's range defaults: destination IP walks 192.168.<pair>.1..254, L4 ports step
    by 1 over 0..65535 from the single-packet values, everything else stays put."""
    pid_net = (192 << 24) | (168 << 16)
    pair_octet = (cfg.dst_ip >> 8) & 255
    own_octet = (cfg.src_ip >> 8) & 255
    return {
        "dst_mac": RangeField(cfg.dst_mac, 0, 0, 0),
        "src_mac": RangeField(cfg.src_mac, 0, 0, 0),
        "dst_ip": RangeField(pid_net | (pair_octet << 8) | 1, pid_net | (pair_octet << 8) | 1,
                             pid_net | (pair_octet << 8) | 254, 1),
        "src_ip": RangeField(pid_net | (own_octet << 8) | 1, pid_net | (own_octet << 8) | 1,
                             pid_net | (own_octet << 8) | 254, 0),
        "dst_port": RangeField(cfg.dport, 0, 65535, 1),
        "src_port": RangeField(cfg.sport, 0, 65535, 1),
        "ttl": RangeField(cfg.ttl, 0, 255, 0),
        "vlan": RangeField(cfg.vlan_id, 1, 4095, 0),
        "size": RangeField(MIN_SIZE, MIN_SIZE, MAX_SIZE, 0),
    }


@dataclass
class Template:
    """What the synthesis kernel needs for one port: the frame at the fields' start values,
    its header layout with the checksum bases, the payload's running checksum sums, the
    field table (rows of RANGE_FIELDS) and where each stepping field sits in the frame."""

    frame: np.ndarray  # uint8, the frame at MAX_SIZE with every header and the payload
    frame64: np.ndarray  # uint64 view of the frame padded to whole words (for fast copies)
    layout: np.ndarray  # int64 [LAY_NCOLS]
    payload_sums: np.ndarray  # int64, sums[k] = 16-bit word sum of the first k payload bytes
    fields: np.ndarray  # int64 [9, 4]: start, min, max, inc
    offsets: np.ndarray  # int64 [9]: where the kernel writes each stepping field, else -1
    version: int

    @property
    def header_len(self) -> int:
        return int(self.layout[LAY_HDR_LEN])


def _l4_header(proto: int, sport: int, dport: int) -> bytes:
    if proto == M.IPPROTO_TCP:
        return struct.pack("!HHIIBBHHH", sport, dport, TCP_SEQ, TCP_ACKNUM, 5 << 4, TCP_ACK,
                           TCP_WINDOW, 0, 0)
    if proto == M.IPPROTO_UDP:
        return struct.pack("!HHHH", sport, dport, 0, 0)
    # ICMP / ICMPv6 echo request: type, code, checksum, identifier, sequence.
    return struct.pack("!BBHHH", 8 if proto == M.IPPROTO_ICMP else 128, 0, 0, 0, 0)


def payload_word_sums(pattern: np.ndarray) -> np.ndarray:
    """sums[k] = sum of the first k bytes read as big-endian 16-bit words (an odd last byte
    padded with zero), so a payload's checksum share costs one lookup per packet."""
    n = len(pattern)
    words = pattern.astype(np.int64)
    weights = np.where(np.arange(n) % 2 == 0, 256, 1)
    sums = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(words * weights, out=sums[1:])
    return sums


def _word_sum(raw: np.ndarray) -> int:
    """Sum of `raw` (an even number of bytes) read as big-endian 16-bit words."""
    return int(raw.view(">u2").astype(np.int64).sum())


def frame_length(size: int, header_len: int, max_frame: int) -> int:
    """Frame bytes for a Pktgen `size` (which counts the FCS), never shorter than the
    headers nor longer than the template."""
    return min(max(size - FCS_LEN, header_len), max_frame)


def build_template(cfg: PortConfig) -> Template:
    """The frame, layout and field table for `cfg`'s current mode (single or range).

    The frame carries every field at its start value, so fields that never change cost
    nothing per packet. The checksum bases sum the headers with the bytes of stepping fields
    (and, when the size steps, the length fields) zeroed: the kernel adds exactly the words
    it writes, so every packet's checksums are exact."""
    proto = cfg.proto
    if cfg.range and cfg.range_proto is not None:
        proto = cfg.range_proto
    if cfg.ipv6 and proto == M.IPPROTO_ICMP:
        proto = M.IPPROTO_ICMPV6
    fields = np.zeros((len(RANGE_FIELDS), 4), dtype=np.int64)
    single = {"dst_mac": cfg.dst_mac, "src_mac": cfg.src_mac, "dst_ip": cfg.dst_ip,
              "src_ip": cfg.src_ip, "dst_port": cfg.dport, "src_port": cfg.sport,
              "ttl": cfg.ttl, "vlan": cfg.vlan_id, "size": cfg.size}
    for row, name in enumerate(RANGE_FIELDS):
        if cfg.range:
            r = cfg.ranges[name]
            fields[row] = (r.start, r.min, r.max, r.inc)
        else:
            v = single[name]
            fields[row] = (v, v, v, 0)
    first = {name: int(fields[row, 0]) for row, name in enumerate(RANGE_FIELDS)}

    eth = first["dst_mac"].to_bytes(6, "big") + first["src_mac"].to_bytes(6, "big")
    if cfg.l2 is not None:
        eth += cfg.l2
    else:
        if cfg.vlan:
            eth += struct.pack("!HH", M.ETYPE_VLAN, (cfg.cos << 13) | (first["vlan"] & 0xFFF))
        eth += struct.pack("!H", M.ETYPE_IPV6 if cfg.ipv6 else M.ETYPE_IPV4)
    l3 = len(eth)
    if cfg.ipv6:
        ip = struct.pack("!IHBB", (6 << 28) | (cfg.tos << 20), 0, proto, first["ttl"])
        ip += cfg.src_ip6.to_bytes(16, "big") + cfg.dst_ip6.to_bytes(16, "big")
    else:
        ip = struct.pack("!BBHHHBBH", 0x45, cfg.tos, 0, 0, 0, first["ttl"], proto, 0)
        ip += first["src_ip"].to_bytes(4, "big") + first["dst_ip"].to_bytes(4, "big")
    l4 = l3 + len(ip)
    l4h = _l4_header(proto, first["src_port"], first["dst_port"])
    payload_at = l4 + len(l4h)
    max_frame = MAX_SIZE - FCS_LEN
    fill = np.frombuffer(FILL_PATTERN, dtype=np.uint8)
    if cfg.payload is None:
        payload = np.resize(fill, max_frame - payload_at)
    else:
        payload = np.zeros(max_frame - payload_at, dtype=np.uint8)
        payload[:len(cfg.payload)] = np.frombuffer(cfg.payload, dtype=np.uint8)
    psums = payload_word_sums(payload)
    frame = np.zeros(max_frame, dtype=np.uint8)
    frame[:payload_at] = np.frombuffer(eth + ip + l4h, dtype=np.uint8)
    frame[payload_at:] = payload

    ports = proto in (M.IPPROTO_TCP, M.IPPROTO_UDP)
    position = {F_DST_MAC: 0, F_SRC_MAC: 6, F_TTL: l3 + (7 if cfg.ipv6 else 8)}
    if cfg.vlan:
        position[F_VLAN] = 14
    if not cfg.ipv6:  # address ranges are IPv4 only
        position[F_SRC_IP], position[F_DST_IP] = l3 + 12, l3 + 16
    if ports:
        position[F_SRC_PORT], position[F_DST_PORT] = l4, l4 + 2
    widths = {F_DST_MAC: 6, F_SRC_MAC: 6, F_SRC_IP: 4, F_DST_IP: 4, F_SRC_PORT: 2,
              F_DST_PORT: 2, F_TTL: 1, F_VLAN: 2}
    stepping = [f for f in position if fields[f, 3] != 0]
    offsets = np.full(len(RANGE_FIELDS), -1, dtype=np.int64)
    for f in stepping:
        offsets[f] = position[f]
    size_steps = fields[F_SIZE, 3] != 0
    length_at = [l3 + 4] if cfg.ipv6 else [l3 + 2]
    if proto == M.IPPROTO_UDP:
        length_at.append(l4 + 4)

    flen = frame_length(int(fields[F_SIZE, 0]), payload_at, max_frame)
    l4_len = flen - l4
    for at in length_at:  # the first packet's lengths; the kernel rewrites them if they step
        frame[at:at + 2] = np.frombuffer(struct.pack("!H", flen - l3 if at == l3 + 2 else l4_len),
                                         dtype=np.uint8)
    zeroed = frame[:payload_at].copy()
    for f in stepping:
        zeroed[position[f]:position[f] + widths[f]] = 0
    if size_steps:
        for at in length_at:
            zeroed[at:at + 2] = 0

    layout = np.zeros(LAY_NCOLS, dtype=np.int64)
    layout[LAY_L3], layout[LAY_L4], layout[LAY_PAYLOAD] = l3, l4, payload_at
    layout[LAY_VLAN] = 1 if cfg.vlan else 0
    layout[LAY_IPV6] = 1 if cfg.ipv6 else 0
    layout[LAY_PROTO] = proto
    layout[LAY_HDR_LEN] = payload_at
    layout[LAY_COS] = cfg.cos
    layout[LAY_FLEN] = 0 if size_steps else flen
    layout[LAY_L4_CSUM] = {M.IPPROTO_TCP: 16, M.IPPROTO_UDP: 6}.get(proto, 2)
    layout[LAY_ADDR_PSEUDO] = 1 if ports and not cfg.ipv6 else 0
    if not cfg.ipv6:
        layout[LAY_IP_BASE] = _word_sum(zeroed[l3:l4])
    if proto == M.IPPROTO_ICMP:
        pseudo = 0  # ICMPv4 has no pseudo header
    elif cfg.ipv6:
        pseudo = _word_sum(zeroed[l3 + 8:l4]) + proto
    else:
        pseudo = _word_sum(zeroed[l3 + 12:l4]) + proto
    l4_base = _word_sum(zeroed[l4:payload_at]) + pseudo
    if not size_steps:
        l4_base += int(psums[flen - payload_at]) + (l4_len if proto != M.IPPROTO_ICMP else 0)
    layout[LAY_L4_BASE] = l4_base

    padded = np.zeros((max_frame + 7) // 8 * 8, dtype=np.uint8)
    padded[:max_frame] = frame
    return Template(frame, padded.view(np.uint64), layout, psums, fields, offsets, cfg.version)


def words_view(data: np.ndarray) -> np.ndarray:
    """`data` (a pool's uint8 rows, C-contiguous as `Pool` makes them) seen as one flat
    run of uint64 words, for the synthesis kernel's word copies."""
    if not data.flags.c_contiguous:
        raise ValueError("the generator writes into a pool's data in place: it must be "
                         "C-contiguous")
    flat = data.reshape(-1)
    return flat[:flat.size // 8 * 8].view(np.uint64)


def format_mac(value: int) -> str:
    return str(MACAddr(value))
