"""The kernel pktgen's /proc vocabulary: commands, flags, defaults and the text of its files.

One declarative table (`COMMANDS`) lists every device command the Linux 6.12 pktgen
accepts, with the kind of value it reads, the digits it reads at most, and the wording of
the `Result:` line it leaves. `DeviceConfig.write` applies one written line the way
`pktgen_if_write` does (same lenient number reading, same clamps, same refusals and
texts); `format_device`, `format_thread` and `PGCTRL_TEXT` give back what reading the
files shows, and the `parse_*` functions read that text back into typed objects. Pure
Python, shared by the userspace engine and the controller, so both speak one language.
"""

from __future__ import annotations

import errno
import ipaddress
import re
from dataclasses import dataclass, field, fields, replace

VERSION = "2.75"
PGCTRL_TEXT = f"Packet Generator for packet performance testing. Version: {VERSION}\n"
PGCTRL_COMMANDS = ("start", "stop", "reset")
THREAD_COMMANDS = ("add_device", "rem_device_all", "max_before_softirq")

# Bit order matters: the Flags: line and `OK: flags=0x..` follow it.  IPSEC is left out:
# the engine behaves as a kernel built without CONFIG_XFRM (no SA lookup, no `spi`).
FLAG_NAMES: tuple[str, ...] = (
    "IPV6", "IPSRC_RND", "IPDST_RND", "TXSIZE_RND", "UDPSRC_RND", "UDPDST_RND", "UDPCSUM",
    "NO_TIMESTAMP", "MPLS_RND", "QUEUE_MAP_RND", "QUEUE_MAP_CPU", "FLOW_SEQ", "IPSEC",
    "MACSRC_RND", "MACDST_RND", "VID_RND", "SVID_RND", "NODE", "SHARED",
)
FLAG_BITS: dict[str, int] = {name: 1 << i for i, name in enumerate(FLAG_NAMES)}
UNSUPPORTED_FLAGS = frozenset({"IPSEC"})
XMIT_MODES = ("start_xmit", "netif_receive", "queue_xmit")

MIN_PKT_SIZE = 14 + 20 + 8  # pktgen raises smaller sizes to Ethernet + IPv4 + UDP
PKTGEN_HDR_LEN = 16  # magic, sequence number, seconds, microseconds
PKTGEN_MAGIC = 0xBE9BE955
MAX_CFLOWS = 65536
MAX_MPLS_LABELS = 16
MAX_IMIX_ENTRIES = 20
NO_VLAN = 0xFFFF
IP_NAME_SZ = 32
DEFAULT_COUNT = 1000


@dataclass(frozen=True)
class Command:
    """One device command: `kind` says how its value is read, `digits` how many at most."""

    name: str
    kind: str  # num, hex2, ip4, ip6, mac, flag, mode, mpls, imix, none
    digits: int = 10
    doc: str = ""


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("min_pkt_size", "num", doc="smallest frame (bytes without FCS), at least 42"),
    Command("max_pkt_size", "num", doc="largest frame; sizes step (or TXSIZE_RND) between"),
    Command("pkt_size", "num", doc="min = max frame size (the NIC adds the 4-byte FCS)"),
    Command("imix_weights", "imix", doc="size,weight pairs (at most 20)"),
    Command("debug", "num"),
    Command("frags", "num", doc="payload page fragments (shown in the result)"),
    Command("delay", "num", doc="ns between packets; 2147483647 means never send"),
    Command("rate", "num", doc="Mb/s, converted into delay from min_pkt_size"),
    Command("ratep", "num", doc="packets/s, converted into delay"),
    Command("udp_src_min", "num"), Command("udp_dst_min", "num"),
    Command("udp_src_max", "num"), Command("udp_dst_max", "num"),
    Command("clone_skb", "num", doc="copies of one built packet before a new one"),
    Command("count", "num", doc="packets to send; 0 sends until stopped"),
    Command("src_mac_count", "num"), Command("dst_mac_count", "num"),
    Command("burst", "num", doc="packets handed to the device at once"),
    Command("node", "num"),
    Command("xmit_mode", "mode", 31),
    Command("flag", "flag", 31),
    Command("dst_min", "ip4", IP_NAME_SZ - 1), Command("dst", "ip4", IP_NAME_SZ - 1),
    Command("dst_max", "ip4", IP_NAME_SZ - 1),
    Command("dst6", "ip6", 127), Command("dst6_min", "ip6", 127),
    Command("dst6_max", "ip6", 127), Command("src6", "ip6", 127),
    Command("src_min", "ip4", IP_NAME_SZ - 1), Command("src_max", "ip4", IP_NAME_SZ - 1),
    Command("dst_mac", "mac", 31), Command("src_mac", "mac", 31),
    Command("clear_counters", "none"),
    Command("flows", "num", doc="concurrent flows (at most 65536)"),
    Command("flowlen", "num", doc="packets per flow before the next one"),
    Command("queue_map_min", "num", 5), Command("queue_map_max", "num", 5),
    Command("mpls", "mpls", doc="comma-separated hex label words"),
    Command("vlan_id", "num", 4), Command("vlan_p", "num", 1), Command("vlan_cfi", "num", 1),
    Command("svlan_id", "num", 4), Command("svlan_p", "num", 1), Command("svlan_cfi", "num", 1),
    Command("tos", "hex2", 2), Command("traffic_class", "hex2", 2),
    Command("skb_priority", "num", 9),
)}

_SKIP = ' "\n\r\t='  # separators the kernel skips before and after a command name
_STOP = ' "\n\r\t'  # characters that end a word


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _SKIP:
        i += 1
    return i


def _word(text: str, i: int, limit: int) -> str:
    j = i
    while j < len(text) and j - i < limit and text[j] not in _STOP:
        j += 1
    return text[i:j]


def _digits(text: str, limit: int) -> tuple[int, int]:
    """Leading decimal digits (at most `limit`): (value, count); no digits reads as 0."""
    n = 0
    while n < len(text) and n < limit and text[n] in "0123456789":  # ASCII only, not '²'
        n += 1
    return (int(text[:n]) if n else 0), n


def _hexdigits(text: str, limit: int) -> tuple[int, int]:
    n = 0
    while n < len(text) and n < limit and text[n] in "0123456789abcdefABCDEF":
        n += 1
    return (int(text[:n], 16) if n else 0), n


def split_write(data: bytes | str, name_len: int = 15) -> tuple[str, str]:
    """Split a written buffer into (command name, rest) as the kernel's reader does."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    i = _skip(text, 0)
    name = _word(text, i, name_len)
    return name, text[_skip(text, i + len(name)):]


def in_aton(text: str) -> int:
    """IPv4 text to an integer the kernel's lenient way (missing parts read as 0)."""
    value, i = 0, 0
    for _ in range(4):
        value <<= 8
        part = 0
        while i < len(text) and text[i] not in ".\n":
            part = part * 10 + (ord(text[i]) - 48)
            i += 1
        value |= part & 0xFF
        if i < len(text):
            i += 1
    return value & 0xFFFFFFFF


def ip4_text(value: int) -> str:
    return str(ipaddress.IPv4Address(value & 0xFFFFFFFF))


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes | None:
    """`mac_pton`: six colon- or dash-separated hex pairs, else None."""
    if len(text) < 17:
        return None
    out = bytearray()
    for k in range(6):
        pair = text[3 * k:3 * k + 2]
        if not re.fullmatch(r"[0-9A-Fa-f]{2}", pair):
            return None
        if k < 5 and text[3 * k + 2] not in ":-":
            return None
        out.append(int(pair, 16))
    return bytes(out)


@dataclass(frozen=True)
class WriteOutcome:
    """What a write did: errno 0 means the write() succeeded; result is the new Result text."""

    errno: int = 0
    result: str | None = None  # None: the Result line keeps its previous text

    @property
    def ok(self) -> bool:
        return self.errno == 0 and (self.result is None or self.result.startswith("OK"))


@dataclass
class DeviceConfig:
    """Every parameter of one pktgen device, with the values `add_device` gives it."""

    count: int = DEFAULT_COUNT
    clone_skb: int = 0
    burst: int = 1
    min_pkt_size: int = 0  # 0 until set: `start` then uses the smallest IPv4 frame
    max_pkt_size: int = 0
    nfrags: int = 0
    delay: int = 0  # ns between packets
    udp_src_min: int = 9
    udp_src_max: int = 9
    udp_dst_min: int = 9
    udp_dst_max: int = 9
    src_min: str = ""
    src_max: str = ""
    dst_min: str = ""
    dst_max: str = ""
    in6_saddr: str = "::"
    in6_daddr: str = "::"
    min_in6_daddr: str = "::"
    max_in6_daddr: str = "::"
    min_in6_saddr: str = "::"
    max_in6_saddr: str = "::"
    src_mac: bytes = bytes(6)  # zero: the interface's own address
    dst_mac: bytes = bytes(6)
    src_mac_count: int = 0
    dst_mac_count: int = 0
    cflows: int = 0
    lflow: int = 0
    queue_map_min: int = 0
    queue_map_max: int = 0
    labels: tuple[int, ...] = ()
    vlan_id: int = NO_VLAN
    vlan_p: int = 0
    vlan_cfi: int = 0
    svlan_id: int = NO_VLAN
    svlan_p: int = 0
    svlan_cfi: int = 0
    tos: int = 0
    traffic_class: int = 0
    skb_priority: int = 0
    node: int = -1
    xmit_mode: str = "start_xmit"
    flags: int = FLAG_BITS["SHARED"]
    imix: tuple[tuple[int, int], ...] = ()  # (size, weight)
    debug: int = 0

    def has(self, flag: str) -> bool:
        return bool(self.flags & FLAG_BITS[flag])

    def copy(self) -> DeviceConfig:
        return replace(self)

    def write(self, data: bytes | str, *, tx_skb_sharing: bool = True,
              nodes: int = 1) -> WriteOutcome:
        """Apply one written buffer as `pktgen_if_write` does; returns errno and Result text.

        `tx_skb_sharing` says whether the device may send one buffer several times (the
        kernel refuses clone_skb/burst > 1 otherwise); `nodes` is the NUMA node count.
        """
        if not data:
            return WriteOutcome(errno.EINVAL)
        name, rest = split_write(data)
        cmd = COMMANDS.get(name)
        if cmd is None:
            return WriteOutcome(errno.EINVAL, f'No such parameter "{name}"')
        return _APPLY[cmd.kind](self, cmd, rest, tx_skb_sharing, nodes)


def _apply_num(cfg: DeviceConfig, cmd: Command, rest: str, sharing: bool,
               nodes: int) -> WriteOutcome:
    value, _ = _digits(rest, cmd.digits)
    n = cmd.name
    if n in ("min_pkt_size", "max_pkt_size", "pkt_size"):
        value = max(value, MIN_PKT_SIZE) & 0xFFFFFFFF
        if n == "pkt_size":
            if value != cfg.min_pkt_size:
                cfg.min_pkt_size = cfg.max_pkt_size = value
            return WriteOutcome(0, f"OK: pkt_size={cfg.min_pkt_size}")
        setattr(cfg, n, value)
        return WriteOutcome(0, f"OK: {n}={value}")
    if n == "debug":
        cfg.debug = value & 0xFFFFFFFF
        return WriteOutcome(0, f"OK: debug={cfg.debug}")
    if n == "frags":
        cfg.nfrags = _int32(value)
        return WriteOutcome(0, f"OK: frags={cfg.nfrags}")
    if n == "delay":
        cfg.delay = (1 << 64) - 1 if value == 0x7FFFFFFF else value
        return WriteOutcome(0, f"OK: delay={cfg.delay}")
    if n in ("rate", "ratep"):
        if not value:
            return WriteOutcome(0, None)  # the kernel ignores a zero rate
        if n == "rate":
            cfg.delay = cfg.min_pkt_size * 8 * 1000 // value
        else:
            cfg.delay = 1_000_000_000 // value
        return WriteOutcome(0, f"OK: rate={value}")
    if n.startswith("udp_"):
        setattr(cfg, n, value & 0xFFFF)
        return WriteOutcome(0, f"OK: {n}={getattr(cfg, n)}")
    if n == "clone_skb":
        if value > 0 and (cfg.xmit_mode == "netif_receive" or not sharing):
            return WriteOutcome(ENOTSUPP)
        if value > 0 and (cfg.imix or not cfg.has("SHARED")):
            return WriteOutcome(errno.EINVAL)
        cfg.clone_skb = _int32(value)
        return WriteOutcome(0, f"OK: clone_skb={cfg.clone_skb}")
    if n == "count":
        cfg.count = value
        return WriteOutcome(0, f"OK: count={value}")
    if n in ("src_mac_count", "dst_mac_count"):
        setattr(cfg, n, _int32(value))
        return WriteOutcome(0, f"OK: {n}={getattr(cfg, n)}")
    if n == "burst":
        if value > 1 and (cfg.xmit_mode == "queue_xmit"
                          or (cfg.xmit_mode == "start_xmit" and not sharing)):
            return WriteOutcome(ENOTSUPP)
        if value > 1 and not cfg.has("SHARED"):
            return WriteOutcome(errno.EINVAL)
        cfg.burst = max(value, 1) & 0xFFFFFFFF
        return WriteOutcome(0, f"OK: burst={cfg.burst}")
    if n == "node":
        if value < nodes:
            cfg.node = value
            return WriteOutcome(0, f"OK: node={value}")
        return WriteOutcome(0, "ERROR: node not possible")
    if n == "flows":
        cfg.cflows = min(value, MAX_CFLOWS)
        return WriteOutcome(0, f"OK: flows={cfg.cflows}")
    if n == "flowlen":
        cfg.lflow = value & 0xFFFFFFFF
        return WriteOutcome(0, f"OK: flowlen={cfg.lflow}")
    if n in ("queue_map_min", "queue_map_max"):
        setattr(cfg, n, value & 0xFFFF)
        return WriteOutcome(0, f"OK: {n}={getattr(cfg, n)}")
    if n == "vlan_id" or n == "svlan_id":
        if value <= 4095 and (n == "vlan_id" or cfg.vlan_id != NO_VLAN):
            setattr(cfg, n, value)
            cfg.labels = ()  # a VLAN tag turns MPLS off
            return WriteOutcome(0, f"OK: {n}={value}")
        cfg.vlan_id = cfg.svlan_id = NO_VLAN
        return WriteOutcome(0, None)
    if n in ("vlan_p", "svlan_p", "vlan_cfi", "svlan_cfi"):
        top = 7 if n.endswith("_p") else 1
        tag = cfg.vlan_id if n.startswith("vlan") else cfg.svlan_id
        if value <= top and tag != NO_VLAN:
            setattr(cfg, n, value)
            return WriteOutcome(0, f"OK: {n}={value}")
        return WriteOutcome(0, f"ERROR: {n} must be 0-{top}")
    if n == "skb_priority":
        cfg.skb_priority = _int32(value)
        return WriteOutcome(0, f"OK: skb_priority={cfg.skb_priority}")
    raise AssertionError(f"numeric command {n} has no rule")  # table and rules disagree


ENOTSUPP = 524  # the kernel-internal "operation not supported" the write returns


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _apply_hex2(cfg: DeviceConfig, cmd: Command, rest: str, sharing: bool,
                nodes: int) -> WriteOutcome:
    value, n = _hexdigits(rest, 2)
    if n != 2:
        return WriteOutcome(0, f"ERROR: {cmd.name} must be 00-ff")
    setattr(cfg, cmd.name, value)
    return WriteOutcome(0, f"OK: {cmd.name}=0x{value:02x}")


def _apply_ip4(cfg: DeviceConfig, cmd: Command, rest: str, sharing: bool,
               nodes: int) -> WriteOutcome:
    value = _word(rest, 0, cmd.digits)
    attr = "dst_min" if cmd.name == "dst" else cmd.name
    setattr(cfg, attr, value)
    return WriteOutcome(0, f"OK: {attr}={value}")


def _apply_ip6(cfg: DeviceConfig, cmd: Command, rest: str, sharing: bool,
               nodes: int) -> WriteOutcome:
    attr = {"dst6": "in6_daddr", "src6": "in6_saddr", "dst6_min": "min_in6_daddr",
            "dst6_max": "max_in6_daddr"}[cmd.name]
    cfg.flags |= FLAG_BITS["IPV6"]
    try:
        setattr(cfg, attr, ipaddress.IPv6Address(_word(rest, 0, cmd.digits)).compressed)
    except ValueError:
        pass  # the kernel keeps the old address when the text does not parse
    return WriteOutcome(0, f"OK: {cmd.name}={getattr(cfg, attr)}")


def _apply_mac(cfg: DeviceConfig, cmd: Command, rest: str, sharing: bool,
               nodes: int) -> WriteOutcome:
    mac = parse_mac(_word(rest, 0, cmd.digits))
    if mac is None:
        return WriteOutcome(errno.EINVAL)
    setattr(cfg, cmd.name, mac)
    word = "dstmac" if cmd.name == "dst_mac" else "srcmac"
    return WriteOutcome(0, f"OK: {word} {mac_text(mac)}")


def _apply_none(cfg: DeviceConfig, cmd: Command, rest: str, sharing: bool,
                nodes: int) -> WriteOutcome:
    return WriteOutcome(0, "OK: Clearing counters.\n")  # the engine clears the counters


def _apply_mode(cfg: DeviceConfig, cmd: Command, rest: str, sharing: bool,
                nodes: int) -> WriteOutcome:
    mode = _word(rest, 0, cmd.digits)
    if mode not in XMIT_MODES:
        return WriteOutcome(0, f"xmit_mode -:{mode}:- unknown\n"
                               "Available modes: start_xmit, netif_receive\n")
    if mode == "netif_receive" and cfg.clone_skb > 0:
        return WriteOutcome(ENOTSUPP)
    cfg.xmit_mode = mode
    return WriteOutcome(0, f"OK: xmit_mode={mode}")


def _apply_flag(cfg: DeviceConfig, cmd: Command, rest: str, sharing: bool,
                nodes: int) -> WriteOutcome:
    word = _word(rest, 0, cmd.digits)
    disable = word.startswith("!")
    name = word[1:] if disable else word
    bit = 0
    if name == "FLOW_RND":
        bit, disable = FLAG_BITS["FLOW_SEQ"], not disable
    elif name in FLAG_BITS and name not in UNSUPPORTED_FLAGS and (disable or name != "IPV6"):
        bit = FLAG_BITS[name]
    if not bit:
        known = ", ".join(f for f in FLAG_NAMES if f not in UNSUPPORTED_FLAGS)
        return WriteOutcome(0, f"Flag -:{word}:- unknown\n"
                               f"Available flags, (prepend ! to un-set flag):\n{known}")
    if disable:
        if bit == FLAG_BITS["SHARED"] and (cfg.clone_skb or cfg.burst > 1):
            return WriteOutcome(errno.EINVAL)
        cfg.flags &= ~bit
    else:
        cfg.flags |= bit
    return WriteOutcome(0, f"OK: flags=0x{cfg.flags:x}")


def _apply_mpls(cfg: DeviceConfig, cmd: Command, rest: str, sharing: bool,
                nodes: int) -> WriteOutcome:
    labels: list[int] = []
    i = 0
    while True:
        if len(labels) >= MAX_MPLS_LABELS:
            cfg.labels = ()
            return WriteOutcome(errno.E2BIG)
        value, n = _hexdigits(rest[i:], 8)
        if n == 0:
            # the kernel stops here with a zero-length write and an emptied stack
            cfg.labels = ()
            return WriteOutcome(0, None)
        labels.append(value)
        if value & 0x100:
            cfg.flags |= FLAG_BITS["MPLS_RND"]
        i += n
        sep = rest[i] if i < len(rest) else ""
        i += 1
        if sep != ",":
            break
    cfg.labels = tuple(labels)
    if cfg.labels and cfg.vlan_id != NO_VLAN:
        cfg.vlan_id = cfg.svlan_id = NO_VLAN
    return WriteOutcome(0, "OK: mpls=" + ",".join(f"{x:08x}" for x in labels))


def _apply_imix(cfg: DeviceConfig, cmd: Command, rest: str, sharing: bool,
                nodes: int) -> WriteOutcome:
    if cfg.clone_skb > 0:
        return WriteOutcome(errno.EINVAL)
    entries: list[tuple[int, int]] = []
    i = 0
    while True:
        if len(entries) >= MAX_IMIX_ENTRIES:
            return WriteOutcome(errno.E2BIG)
        size, n = _digits(rest[i:], 10)
        i += n
        if rest[i:i + 1] != ",":
            return WriteOutcome(errno.EINVAL)
        i += 1
        weight, n = _digits(rest[i:], 10)
        if weight <= 0:
            return WriteOutcome(errno.EINVAL)
        entries.append((max(size, MIN_PKT_SIZE), weight))
        i += n
        sep = rest[i:i + 1]
        i += 1
        if sep != " ":
            break
    cfg.imix = tuple(entries)
    return WriteOutcome(0, None)  # the kernel leaves the Result line as it was


_APPLY = {"num": _apply_num, "hex2": _apply_hex2, "ip4": _apply_ip4, "ip6": _apply_ip6,
          "mac": _apply_mac, "none": _apply_none, "mode": _apply_mode, "flag": _apply_flag,
          "mpls": _apply_mpls, "imix": _apply_imix}
assert {c.kind for c in COMMANDS.values()} <= set(_APPLY)


@dataclass
class DeviceState:
    """What the device file shows under Current: and Result:, kept by the engine."""

    running: bool = False
    sofar: int = 0
    errors: int = 0
    started_us: int = 0
    stopped_us: int = 0
    idle_us: int = 0
    seq_num: int = 0
    cur_dst_mac_offset: int = 0
    cur_src_mac_offset: int = 0
    cur_saddr: int = 0
    cur_daddr: int = 0
    cur_in6_saddr: str = "::"
    cur_in6_daddr: str = "::"
    cur_udp_dst: int = 0
    cur_udp_src: int = 0
    cur_queue_map: int = 0
    nflows: int = 0
    imix_counts: tuple[int, ...] = ()
    result: str = ""


def format_device(cfg: DeviceConfig, st: DeviceState, ifname: str, dev_mac: bytes) -> str:
    """The text reading /proc/net/pktgen/IFACE gives, line for line as pktgen_if_show."""
    out = [f"Params: count {cfg.count}  min_pkt_size: {cfg.min_pkt_size}"
           f"  max_pkt_size: {cfg.max_pkt_size}\n"]
    if cfg.imix:
        out.append("     imix_weights: " + "".join(f"{s},{w} " for s, w in cfg.imix) + "\n")
    out.append(f"     frags: {cfg.nfrags}  delay: {cfg.delay}  clone_skb: {cfg.clone_skb}"
               f"  ifname: {ifname}\n")
    out.append(f"     flows: {cfg.cflows} flowlen: {cfg.lflow}\n")
    out.append(f"     queue_map_min: {cfg.queue_map_min}  queue_map_max: {cfg.queue_map_max}\n")
    if cfg.skb_priority:
        out.append(f"     skb_priority: {cfg.skb_priority & 0xFFFFFFFF}\n")
    if cfg.has("IPV6"):
        out.append(f"     saddr: {cfg.in6_saddr}  min_saddr: {cfg.min_in6_saddr}"
                   f"  max_saddr: {cfg.max_in6_saddr}\n"
                   f"     daddr: {cfg.in6_daddr}  min_daddr: {cfg.min_in6_daddr}"
                   f"  max_daddr: {cfg.max_in6_daddr}\n")
    else:
        out.append(f"     dst_min: {cfg.dst_min}  dst_max: {cfg.dst_max}\n")
        out.append(f"     src_min: {cfg.src_min}  src_max: {cfg.src_max}\n")
    src = dev_mac if cfg.src_mac == bytes(6) else cfg.src_mac
    out.append(f"     src_mac: {mac_text(src)} dst_mac: {mac_text(cfg.dst_mac)}\n")
    out.append(f"     udp_src_min: {cfg.udp_src_min}  udp_src_max: {cfg.udp_src_max}"
               f"  udp_dst_min: {cfg.udp_dst_min}  udp_dst_max: {cfg.udp_dst_max}\n")
    out.append(f"     src_mac_count: {cfg.src_mac_count}  dst_mac_count: {cfg.dst_mac_count}\n")
    if cfg.labels:
        out.append("     mpls: " + ", ".join(f"{x:08x}" for x in cfg.labels) + "\n")
    if cfg.vlan_id != NO_VLAN:
        out.append(f"     vlan_id: {cfg.vlan_id}  vlan_p: {cfg.vlan_p}  vlan_cfi: {cfg.vlan_cfi}\n")
    if cfg.svlan_id != NO_VLAN:
        # the kernel labels the S-VLAN priority and CFI as vlan_p/vlan_cfi too
        out.append(f"     svlan_id: {cfg.svlan_id}  vlan_p: {cfg.svlan_p}"
                   f"  vlan_cfi: {cfg.svlan_cfi}\n")
    if cfg.tos:
        out.append(f"     tos: 0x{cfg.tos:02x}\n")
    if cfg.traffic_class:
        out.append(f"     traffic_class: 0x{cfg.traffic_class:02x}\n")
    if cfg.burst > 1:
        out.append(f"     burst: {cfg.burst}\n")
    if cfg.node >= 0:
        out.append(f"     node: {cfg.node}\n")
    if cfg.xmit_mode == "netif_receive":
        out.append("     xmit_mode: netif_receive\n")
    elif cfg.xmit_mode == "queue_xmit":
        out.append("     xmit_mode: xmit_queue\n")
    words = []
    for i, name in enumerate(FLAG_NAMES):
        if name == "FLOW_SEQ" and not cfg.cflows:
            continue
        if cfg.flags & (1 << i):
            words.append(f"{name}  ")
        elif name == "FLOW_SEQ":
            words.append("FLOW_RND  ")
    out.append("     Flags: " + "".join(words) + "\n")
    out.append(f"Current:\n     pkts-sofar: {st.sofar}  errors: {st.errors}\n")
    if cfg.imix:
        counts = st.imix_counts or (0,) * len(cfg.imix)
        pairs = zip(cfg.imix, counts, strict=False)
        out.append("     imix_size_counts: " + "".join(f"{s},{c} " for (s, _), c in pairs) + "\n")
    out.append(f"     started: {st.started_us}us  stopped: {st.stopped_us}us"
               f" idle: {st.idle_us}us\n")
    out.append(f"     seq_num: {st.seq_num}  cur_dst_mac_offset: {st.cur_dst_mac_offset}"
               f"  cur_src_mac_offset: {st.cur_src_mac_offset}\n")
    if cfg.has("IPV6"):
        out.append(f"     cur_saddr: {st.cur_in6_saddr}  cur_daddr: {st.cur_in6_daddr}\n")
    else:
        out.append(f"     cur_saddr: {ip4_text(st.cur_saddr)}"
                   f"  cur_daddr: {ip4_text(st.cur_daddr)}\n")
    out.append(f"     cur_udp_dst: {st.cur_udp_dst}  cur_udp_src: {st.cur_udp_src}\n")
    out.append(f"     cur_queue_map: {st.cur_queue_map}\n")
    out.append(f"     flows: {st.nflows}\n")
    out.append(f"Result: {st.result}\n" if st.result else "Result: Idle\n")
    return "".join(out)


def format_result(elapsed_ns: int, idle_ns: int, sofar: int, pkt_size: int, frags: int,
                  errors: int, imix_bytes: int | None = None) -> str:
    """The `OK: ...` result pktgen leaves when a device stops (two lines, kernel wording)."""
    elapsed_ns = max(elapsed_ns, 1)
    pps = sofar * 1_000_000_000 // elapsed_ns
    if imix_bytes is not None:
        bps = imix_bytes * 8 * 1_000_000_000 // elapsed_ns
    else:
        bps = pps * 8 * pkt_size
    return (f"OK: {elapsed_ns // 1000}(c{(elapsed_ns - idle_ns) // 1000}+d{idle_ns // 1000})"
            f" usec, {sofar} ({pkt_size}byte,{frags}frags)\n"
            f"  {pps}pps {bps // 1_000_000}Mb/sec ({bps}bps) errors: {errors}")


def format_thread(running: list[str], stopped: list[str], result: str) -> str:
    """The text of a kpktgend_N file."""
    return ("Running: " + "".join(f"{n} " for n in running)
            + "\nStopped: " + "".join(f"{n} " for n in stopped)
            + (f"\nResult: {result}\n" if result else "\nResult: NA\n"))


# ----------------------------------------------------------------------------- reading back

@dataclass(frozen=True)
class Result:
    """A device's `Result: OK:` figures in the kernel's own terms."""

    usec: int
    usec_busy: int
    usec_idle: int
    packets: int
    pkt_size: int
    frags: int
    pps: int
    mbps: int
    bps: int
    errors: int


_RESULT_RE = re.compile(
    r"OK: (\d+)\(c(\d+)\+d(\d+)\) usec, (\d+) \((\d+)byte,(-?\d+)frags\)\s+"
    r"(\d+)pps (\d+)Mb/sec \((\d+)bps\) errors: (\d+)")


def parse_result(text: str) -> Result | None:
    """The figures of an `OK: <usec>(c..+d..) usec, ...` result, or None if it is not one."""
    m = _RESULT_RE.search(text)
    if not m:
        return None
    return Result(*(int(g) for g in m.groups()))


@dataclass(frozen=True)
class DeviceReport:
    """A device file read back: its Params and Current values as text, and the Result."""

    params: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    current: dict[str, str] = field(default_factory=dict)
    result: str = "Idle"

    @property
    def figures(self) -> Result | None:
        return parse_result(self.result)


_PAIR_RE = re.compile(r"([A-Za-z_\-]+)(?::\s?| )(\S*)")


def parse_device_text(text: str) -> DeviceReport:
    """Read a device file's text into a `DeviceReport` (keys as the kernel labels them)."""
    params: dict[str, str] = {}
    current: dict[str, str] = {}
    flags: tuple[str, ...] = ()
    target = params
    head, sep, result = text.partition("Result: ")
    for line in head.splitlines():
        if line.startswith("Current:"):
            target = current
            continue
        body = line.removeprefix("Params:").strip()
        if body.startswith("Flags:"):
            flags = tuple(body[len("Flags:"):].split())
            continue
        if body.startswith(("mpls:", "imix_weights:", "imix_size_counts:")):
            key, _, value = body.partition(":")
            target[key] = value.strip()
            continue
        for key, value in _PAIR_RE.findall(body):
            target.setdefault(key, value)
    return DeviceReport(params, flags, current, result.rstrip("\n") if sep else "Idle")


@dataclass(frozen=True)
class ThreadReport:
    running: tuple[str, ...]
    stopped: tuple[str, ...]
    result: str


def parse_thread_text(text: str) -> ThreadReport:
    """Read a kpktgend_N file: running and stopped device names and the Result."""
    running: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    result = "NA"
    for line in text.splitlines():
        if line.startswith("Running:"):
            running = tuple(line[8:].split())
        elif line.startswith("Stopped:"):
            stopped = tuple(line[8:].split())
        elif line.startswith("Result:"):
            result = line[8:]
    return ThreadReport(running, stopped, result)


def parse_pgctrl_write(data: bytes | str) -> str | None:
    """The pgctrl command written (`start`, `stop`, `reset`), or None (the write gets EINVAL).

    The kernel drops the last byte written (the newline `echo` adds) and compares the rest
    exactly, so `printf start` without a newline is refused, as it is by the kernel.
    """
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    word = text[:127][:-1]
    return word if word in PGCTRL_COMMANDS else None


def split_thread_write(data: bytes | str) -> tuple[str, str]:
    """(command, device name) of a kpktgend_N write; the name is read up to 31 characters."""
    name, rest = split_write(data, 39)
    return name, _word(rest, 0, 31)


def config_fields() -> list[str]:
    """Names of the DeviceConfig fields (what a typed API can set)."""
    return [f.name for f in fields(DeviceConfig)]
