"""Pktgen's command language: parse one line, apply it to the generator.

`Interpreter.execute(line)` runs one command and returns its text output; a bad command
raises `CommandError` saying what is wrong and changes nothing. `run_file` runs a script
line by line: a bad line is reported as `file:line: why` and the rest still runs, so a
typo never stops the traffic. Syntax and defaults follow DPDK Pktgen's `commands.rst`.
The interpreter drives an `Engine` and keeps what only the language knows: the page
shown, a `quit` asked for, where script output goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pktflow.packet.addr import (
    AddressError,
    IPv4Addr,
    IPv6Addr,
    parse_cidr,
    parse_ipv4,
    parse_ipv6,
    parse_mac,
)
from pktflow.pktgen.config import (
    FIELD_LIMITS,
    MAX_BURST,
    MAX_SIZE,
    MIN_SIZE,
    PROTO_NAMES,
    PROTOS,
    default_config,
    format_mac,
)
from pktflow.pktgen.engine import Engine
from pktflow.pktgen.page import render_page

MAX_LOAD_DEPTH = 8
PAGES = ("main", "range", "stats")

HELP = """\
Port lists: 0 | 0,1 | 0-3 | 2,4,6-9 | all.  Sizes count the 4-byte FCS, as in Pktgen.
  set <portlist> count <n>            packets to send (0 = until stopped)
  set <portlist> size <64-1518>       frame size
  set <portlist> rate <percent>       percent of the port speed (wire bytes incl. 20 B gap)
  set <portlist> pps <n>              packets per second instead of a percent rate
  set <portlist> burst|txburst <n>    packets per batch (1-256)
  set <portlist> sport|dport <n>      TCP/UDP ports
  set <portlist> ttl <n>              IPv4 TTL / IPv6 hop limit
  set <portlist> proto udp|tcp|icmp   L4 protocol
  set <portlist> type ipv4|ipv6       L3 protocol
  set <portlist> vlan|vlanid <id>     VLAN id (send tags with: enable <portlist> vlan)
  set <portlist> src|dst mac <mac>    MAC addresses
  set <portlist> src ip <addr/len>    source IP with its prefix length
  set <portlist> dst ip <addr>        destination IP
  range <portlist> src|dst mac|ip|port <start|min|max|inc> <value>
  range <portlist> size|ttl|vlan <start|min|max|inc> <value>
  range <portlist> <field> <start> <min> <max> <inc>    all four at once
  range <portlist> proto tcp|udp
  enable|disable <portlist> range|vlan|pcap
  start|stop <portlist>, str (start all), stp (stop all)
  clr, clear [<portlist>] [stats]     zero the statistics
  reset <portlist>, rst               back to the default settings
  load <file>, save <file>            run / write a command script
  sleep <seconds>, delay <ms>
  page main|range|stats, help, quit"""


class CommandError(ValueError):
    """A command line is unknown or malformed; the message says what to type instead."""


def parse_portlist(text: str, known: list[int]) -> list[int]:
    """'0', '0,1', '0-3', '2,4,6-9' or 'all' -> sorted port ids, all of them configured."""
    if text.lower() == "all":
        return list(known)
    ids: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise CommandError(f'bad port list "{text}": expected a list like 0, 0,1, 0-3 '
                               f"or all")
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first:
            raise CommandError(f'bad port list "{text}": {first}-{last} is empty')
        ids.update(range(first, last + 1))
    missing = sorted(ids - set(known))
    if missing:
        have = ", ".join(map(str, known)) or "none"
        raise CommandError(f"unknown port {missing[0]} in \"{text}\" (ports: {have})")
    return sorted(ids)


def parse_int(text: str, what: str, lo: int, hi: int) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise CommandError(f'{what}: "{text}" is not a whole number') from None
    if not lo <= value <= hi:
        raise CommandError(f"{what}: {value} is outside {lo}..{hi}")
    return value


def parse_float(text: str, what: str) -> float:
    try:
        return float(text.rstrip("%"))
    except ValueError:
        raise CommandError(f'{what}: "{text}" is not a number') from None


class Interpreter:
    """Runs command lines against an `Engine`; script output and messages go to `output`."""

    def __init__(self, gen: Engine, output: Callable[[str], object] = print) -> None:
        self.gen = gen
        self.output = output
        self.page = "main"  # the page `page` chose last; the console keeps drawing it
        self.quit_requested = False
        self.show_pages = True  # the console draws pages itself and turns this off
        self._depth = 0
        self._commands: dict[str, Callable[[list[str]], str]] = {
            "set": self._set, "range": self._range, "enable": self._enable,
            "disable": self._disable, "start": self._start, "stop": self._stop,
            "str": lambda a: self._start(["all", *a]), "stp": lambda a: self._stop(["all", *a]),
            "clr": lambda a: self._clear(["all", *a]), "clear": self._clear,
            "reset": self._reset, "rst": lambda a: self._reset(["all", *a]),
            "load": self._load, "save": self._save, "sleep": self._sleep,
            "delay": self._delay, "page": self._page, "help": lambda a: HELP,
            "quit": self._quit, "exit": self._quit,
        }

    # ---- entry points ---------------------------------------------------------------
    def execute(self, line: str) -> str:
        """Run one line; returns its output text. Raises CommandError for bad input."""
        text = line.strip()
        if not text or text.startswith("#") or text.startswith("//"):
            return ""
        words = text.split()
        handler = self._commands.get(words[0].lower())
        if handler is None:
            raise CommandError(f'unknown command "{words[0]}": type help for the list')
        try:
            with self.gen.config_lock:
                return handler(words[1:])
        except CommandError:
            raise
        except (AddressError, ValueError, OSError, RuntimeError) as e:
            raise CommandError(str(e)) from None

    def run_file(self, path: str | Path) -> list[str]:
        """Run a script; reports each bad line as 'file:line: why' and goes on. Stops at
        `quit`. Returns the error messages."""
        path = Path(path)
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise CommandError(f"{path}: cannot read: {e}") from None
        errors = []
        for number, line in enumerate(lines, 1):
            try:
                out = self.execute(line)
            except CommandError as e:
                message = f"{path}:{number}: {e}"
                errors.append(message)
                self.output(message)
                continue
            if out:
                self.output(out)
            if self.quit_requested:
                break
        return errors

    # ---- helpers --------------------------------------------------------------------
    def _ports(self, args: list[str], usage: str) -> list[int]:
        if not args:
            raise CommandError(f"missing port list: {usage}")
        return parse_portlist(args[0], self.gen.port_ids())

    def _configs(self, ids: list[int]):
        for i in ids:
            cfg = self.gen.configs[i]
            yield cfg
            cfg.bump()

    # ---- set ------------------------------------------------------------------------
    def _set(self, args: list[str]) -> str:
        usage = "set <portlist> <what> <value> (type help)"
        ids = self._ports(args, usage)
        if len(args) < 3:
            raise CommandError(f"incomplete command: {usage}")
        what, rest = args[1].lower(), args[2:]
        if what in ("src", "dst") and len(rest) == 2:
            return self._set_address(ids, what, rest[0].lower(), rest[1])
        if len(rest) != 1:
            raise CommandError(f'set {what}: expected one value, got "{" ".join(rest)}"')
        value = rest[0]
        note = ""
        if what == "count":
            n = parse_int(value, "count", 0, 2**62)
            for cfg in self._configs(ids):
                cfg.count = n
        elif what == "size":
            n = parse_int(value, "size", 0, 1 << 20)
            clamped = min(max(n, MIN_SIZE), MAX_SIZE)
            if clamped != n:
                note = f"size {n} set to {clamped} (frames are {MIN_SIZE}..{MAX_SIZE} bytes)"
            for cfg in self._configs(ids):
                cfg.size = clamped
        elif what == "rate":
            r = parse_float(value, "rate")
            if r <= 0:
                r, note = 0.01, "rate must be above 0: set to 0.01%"
            elif r > 100:
                r, note = 100.0, "rate above 100%: set to 100%"
            for cfg in self._configs(ids):
                cfg.rate, cfg.pps = r, 0
        elif what == "pps":
            n = parse_int(value.lower().removesuffix("pps"), "pps", 1, 10**9)
            for cfg in self._configs(ids):
                cfg.pps = n
        elif what in ("burst", "txburst"):
            n = parse_int(value, what, 1, MAX_BURST)
            for cfg in self._configs(ids):
                cfg.burst = n
        elif what in ("sport", "dport"):
            n = parse_int(value, what, 0, 65535)
            for cfg in self._configs(ids):
                setattr(cfg, what, n)
        elif what == "ttl":
            n = parse_int(value, "ttl", 0, 255)
            for cfg in self._configs(ids):
                cfg.ttl = n
        elif what == "proto":
            proto = PROTOS.get(value.lower())
            if proto is None:
                raise CommandError(f'proto: "{value}" is not one of udp, tcp, icmp')
            for cfg in self._configs(ids):
                cfg.proto = proto
        elif what == "type":
            kind = value.lower()
            if kind not in ("ipv4", "ipv6"):
                raise CommandError(f'type: "{value}" is not one of ipv4, ipv6')
            for cfg in self._configs(ids):
                cfg.ipv6 = kind == "ipv6"
        elif what in ("vlan", "vlanid"):
            n = parse_int(value, "vlan", 1, 4095)
            for cfg in self._configs(ids):
                cfg.vlan_id = n
        else:
            raise CommandError(f'set: unknown setting "{what}" (count, size, rate, pps, '
                               f"burst, sport, dport, ttl, proto, type, vlan, src|dst mac|ip)")
        return note

    def _set_address(self, ids: list[int], side: str, kind: str, value: str) -> str:
        if kind == "mac":
            mac = parse_mac(value)
            for cfg in self._configs(ids):
                setattr(cfg, f"{side}_mac", mac)
            return ""
        if kind != "ip":
            raise CommandError(f'set {side}: expected "mac" or "ip", got "{kind}"')
        if side == "dst" and "/" in value:
            raise CommandError(f'dst ip: "{value}": give an address without a prefix length')
        cidr = parse_cidr(value)
        address = cidr.network if cidr.prefix == cidr.bits else self._host(value, cidr.version)
        for cfg in self._configs(ids):
            if cidr.version == 4:
                setattr(cfg, f"{side}_ip", address)
                if side == "src":
                    cfg.src_prefix = cidr.prefix
                cfg.ipv6 = False
            else:
                setattr(cfg, f"{side}_ip6", address)
                if side == "src":
                    cfg.src_prefix6 = cidr.prefix
                cfg.ipv6 = True
        return ""

    @staticmethod
    def _host(text: str, version: int) -> int:
        # parse_cidr clears host bits; the source address keeps them (10.1.2.3/24).
        address = text.partition("/")[0]
        return parse_ipv4(address) if version == 4 else parse_ipv6(address)

    # ---- range ----------------------------------------------------------------------
    def _range(self, args: list[str]) -> str:
        usage = "range <portlist> src|dst mac|ip|port|size|ttl|vlan start|min|max|inc <value>"
        ids = self._ports(args, usage)
        rest = [a.lower() for a in args[1:]]
        if not rest:
            raise CommandError(f"incomplete command: {usage}")
        if rest[0] == "proto":
            if len(rest) != 2 or rest[1] not in ("tcp", "udp"):
                raise CommandError("range proto: expected tcp or udp")
            for cfg in self._configs(ids):
                cfg.range_proto = PROTOS[rest[1]]
            return ""
        if rest[0] in ("src", "dst"):
            if len(rest) < 2 or rest[1] not in ("mac", "ip", "port"):
                raise CommandError(f'range {rest[0]}: expected mac, ip or port: {usage}')
            name, values = f"{rest[0]}_{rest[1]}", args[3:]
        elif rest[0] in ("size", "ttl", "vlan"):
            name, values = rest[0], args[2:]
        else:
            raise CommandError(f'range: unknown field "{args[1]}": {usage}')
        label = name.replace("_", " ")
        if len(values) == 2 and values[0].lower() in _SMMI:
            parts = {_SMMI[values[0].lower()]: self._range_value(name, label, values[1],
                                                                  values[0].lower())}
        elif len(values) == 4:
            parts = {key: self._range_value(name, label, v, key)
                     for key, v in zip(("start", "min", "max", "inc"), values, strict=True)}
        else:
            raise CommandError(f"range {label}: expected start|min|max|inc <value> or four "
                               f"values <start> <min> <max> <inc>")
        for cfg in self._configs(ids):
            field = cfg.ranges[name]
            for key, v in parts.items():
                setattr(field, key, v)
        return ""

    @staticmethod
    def _range_value(name: str, label: str, text: str, key: str) -> int:
        lo, hi = FIELD_LIMITS[name]
        if key in ("inc", "increment"):
            lo = 0
        if name.endswith("mac"):
            return parse_mac(text)
        if name.endswith("ip"):
            if ":" in text:
                raise CommandError(f"range {label}: only IPv4 addresses step ({text})")
            return parse_ipv4(text)
        return parse_int(text, f"range {label} {key}", lo, hi)

    # ---- modes, start/stop, stats -----------------------------------------------------
    def _enable(self, args: list[str], on: bool = True) -> str:
        verb = "enable" if on else "disable"
        usage = f"{verb} <portlist> range|vlan|pcap"
        ids = self._ports(args, usage)
        if len(args) != 2:
            raise CommandError(f"expected: {usage}")
        feature = args[1].lower()
        if feature not in ("range", "vlan", "pcap"):
            raise CommandError(f'{verb}: unknown feature "{args[1]}" (range, vlan, pcap)')
        if feature == "pcap" and on:
            missing = [i for i in ids if self.gen.workers[i].pcap_path is None]
            if missing:
                raise CommandError(f"enable pcap: port {missing[0]} has no pcap file: start "
                                   f"pktgen with --pcap {missing[0]}=FILE")
        for cfg in self._configs(ids):
            if feature == "vlan":
                cfg.vlan = on
            elif feature == "range":
                cfg.range = on
                cfg.pcap = cfg.pcap and not on  # one packet mode at a time
            else:
                cfg.pcap = on
                cfg.range = cfg.range and not on
        return ""

    def _disable(self, args: list[str]) -> str:
        return self._enable(args, on=False)

    def _start(self, args: list[str]) -> str:
        ids = self._ports(args, "start <portlist>")
        if len(args) > 1:
            raise CommandError(f'start: unexpected "{" ".join(args[1:])}"')
        self.gen.start(ids)
        return ""

    def _stop(self, args: list[str]) -> str:
        ids = self._ports(args, "stop <portlist>")
        if len(args) > 1:
            raise CommandError(f'stop: unexpected "{" ".join(args[1:])}"')
        self.gen.stop(ids)
        return ""

    def _clear(self, args: list[str]) -> str:
        rest = [a for a in args if a.lower() != "stats"]
        if len(rest) > 1:
            raise CommandError("expected: clear [<portlist>] [stats]")
        ids = parse_portlist(rest[0], self.gen.port_ids()) if rest else None
        self.gen.clear(ids)
        return ""

    def _reset(self, args: list[str]) -> str:
        ids = self._ports(args, "reset <portlist>")
        all_ids = self.gen.port_ids()
        macs = {p.id: int(p.mac) for p in self.gen.ports}
        for i in ids:
            fresh = default_config(i, all_ids, macs)
            cfg = self.gen.configs[i]
            fresh.version = cfg.version + 1
            cfg.__dict__.update(fresh.__dict__)
        return ""

    # ---- files and timing -------------------------------------------------------------
    def _load(self, args: list[str]) -> str:
        if len(args) != 1:
            raise CommandError("expected: load <file>")
        if self._depth >= MAX_LOAD_DEPTH:
            raise CommandError(f"load {args[0]}: scripts nested deeper than {MAX_LOAD_DEPTH}")
        self._depth += 1
        try:
            errors = self.run_file(args[0])
        finally:
            self._depth -= 1
        return f"{args[0]}: {len(errors)} bad line(s)" if errors else ""

    def _save(self, args: list[str]) -> str:
        if len(args) != 1:
            raise CommandError("expected: save <file>")
        Path(args[0]).write_text(self.script() + "\n")
        return f"saved to {args[0]}"

    def script(self) -> str:
        """The commands that rebuild the current settings of every port."""
        lines = ["# pktflow pktgen settings"]
        for pid, cfg in sorted(self.gen.configs.items()):
            p = f"set {pid}"
            lines += [f"{p} count {cfg.count}", f"{p} size {cfg.size}", f"{p} burst {cfg.burst}",
                      f"{p} pps {cfg.pps}" if cfg.pps else f"{p} rate {cfg.rate:g}",
                      f"{p} sport {cfg.sport}", f"{p} dport {cfg.dport}", f"{p} ttl {cfg.ttl}",
                      f"{p} proto {PROTO_NAMES[cfg.proto]}", f"{p} vlan {cfg.vlan_id}",
                      f"{p} src mac {format_mac(cfg.src_mac)}",
                      f"{p} dst mac {format_mac(cfg.dst_mac)}"]
            lines += [f"{p} src ip {IPv6Addr(cfg.src_ip6)}/{cfg.src_prefix6}",
                      f"{p} dst ip {IPv6Addr(cfg.dst_ip6)}",
                      f"{p} src ip {IPv4Addr(cfg.src_ip)}/{cfg.src_prefix}",
                      f"{p} dst ip {IPv4Addr(cfg.dst_ip)}",
                      f"{p} type {'ipv6' if cfg.ipv6 else 'ipv4'}"]
            for name, r in cfg.ranges.items():
                side, _, kind = name.partition("_")
                label = f"{side} {kind}" if kind else side
                values = [r.start, r.min, r.max, r.inc]
                if kind == "mac":
                    text = [format_mac(v) for v in values]
                elif kind == "ip":
                    text = [str(IPv4Addr(v)) for v in values]
                else:
                    text = [str(v) for v in values]
                lines.append(f"range {pid} {label} {' '.join(text)}")
            if cfg.range_proto is not None:
                lines.append(f"range {pid} proto {PROTO_NAMES[cfg.range_proto]}")
            lines += [f"{'enable' if cfg.vlan else 'disable'} {pid} vlan",
                      f"{'enable' if cfg.range else 'disable'} {pid} range"]
            if cfg.pcap:
                lines.append(f"enable {pid} pcap")
        return "\n".join(lines)

    def _sleep(self, args: list[str]) -> str:
        if len(args) != 1:
            raise CommandError("expected: sleep <seconds>")
        seconds = parse_float(args[0], "sleep")
        if not 0 <= seconds <= 86400:
            raise CommandError(f"sleep: {seconds} is outside 0..86400 seconds")
        self._wait(seconds)
        return ""

    def _delay(self, args: list[str]) -> str:
        if len(args) != 1:
            raise CommandError("expected: delay <milliseconds>")
        ms = parse_float(args[0], "delay")
        if not 0 <= ms <= 86_400_000:
            raise CommandError(f"delay: {ms} is outside 0..86400000 ms")
        self._wait(ms / 1000)
        return ""

    def _wait(self, seconds: float) -> None:
        # Release the settings lock while waiting: the page and the workers read them.
        lock = self.gen.config_lock
        lock.release()
        try:
            time.sleep(seconds)
        finally:
            lock.acquire()

    def _page(self, args: list[str]) -> str:
        name = args[0].lower() if args else "main"
        name = {"0": "main"}.get(name, name)
        if name not in PAGES or len(args) > 1:
            raise CommandError(f'page: unknown page "{" ".join(args)}" (main, range, stats)')
        self.page = name
        if not self.show_pages:
            return ""
        return render_page(self.gen, name)

    def _quit(self, args: list[str]) -> str:
        self.quit_requested = True
        return ""


_SMMI = {"start": "start", "min": "min", "minimum": "min", "max": "max", "maximum": "max",
         "inc": "inc", "increment": "inc"}


__all__ = ["HELP", "CommandError", "Interpreter", "parse_portlist"]
