"""Rule tables in NFF-Go's formats: the L3 and L2 text tables and their JSON forms.

L3 text table, one rule a line, columns separated by any whitespace:
    source CIDR, destination CIDR, L4 protocol, source port, destination port, output
L2 text table:
    source MAC, destination MAC, ethertype, [VLAN id,] output
`ANY` matches everything; ports and VLAN ids may be ranges `a:b`; outputs are `Accept`
(= 1), `Reject` (= 0) or a flow number. As in NFF-Go, a missing output column means
`Reject`. `#` starts a comment; blank lines are skipped.

Parsing never half-succeeds: every bad line is collected and `RuleError` lists them all,
each as `file:line: what is wrong`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pktflow.packet import meta as M
from pktflow.packet.addr import CIDR, AddressError, MACAddr, parse_cidr, parse_mac

MAX_OUTPUT = 2**31 - 1  # outputs travel through int32 verdict arrays
MAX_LISTED_ERRORS = 20

PROTOCOLS = {
    "icmp": M.IPPROTO_ICMP, "igmp": 2, "ipip": M.IPPROTO_IPIP, "ipencap": M.IPPROTO_IPIP,
    "tcp": M.IPPROTO_TCP, "udp": M.IPPROTO_UDP, "ipv6": M.IPPROTO_IPV6, "gre": M.IPPROTO_GRE,
    "esp": 50, "ah": 51, "icmp6": M.IPPROTO_ICMPV6, "icmpv6": M.IPPROTO_ICMPV6,
    "ipv6-icmp": M.IPPROTO_ICMPV6, "ospf": 89, "sctp": 132,
}
# Only these headers carry ports that the parser exposes; a port rule needs one of them.
PORT_PROTOCOLS = (M.IPPROTO_TCP, M.IPPROTO_UDP)

ETHERTYPES = {
    "ipv4": M.ETYPE_IPV4, "ip": M.ETYPE_IPV4, "arp": M.ETYPE_ARP, "ipv6": M.ETYPE_IPV6,
    "mpls": M.ETYPE_MPLS, "vlan": M.ETYPE_VLAN, "qinq": M.ETYPE_QINQ,
}

L3_COLUMNS = ("source CIDR", "destination CIDR", "protocol", "source port",
              "destination port", "output")
L2_COLUMNS = ("source MAC", "destination MAC", "ethertype", "VLAN id", "output")


@dataclass(frozen=True)
class RuleLineError:
    """One problem in a rules file: where (file and line, when known) and what."""

    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.message}"


class RuleError(ValueError):
    """A rules file or text is invalid; `errors` lists every bad line."""

    def __init__(self, errors: list[RuleLineError]) -> None:
        self.errors = list(errors)
        shown = [str(e) for e in self.errors[:MAX_LISTED_ERRORS]]
        if len(self.errors) > MAX_LISTED_ERRORS:
            shown.append(f"... and {len(self.errors) - MAX_LISTED_ERRORS} more errors")
        super().__init__("\n".join(shown))


@dataclass(frozen=True)
class L3Rule:
    """One L3/L4 rule; None in a field means ANY. Port ranges are inclusive."""

    src: CIDR | None
    dst: CIDR | None
    proto: int | None
    src_ports: tuple[int, int] | None
    dst_ports: tuple[int, int] | None
    output: int
    line: int = 0  # line in its file (0 when built in code)

    @property
    def families(self) -> tuple[int, ...]:
        """IP versions this rule applies to: ANY/ANY addresses apply to both, as in NFF-Go."""
        versions = {c.version for c in (self.src, self.dst) if c is not None}
        return tuple(sorted(versions)) if versions else (4, 6)

    def __str__(self) -> str:
        return "  ".join((
            _any(self.src), _any(self.dst), _any(self.proto), _ports_text(self.src_ports),
            _ports_text(self.dst_ports), _output_text(self.output),
        ))


@dataclass(frozen=True)
class L2Rule:
    """One Ethernet rule; None in a field means ANY. The VLAN range is inclusive."""

    src: int | None
    dst: int | None
    ethertype: int | None
    vlan: tuple[int, int] | None
    output: int
    line: int = 0

    def __str__(self) -> str:
        src = "ANY" if self.src is None else str(MACAddr(self.src))
        dst = "ANY" if self.dst is None else str(MACAddr(self.dst))
        etype = "ANY" if self.ethertype is None else f"0x{self.ethertype:04x}"
        return "  ".join((src, dst, etype, _ports_text(self.vlan), _output_text(self.output)))


def _any(value: object) -> str:
    return "ANY" if value is None else str(value)


def _ports_text(r: tuple[int, int] | None) -> str:
    if r is None:
        return "ANY"
    return str(r[0]) if r[0] == r[1] else f"{r[0]}:{r[1]}"


def _output_text(output: int) -> str:
    return {0: "Reject", 1: "Accept"}.get(output, str(output))


# Field parsers: each returns a value or raises ValueError with a message naming the text.

def parse_output(text: str) -> int:
    """`Accept`/`true` -> 1, `Reject`/`false` -> 0, or a flow number."""
    low = text.lower()
    if low in ("accept", "true"):
        return 1
    if low in ("reject", "false"):
        return 0
    value = _number(text, MAX_OUTPUT, hex_ok=False)
    if value is not None:
        return value
    raise ValueError(f'bad output "{text}": expected Accept, Reject or a flow number '
                     f"from 0 to {MAX_OUTPUT}")


def parse_address(text: str) -> CIDR | None:
    """`ANY` or an IPv4/IPv6 CIDR (a bare address is a /32 or /128 network)."""
    if text.upper() == "ANY":
        return None
    try:
        return parse_cidr(text)
    except AddressError as e:
        raise ValueError(str(e)) from None


def parse_protocol(text: str) -> int | None:
    """`ANY`, a protocol name (tcp, udp, icmp, ...) or a number (decimal or 0x hex)."""
    return _named_number(text, PROTOCOLS, 255, "protocol", "a number from 0 to 255")


def parse_range(text: str, what: str, limit: int) -> tuple[int, int] | None:
    """`ANY`, `n` or `a:b` with 0 <= a <= b <= limit; the full range counts as ANY."""
    if text.upper() == "ANY":
        return None
    lo_text, colon, hi_text = text.partition(":")
    lo = _number(lo_text, limit, hex_ok=False)
    hi = _number(hi_text, limit, hex_ok=False) if colon else lo
    if lo is None or hi is None:
        raise ValueError(f'bad {what} "{text}": expected ANY, a number from 0 to {limit} '
                         f"or a range like 1024:{limit}")
    if lo > hi:
        raise ValueError(f'bad {what} "{text}": range start is above its end')
    if (lo, hi) == (0, limit):
        return None  # NFF-Go treats the full range as ANY, also for packets without ports
    return lo, hi


def parse_mac_field(text: str, what: str) -> int | None:
    """`ANY` or a MAC address."""
    if text.upper() == "ANY":
        return None
    try:
        return parse_mac(text)
    except AddressError as e:
        raise ValueError(f"bad {what}: {e}") from None


def parse_ethertype(text: str) -> int | None:
    """`ANY`, a name (ipv4, ipv6, arp, mpls, ...) or a number (0x hex or decimal)."""
    return _named_number(text, ETHERTYPES, 0xFFFF, "ethertype", "a number like 0x0800")


def _named_number(text: str, names: dict[str, int], limit: int, what: str,
                  example: str) -> int | None:
    """`ANY` (None), one of `names`, or a number up to `limit`."""
    if text.upper() == "ANY":
        return None
    value = names.get(text.lower())
    if value is None:
        value = _number(text, limit)
    if value is None:
        raise ValueError(f'bad {what} "{text}": expected ANY, {example} '
                         f"or one of {', '.join(names)}")
    return value


def _number(text: str, limit: int, hex_ok: bool = True) -> int | None:
    digits = text[2:] if hex_ok and text[:2].lower() == "0x" else text
    base = 16 if digits is not text else 10
    if not digits or not digits.isascii() or not digits.isalnum():
        return None
    try:
        value = int(digits, base)
    except ValueError:
        return None
    return value if value <= limit else None


# Building rules from their fields (shared by the text and JSON forms).

class _Collector:
    """Collects per-field errors of one rule so a line reports all its problems."""

    def __init__(self, source: str, line: int | None, errors: list[RuleLineError]) -> None:
        self.source, self.line, self.errors, self.ok = source, line, errors, True

    def field(self, parse, *args):
        try:
            return parse(*args)
        except ValueError as e:
            self.fail(str(e))
            return None

    def fail(self, message: str) -> None:
        self.errors.append(RuleLineError(self.source, self.line, message))
        self.ok = False


def _make_l3(values: list[str], c: _Collector, line: int) -> L3Rule | None:
    src_t, dst_t, proto_t, sport_t, dport_t, out_t = values
    src = c.field(parse_address, src_t)
    dst = c.field(parse_address, dst_t)
    proto = c.field(parse_protocol, proto_t)
    sports = c.field(parse_range, sport_t, "source port", 0xFFFF)
    dports = c.field(parse_range, dport_t, "destination port", 0xFFFF)
    output = c.field(parse_output, out_t)
    if not c.ok:
        return None
    if src is not None and dst is not None and src.version != dst.version:
        c.fail(f'source "{src_t}" and destination "{dst_t}" mix IPv4 and IPv6 in one rule')
    if (sports or dports) and proto is not None and proto not in PORT_PROTOCOLS:
        c.fail(f'protocol "{proto_t}" has no ports: with it source and destination port '
               "must be ANY (ports need tcp, udp or ANY)")
    if not c.ok:
        return None
    return L3Rule(src, dst, proto, sports, dports, output, line)


def _make_l2(values: list[str], c: _Collector, line: int) -> L2Rule | None:
    src_t, dst_t, etype_t, vlan_t, out_t = values
    src = c.field(parse_mac_field, src_t, "source MAC")
    dst = c.field(parse_mac_field, dst_t, "destination MAC")
    etype = c.field(parse_ethertype, etype_t)
    vlan = c.field(parse_range, vlan_t, "VLAN id", 4095)
    output = c.field(parse_output, out_t)
    return L2Rule(src, dst, etype, vlan, output, line) if c.ok else None


def _strip_comment(raw: str) -> str:
    return raw.split("#", 1)[0].strip()


def parse_l3_text(text: str, source: str = "<string>") -> list[L3Rule]:
    """Rules of an L3 text table; raises RuleError listing every bad line."""
    rules: list[L3Rule] = []
    errors: list[RuleLineError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        cols = _strip_comment(raw).split()
        if not cols:
            continue
        c = _Collector(source, number, errors)
        if len(cols) == 5:
            cols.append("Reject")  # NFF-Go's default when the output column is left out
        if len(cols) != 6:
            c.fail(f"expected 6 columns ({', '.join(L3_COLUMNS)}), got {len(cols)}")
            continue
        rule = _make_l3(cols, c, number)
        if rule is not None:
            rules.append(rule)
    if errors:
        raise RuleError(errors)
    return rules


def parse_l2_text(text: str, source: str = "<string>") -> list[L2Rule]:
    """Rules of an L2 text table (4 columns as in NFF-Go, or 5 with a VLAN id)."""
    rules: list[L2Rule] = []
    errors: list[RuleLineError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        cols = _strip_comment(raw).split()
        if not cols:
            continue
        c = _Collector(source, number, errors)
        if len(cols) == 3:
            cols.append("Reject")
        if len(cols) == 4:
            cols.insert(3, "ANY")  # NFF-Go's L2 table has no VLAN column
        if len(cols) != 5:
            c.fail(f"expected 4 or 5 columns ({', '.join(L2_COLUMNS)}; VLAN id optional), "
                   f"got {len(cols)}")
            continue
        rule = _make_l2(cols, c, number)
        if rule is not None:
            rules.append(rule)
    if errors:
        raise RuleError(errors)
    return rules


# JSON forms: {"L3Rules": [{"SrcAddr", "DstAddr", "ID", "SrcPort", "DstPort",
# "OutputNumber"}]} and {"L2Rules": [{"Source", "Destination", "ID", "VLAN", "Rule"}]}.
# Keys match case-insensitively, as Go's JSON decoder does.
L3_JSON_KEYS = ("SrcAddr", "DstAddr", "ID", "SrcPort", "DstPort", "OutputNumber")
L2_JSON_KEYS = ("Source", "Destination", "ID", "VLAN", "Rule")


def _json_items(text: str, source: str, top_key: str) -> list[tuple[object, int | None]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise RuleError([RuleLineError(source, e.lineno, f"bad JSON: {e.msg}")]) from None
    if not isinstance(doc, dict):
        raise RuleError([RuleLineError(source, 1, f'expected a JSON object with "{top_key}"')])
    keys = {k.lower(): k for k in doc}
    if top_key.lower() not in keys or not isinstance(doc[keys[top_key.lower()]], list):
        raise RuleError([RuleLineError(
            source, 1, f'expected a JSON object with a list "{top_key}"')])
    items = doc[keys[top_key.lower()]]
    return list(zip(items, _json_item_lines(text, keys[top_key.lower()], len(items)),
                    strict=True))


def _json_item_lines(text: str, key: str, count: int) -> list[int | None]:
    """Line of each element of the top-level list `key`, so errors can name lines."""
    m = re.search('"' + re.escape(key) + r'"\s*:\s*\[', text)
    lines: list[int | None] = []
    decoder = json.JSONDecoder()
    pos = m.end() if m else -1
    try:
        while m and len(lines) < count:
            while text[pos] in " \t\r\n,":
                pos += 1
            lines.append(text.count("\n", 0, pos) + 1)
            _, pos = decoder.raw_decode(text, pos)
    except (ValueError, IndexError):
        pass
    return lines if len(lines) == count else [None] * count


def _json_values(item: object, keys: tuple[str, ...], defaults: dict[str, str],
                 c: _Collector, n: int) -> list[str] | None:
    if not isinstance(item, dict):
        c.fail(f"rule {n}: expected a JSON object with keys {', '.join(keys)}")
        return None
    by_lower = {k.lower(): k for k in keys}
    values = dict(defaults)
    typed = True
    for k, v in item.items():
        if k.lower() not in by_lower:
            c.fail(f'rule {n}: unknown key "{k}" (known: {", ".join(keys)})')
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, str | int):
            c.fail(f'rule {n}: "{k}" must be a string or a number, got {json.dumps(v)}')
            values[by_lower[k.lower()]] = ""  # reported here; not again as missing
            typed = False
            continue
        values[by_lower[k.lower()]] = str(v).strip()
    missing = [k for k in keys if k not in values]
    if missing:
        c.fail(f"rule {n}: missing {', '.join(missing)}")
    return [values[k] for k in keys] if typed and not missing else None


def parse_l3_json(text: str, source: str = "<string>") -> list[L3Rule]:
    """Rules of NFF-Go's L3 JSON form; raises RuleError listing every bad rule."""
    rules: list[L3Rule] = []
    errors: list[RuleLineError] = []
    defaults = {"OutputNumber": "Reject"}
    for n, (item, line) in enumerate(_json_items(text, source, "L3Rules"), 1):
        c = _Collector(source, line, errors)
        values = _json_values(item, L3_JSON_KEYS, defaults, c, n)
        rule = _make_l3(values, c, line or n) if values else None
        if rule is not None:
            rules.append(rule)
    if errors:
        raise RuleError(errors)
    return rules


def parse_l2_json(text: str, source: str = "<string>") -> list[L2Rule]:
    """Rules of NFF-Go's L2 JSON form (plus an optional "VLAN" key)."""
    rules: list[L2Rule] = []
    errors: list[RuleLineError] = []
    defaults = {"VLAN": "ANY", "Rule": "Reject"}
    for n, (item, line) in enumerate(_json_items(text, source, "L2Rules"), 1):
        c = _Collector(source, line, errors)
        values = _json_values(item, L2_JSON_KEYS, defaults, c, n)
        rule = _make_l2(values, c, line or n) if values else None
        if rule is not None:
            rules.append(rule)
    if errors:
        raise RuleError(errors)
    return rules


def is_json(text: str) -> bool:
    """Whether a rules text is in the JSON form (its first non-blank character is `{`)."""
    return text.lstrip().startswith("{")


def read_rules_file(path: str | Path) -> str:
    """A rules file's text; an unreadable file is a RuleError naming it."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")  # a leading BOM is no column
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise RuleError([RuleLineError(str(path), None, f"cannot read: {reason}")]) from None
