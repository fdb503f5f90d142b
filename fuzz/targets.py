"""Fuzz targets: one function per input format, each taking raw bytes from the fuzzer.

A target returns normally for input it accepts or rejects with its documented error type
(whose message must name the file, line or field); anything else it raises is a crash.
Compiled (Numba) and interpreted (plain Python) paths run on the same input and must agree.
Targets write nothing outside a private temporary directory and never send packets.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import tempfile
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pktflow.packet import HeaderMissing, Packet, Pool
from pktflow.packet import meta as M
from pktflow.packet.fields import LAYERS


class Mismatch(AssertionError):
    """Two paths that must agree (compiled vs interpreted, pktflow vs Scapy) did not."""


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


# Files the targets write go to a private directory: the runner's (removed by it, since
# libFuzzer ends its process without Python's exit handlers) or one removed at exit.
if os.environ.get("PKTFLOW_FUZZ_TMP"):
    _TMP = Path(os.environ["PKTFLOW_FUZZ_TMP"])
else:
    _TMP = Path(tempfile.mkdtemp(prefix="pktflow-fuzz-"))
    atexit.register(shutil.rmtree, _TMP, True)


def scratch(name: str, data: bytes) -> Path:
    """`data` in a file of the private temporary directory."""
    path = _TMP / name
    path.write_bytes(data)
    return path


def interpreted(fn: Callable) -> Callable:
    """A plain-Python copy of a Numba function's body (the dispatcher keeps its own), which
    coverage instrumentation may rewrite without touching the compiled path."""
    py = fn.py_func
    return types.FunctionType(py.__code__, py.__globals__, py.__name__ + "_interpreted",
                              py.__defaults__, py.__closure__)


# ---------------------------------------------------------------- packets
HEADROOM = 128
POOL = Pool(buffers=4, bufsize=2048 + HEADROOM, headroom=HEADROOM, name="fuzz")
POISONS = (0x00, 0xFF)
_IDX = np.zeros(1, dtype=np.int32)


def _load(raw: bytes, poison: int, b: int = 0) -> None:
    POOL.data[b, :] = poison
    POOL.meta[b, :] = 0
    POOL.write(b, raw)


def _interp_funcs() -> dict[str, Callable]:
    from pktflow.packet import checksum, ops, parse

    return {"parse": interpreted(parse._parse), "checksums_ok": interpreted(checksum.checksums_ok),
            "push_ipv4": interpreted(ops.push_ipv4), "pop_ipv4": interpreted(ops.pop_ipv4),
            "encapsulate": interpreted(ops.encapsulate),
            "decapsulate": interpreted(ops.decapsulate)}


INTERP = _interp_funcs()


def parse_frame(data: bytes) -> None:
    """The batch parser (compiled) vs its own Python body (interpreted), confinement to the
    frame (poison around it changes nothing), then every field through the object API and
    the compiled accessors, which must return the same values."""
    from pktflow.packet import parse_batch
    from pktflow.packet.accessors import acc

    raw = data[:2048]
    rows = []
    for poison in POISONS:
        _load(raw, poison)
        parse_batch(POOL.data, POOL.meta, _IDX, 1)
        rows.append(POOL.meta[0].copy())
        if not np.all(POOL.data[0, :HEADROOM] == poison):
            raise Mismatch("the parser wrote before the frame")
    if not np.array_equal(rows[0], rows[1]):
        raise Mismatch(f"parse depends on bytes outside the frame: {rows[0]} vs {rows[1]}")
    compiled = rows[0]
    _load(raw, 0x00)
    INTERP["parse"](POOL.data, POOL.meta, 0)
    if not np.array_equal(POOL.meta[0], compiled):
        raise Mismatch(f"compiled parse {compiled.tolist()} != interpreted "
                       f"{POOL.meta[0].tolist()}")
    end = HEADROOM + len(raw)
    for col in (M.L3, M.L4, M.PAYLOAD, M.MPLS, M.TUNNEL):
        if not (compiled[col] == -1 or HEADROOM <= compiled[col] <= end):
            raise Mismatch(f"meta column {col} = {compiled[col]} lies outside the frame")
    pkt = Packet(POOL, 0)
    data_, meta = POOL.data, POOL.meta
    for name in LAYERS:
        present = getattr(acc, f"has_{name}")(meta, 0)
        if name != "eth" and bool(present) != pkt.has(name):
            raise Mismatch(f"has_{name}: compiled {present}, object API {pkt.has(name)}")
        if not pkt.has(name):
            try:
                getattr(pkt, name)
            except HeaderMissing:
                continue
            raise Mismatch(f"pkt.{name} of a packet without it did not raise HeaderMissing")
        view = getattr(pkt, name)
        for f in LAYERS[name].fields:
            try:
                value = getattr(view, f.name)
            except HeaderMissing:
                continue
            got = getattr(acc, f"{name}_{f.name}_get")(data_, meta, 0)
            got = bytes(got) if f.kind == "ipv6" else int(got)
            want = value.packed if f.kind == "ipv6" else int(value)
            if got != want:
                raise Mismatch(f"{name}.{f.name}: compiled {got!r}, object API {want!r}")
    repr(pkt)


def checksum_encap(data: bytes) -> None:
    """Checksum check, IP-in-IP push/pop and raw encap/decap at fuzzed offsets, compiled vs
    interpreted on twin buffers: same results, same bytes, and pop undoes push."""
    from pktflow.packet import checksum, ops, parse_packet

    if len(data) < 4:
        return
    off, nbytes, choice = data[0], data[1] % 64, data[2] % 4
    raw = data[3:2000]
    for b in (0, 1):
        _load(raw, 0x5A, b)
        parse_packet(POOL.data, POOL.meta, b)
    d, m = POOL.data, POOL.meta
    if bool(checksum.checksums_ok(d, m, 0)) != bool(INTERP["checksums_ok"](d, m, 1)):
        raise Mismatch("checksums_ok: compiled and interpreted disagree")
    before, orig = POOL.read(0), int(m[0, M.FLAGS])
    inner = 41 if m[0, M.FLAGS] & M.F_IPV6 else 4
    if choice == 0:
        r0 = ops.push_ipv4(d, m, 0, 0x0A000001, 0x0A000002, inner)
        r1 = INTERP["push_ipv4"](d, m, 1, 0x0A000001, 0x0A000002, inner)
    elif choice == 1:
        r0, r1 = ops.pop_ipv4(d, m, 0), INTERP["pop_ipv4"](d, m, 1)
    elif choice == 2:
        r0 = ops.encapsulate(d, m, 0, off, nbytes)
        r1 = INTERP["encapsulate"](d, m, 1, off, nbytes)
    else:
        r0 = ops.decapsulate(d, m, 0, off, nbytes)
        r1 = INTERP["decapsulate"](d, m, 1, off, nbytes)
    if bool(r0) != bool(r1) or POOL.read(0) != POOL.read(1) or not np.array_equal(m[0], m[1]):
        raise Mismatch(f"op {choice}: compiled and interpreted results differ")
    if choice == 0 and r0 and orig & (M.F_IPV4 | M.F_IPV6) and not orig & M.F_MALFORMED:
        if not ops.pop_ipv4(d, m, 0) or POOL.read(0) != before:
            raise Mismatch("pop_ipv4 did not undo push_ipv4")
    if choice == 2 and r0:
        if not ops.decapsulate(d, m, 0, off, nbytes) or POOL.read(0) != before:
            raise Mismatch("decapsulate did not undo encapsulate")


_SCAPY: dict[str, object] = {}


def _scapy() -> dict[str, object]:
    if not _SCAPY:
        from scapy.contrib.mpls import MPLS  # noqa: F401  (binds ethertype 0x8847)
        from scapy.layers.inet import ICMP, IP, TCP, UDP
        from scapy.layers.inet6 import IPv6
        from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

        _SCAPY.update(Ether=Ether, IP=IP, IPv6=IPv6, TCP=TCP, UDP=UDP, ICMP=ICMP, ARP=ARP,
                      Dot1Q=Dot1Q, Dot1AD=Dot1AD)
    return _SCAPY


def scapy_diff(data: bytes) -> None:
    """pktflow's dissection vs Scapy's on frames pktflow accepts as well formed: same VLAN
    ids, same IP addresses and protocol, same L4 ports or ICMP type."""
    from pktflow.packet import parse_packet

    s = _scapy()
    raw = data[:1514]
    _load(raw, 0)
    flags = int(parse_packet(POOL.data, POOL.meta, 0))
    if flags & M.F_MALFORMED or flags & M.F_MPLS:
        return  # Scapy dissects what pktflow rejects; MPLS payloads are guesswork in both
    pkt = Packet(POOL, 0)
    sp = s["Ether"](raw)
    tags = []
    layer = sp.payload
    while isinstance(layer, s["Dot1Q"] | s["Dot1AD"]) and len(tags) < 2:
        tags.append(layer.vlan)
        layer = layer.payload
    mine = [pkt.vlan.vid] if pkt.has("vlan") else []
    if pkt.has("inner_vlan"):
        mine.append(pkt.inner_vlan.vid)
    if tags[:len(mine)] != mine or (len(tags) > len(mine) and len(mine) < 2):
        raise Mismatch(f"VLAN ids: pktflow {mine}, Scapy {tags}")
    l4 = None
    if pkt.has("ipv4"):
        if not isinstance(layer, s["IP"]):
            raise Mismatch(f"pktflow sees IPv4, Scapy {layer.name}")
        got = (str(pkt.ipv4.src), str(pkt.ipv4.dst), pkt.ipv4.proto)
        if got != (layer.src, layer.dst, layer.proto):
            raise Mismatch(f"IPv4 {got} vs Scapy {(layer.src, layer.dst, layer.proto)}")
        l4 = layer.payload
    elif pkt.has("ipv6"):
        if not isinstance(layer, s["IPv6"]):
            raise Mismatch(f"pktflow sees IPv6, Scapy {layer.name}")
        theirs = (socket.inet_pton(socket.AF_INET6, layer.src),
                  socket.inet_pton(socket.AF_INET6, layer.dst))
        if (pkt.ipv6.src.packed, pkt.ipv6.dst.packed) != theirs:
            raise Mismatch("IPv6 addresses differ from Scapy's")
        l4 = layer.payload
        # Scapy names extension headers by kind; pktflow skips them to the L4 header.
        while l4 is not None and getattr(l4, "nh", None) is not None and not isinstance(
                l4, s["TCP"] | s["UDP"]) and l4.name != "Raw" and l4.payload:
            l4 = l4.payload
    elif pkt.has("arp") and (pkt.arp.hlen, pkt.arp.plen) == (6, 4) and not isinstance(
            layer, s["ARP"]):
        raise Mismatch(f"pktflow sees ARP, Scapy {layer.name}")
    if l4 is None or flags & M.F_FRAGMENT:
        return
    for name in ("tcp", "udp"):
        if pkt.has(name):
            cls = s[name.upper()]
            if not isinstance(l4, cls):
                raise Mismatch(f"pktflow sees {name}, Scapy {l4.name}")
            view = getattr(pkt, name)
            if (view.src_port, view.dst_port) != (l4.sport, l4.dport):
                raise Mismatch(f"{name} ports differ from Scapy's")
    if pkt.has("icmp") and pkt.has("ipv4"):  # Scapy leaves ICMP (1) over IPv6 undecoded
        if l4.name == "Raw" and pkt.icmp.type in (13, 14, 17, 18):
            return  # Scapy cannot decode timestamp and mask messages cut short
        if not isinstance(l4, s["ICMP"]) or (pkt.icmp.type, pkt.icmp.code) != (l4.type, l4.code):
            raise Mismatch("ICMP type/code differ from Scapy's")


# ---------------------------------------------------------------- files
def pcap_file(data: bytes) -> None:
    """Read a pcap/pcapng file to its end: packets, or a PcapError naming file and offset."""
    from pktflow.packet import Batch
    from pktflow.packet.pcap import PcapError, PcapReader

    path = scratch("in.pcap", data)
    batch = Batch(POOL, 4)
    try:
        with PcapReader(path) as reader:
            for _ in range(10000):
                got = reader.read_into(batch, 4)
                for k in range(batch.n):
                    b = int(batch.idx[k])
                    if not 0 <= POOL.meta[b, M.LEN] <= POOL.max_frame:
                        raise Mismatch(f"record of length {POOL.meta[b, M.LEN]}")
                POOL.free(batch)
                if got == 0:
                    break
            if reader.error is not None and str(path) not in reader.error:
                raise Mismatch(f"pcap error without the file name: {reader.error}")
    except PcapError as e:
        if str(path) not in str(e):
            raise Mismatch(f"PcapError without the file name: {e}") from None
    finally:
        POOL.free(batch)


_RULE_PKTS: list[bytes] = []


def _rule_packets() -> list[bytes]:
    if not _RULE_PKTS:
        from pktflow.packet import build

        _RULE_PKTS.extend([
            build.frame(ipv4={"src": "10.0.0.1", "dst": "192.168.1.9"}, tcp={"dst_port": 80}),
            build.frame(ipv4={"src": "172.16.5.4", "dst": "10.1.2.3"}, udp={"src_port": 53}),
            build.frame(ipv6={"src": "2001:db8::1", "dst": "fe80::2"}, udp={"dst_port": 443}),
            build.frame(vlan={"vid": 7}, ipv4={"src": "1.2.3.4"}, icmp={}),
        ])
    return _RULE_PKTS


def _reference_l3(rules: tuple, pkt: Packet) -> int:
    """First-match L3 classification written plainly from the documented semantics."""
    if pkt.has("ipv4"):
        version, src, dst = 4, int(pkt.ipv4.src), int(pkt.ipv4.dst)
    elif pkt.has("ipv6"):
        version, src, dst = 6, int(pkt.ipv6.src), int(pkt.ipv6.dst)
    else:
        return -1
    proto = int(POOL.meta[pkt.b, M.PROTO])
    l4 = "tcp" if pkt.has("tcp") else "udp" if pkt.has("udp") else None
    for i, r in enumerate(rules):
        if version not in r.families:
            continue
        if (r.src and not r.src.contains(src)) or (r.dst and not r.dst.contains(dst)):
            continue
        if r.proto is not None and r.proto != proto:
            continue
        if r.src_ports or r.dst_ports:
            if l4 is None:
                continue
            view = getattr(pkt, l4)
            if r.src_ports and not r.src_ports[0] <= view.src_port <= r.src_ports[1]:
                continue
            if r.dst_ports and not r.dst_ports[0] <= view.dst_port <= r.dst_ports[1]:
                continue
        return i
    return -1


def _acl(data: bytes, kind: str) -> None:
    from pktflow.acl import L2Rules, L3Rules, RuleError, parse_l2_text, parse_l3_text
    from pktflow.packet import Batch, parse_packet

    table_cls, reparse = (L3Rules, parse_l3_text) if kind == "l3" else (L2Rules, parse_l2_text)
    text = _text(data)
    try:
        table = table_cls.parse(text, "fuzz.rules")
    except RuleError as e:
        if not e.args or "fuzz.rules" not in str(e):
            raise Mismatch(f"RuleError without the file name: {e}") from None
        return
    # What was parsed prints back to rules that parse to the same thing.
    printed = [str(r) for r in table.rules]
    if [str(r) for r in reparse("\n".join(printed), "printed")] != printed:
        raise Mismatch("rules printed and parsed again differ")
    # Per-packet kernel, batch kernel and (L3) a plain reference must agree.
    batch = Batch(POOL, 1)
    batch.idx[0], batch.n = 0, 1
    for frame in _rule_packets():
        _load(frame, 0)
        parse_packet(POOL.data, POOL.meta, 0)
        pkt = Packet(POOL, 0)
        i = table.match(pkt)
        out = int(table.classify(batch)[0])
        want = table.rules[i].output if i >= 0 else 0
        if out != want or table.output(pkt) != want:
            raise Mismatch(f"{kind}: rule {i} matched but the batch output is {out}")
        if kind == "l3" and _reference_l3(table.rules, pkt) != i:
            raise Mismatch(f"l3 match {i}, reference {_reference_l3(table.rules, pkt)}")
    batch.n = 0


def acl_l3(data: bytes) -> None:
    """L3 rule table, text or JSON (by its first character)."""
    _acl(data, "l3")


def acl_l2(data: bytes) -> None:
    """L2 rule table, text or JSON."""
    _acl(data, "l2")


_GEN: dict[str, object] = {}
# Commands that wait, start traffic, end the session or touch files named by the input.
_SKIPPED = ("sleep", "delay", "start", "str", "quit", "exit", "save", "load")


def _pktgen():
    if not _GEN:
        from pktflow.pktgen import Pktgen
        from pktflow.ports import PortTable

        ports = PortTable.from_specs([f"0=mem:fz{os.getpid()}a", f"1=mem:fz{os.getpid()}b"])
        _GEN["gen"] = Pktgen(ports, pool=Pool(buffers=512, name="fuzz-gen"),
                             output=lambda text: None)
    return _GEN["gen"]


def _runnable(line: str) -> bool:
    words = line.split()
    return not words or words[0].lower() not in _SKIPPED


def pktgen_script(data: bytes) -> None:
    """A Pktgen .pg script: each bad line reported as file:line and the rest still run;
    the last line is also typed at the console (one command, CommandError or output)."""
    from pktflow.pktgen.commands import CommandError

    gen = _pktgen()
    lines = [ln for ln in _text(data).replace("\r", "\n").split("\n") if _runnable(ln)][:64]
    path = scratch("fuzz.pg", "\n".join(lines).encode())
    errors = gen.interpreter.run_file(path)
    for message in errors:
        if not message.startswith(f"{path}:"):
            raise Mismatch(f"script error without file:line: {message}")
    if lines:
        try:
            gen.execute(lines[-1])
        except CommandError as e:
            if not str(e):
                raise Mismatch("empty CommandError") from None
    gen.execute("stop all")


def port_spec(data: bytes) -> None:
    """Port specs (ID=DRIVER:ARGS), interface options and a ports config file: only
    PortSpecError, naming the spec. Opens memory ports only (nothing on the system)."""
    from pktflow.ports import PortSpecError, PortTable, parse_port_spec
    from pktflow.ports.linux import parse_iface_args

    text = _text(data)
    first, _, rest = text.partition("\n")
    try:
        port_id, _, args = parse_port_spec(first)
    except PortSpecError as e:
        if first not in str(e):
            raise Mismatch(f"PortSpecError without the spec: {e}") from None
        port_id, args = 0, first
    try:
        parse_iface_args("xdp", args, {"queue": int, "zerocopy": bool, "frame": int})
    except PortSpecError:
        pass
    try:
        table = PortTable.from_specs([f"{port_id}=mem:{args}"])
    except PortSpecError:
        pass
    else:
        table.close()
    path = scratch("ports.json", rest.encode())
    try:
        doc = json.loads(rest)
        if isinstance(doc, dict) and isinstance(doc.get("ports"), dict) and any(
                not str(v).startswith("mem:") for v in doc["ports"].values()):
            return  # only memory ports are opened by a fuzzer
    except ValueError:
        pass
    try:
        PortTable.from_config(path).close()
    except PortSpecError as e:
        if str(path) not in str(e) and "port" not in str(e):
            raise Mismatch(f"PortSpecError without the file: {e}") from None


def flow_config(data: bytes) -> None:
    """A FlowConfig file, JSON or TOML by its first byte: a FlowConfig or a ConfigError
    naming the file."""
    from pktflow.flow.config import ConfigError, FlowConfig

    suffix = ".toml" if data[:1] == b"T" else ".json"
    path = scratch("flow" + suffix, data[1:])
    try:
        FlowConfig.from_file(path)
    except ConfigError as e:
        if str(path) not in str(e):
            raise Mismatch(f"ConfigError without the file: {e}") from None


def addresses(data: bytes) -> None:
    """Address text (IPv4, IPv6, MAC, CIDR): a value that prints back to itself, or an
    AddressError."""
    from pktflow.packet.addr import (
        AddressError,
        IPv4Addr,
        IPv6Addr,
        MACAddr,
        parse_cidr,
        parse_ipv4,
        parse_ipv6,
        parse_mac,
    )

    text = _text(data)[:100]
    for parse, cls in ((parse_ipv4, IPv4Addr), (parse_ipv6, IPv6Addr), (parse_mac, MACAddr),
                       (parse_cidr, str)):
        try:
            value = parse(text)
        except AddressError:
            continue
        if parse(str(cls(value))) != value:
            raise Mismatch(f"{parse.__name__}({text!r}) prints as {cls(value)}, which parses "
                           "differently")


# ---------------------------------------------------------------- user functions
def fz_split(pkt):
    """A splitter reading fields of whatever headers the frame has (IPv4 may be missing
    under TCP: both paths must then report the same error)."""
    if pkt.has_tcp:
        return (pkt.tcp.src_port + pkt.ipv4.ttl) % 4
    if pkt.has_udp:
        return pkt.udp.dst_port % 4
    if pkt.has_vlan:
        return pkt.vlan.vid % 4
    if pkt.has_icmp6:
        return pkt.icmp6.type % 4
    return 0


def fz_handle(pkt):
    """A handler writing fields (and failing on frames without IPv4)."""
    pkt.eth.src = pkt.eth.dst
    if pkt.has_ipv6:
        pkt.ipv6.hop_limit = (pkt.ipv6.hop_limit + 255) & 0xFF
    if pkt.has_gre:
        pkt.gre.proto = 0x6558
    pkt.ipv4.ttl = (pkt.ipv4.ttl * 3) & 0xFF


_KERNELS: dict[str, object] = {}


def _kernels() -> dict[str, object]:
    if not _KERNELS:
        import logging

        from pktflow.flow.compiler import compile_node
        from pktflow.flow.kinds import NodeKind

        logging.getLogger("pktflow.flow").setLevel(logging.CRITICAL)  # per-batch error logs
        for fn, kind in ((fz_split, NodeKind.SPLITTER), (fz_handle, NodeKind.HANDLER)):
            for mode in ("compiled", "interpreted"):
                _KERNELS[fn.__name__, mode] = compile_node(fn, kind, None, mode)
    return _KERNELS


def flow_functions(data: bytes) -> None:
    """A user splitter and handler, compiled and interpreted, on twin copies of a fuzzed
    frame: the same verdicts (errors included) and the same bytes afterwards."""
    from pktflow.packet import parse_batch

    kernels = _kernels()
    raw = data[:1600]
    for b in (0, 1):
        _load(raw, 0, b)
    idx = np.array([0, 1], dtype=np.int32)
    parse_batch(POOL.data, POOL.meta, idx, 2)
    for name in ("fz_split", "fz_handle"):
        verdicts = []
        for b, mode in ((0, "compiled"), (1, "interpreted")):
            out = np.zeros(1, dtype=np.int32)
            kernels[name, mode].run(POOL, idx[b:b + 1], 1, out, None)
            verdicts.append(int(out[0]))
        if verdicts[0] != verdicts[1]:
            raise Mismatch(f"{name}: compiled verdict {verdicts[0]}, interpreted {verdicts[1]}")
        if POOL.read(0) != POOL.read(1):
            raise Mismatch(f"{name}: compiled and interpreted left different bytes")


def kpktgen_writes(data: bytes) -> None:
    """Writes to a kpktgen device file (one per input line), to a thread file and to
    pgctrl: each answered with an errno and Result text, never an exception; the device
    file then reads back and parses."""
    from pktflow.kpktgen.params import (
        DeviceConfig,
        DeviceState,
        format_device,
        parse_device_text,
        parse_pgctrl_write,
        split_thread_write,
    )

    cfg = DeviceConfig()
    for line in data.split(b"\n")[:32]:
        outcome = cfg.write(line)
        if outcome.errno and outcome.result is not None and not outcome.result:
            raise Mismatch(f"write {line!r}: refused with an empty Result")
        parse_pgctrl_write(line + b"\n")
        split_thread_write(line)
    text = format_device(cfg, DeviceState(), "veth0", bytes(6))
    report = parse_device_text(text)
    if report is None:
        raise Mismatch("the device file does not parse back")


def kpktgen_config(data: bytes) -> None:
    """A kpktgen run config, TOML or JSON by its first byte: a RunConfig or a ConfigError
    naming the file."""
    from pktflow.kpktgen.config import ConfigError, load_config

    path = scratch("run" + (".toml" if data[:1] == b"T" else ".json"), data[1:])
    try:
        load_config(path)
    except ConfigError as e:
        if str(path) not in str(e):
            raise Mismatch(f"ConfigError without the file: {e}") from None


TARGETS: dict[str, Callable[[bytes], None]] = {
    "parse": parse_frame,
    "checksum_encap": checksum_encap,
    "scapy_diff": scapy_diff,
    "flow_functions": flow_functions,
    "pcap": pcap_file,
    "acl_l3": acl_l3,
    "acl_l2": acl_l2,
    "pktgen_script": pktgen_script,
    "port_spec": port_spec,
    "flow_config": flow_config,
    "addresses": addresses,
    "kpktgen_writes": kpktgen_writes,
    "kpktgen_config": kpktgen_config,
}
