"""NAT: a network address (and port) translator built with pktflow's flow API.

Port "private-port" faces the clients (subnet 192.168.1.1/24 in nat.json), port
"public-port" the outside world (NAT address 10.1.1.1). Connections may only start on the
private side:

- outbound: each private (address, port) gets a public port, allocated upward from 1024
  per protocol; the source address and port become the NAT address and that port. The
  mapping is endpoint independent: the public port alone (per protocol) names it, whatever
  the remote address, and the same private endpoint keeps its public port.
- inbound: packets to the NAT address are looked up by destination port (ICMP echo: by
  identifier) and sent to the private endpoint; unknown or idle-expired ports are dropped.
- a mapping idle for `timeout` seconds (default 60, "timeout" in nat.json) expires;
  "forward-ports" entries of the public port are static mappings that never expire.
- both ports answer ARP requests and ICMP echo requests for their own address.
- every translated packet leaves with the port's MAC as source and the configured next
  hop ("dst_mac") as destination; checksums are fixed incrementally (RFC 1624).

The translation runs compiled (Numba): the two splitter functions below use only the
packet API and NumPy arrays of the context (`NatState`), which both directions share;
the endpoint table they call (nat_table.py) is plain Numba code.
One thread per direction writes its part of the state: the outbound node alone allocates
and frees mappings, so neither node is cloned. A mapping is one 64-bit word per public
port, written in one store, so the inbound node never sees half a mapping. Time comes
from a clock array that a background thread ticks every 10 ms (a coarse clock, as in
kernels); tests set it by hand.

Run it on any ports (see docs/nat.md):

    python examples/nat/nat.py --nat examples/nat/nat.json --port 0=mem:p0 --port 1=mem:p1
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pktflow import flow
from pktflow.packet import checksum as C
from pktflow.packet.addr import AddressError, parse_mac
from pktflow.packet.codegen import import_file

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "nat.json"


# nat_table.py beside this file, under a fixed module name: its compiled functions are
# called from generated kernels, which import it by that name.
table = import_file("pktflow_example_nat_table", HERE / "nat_table.py")

# Splitter outputs.
DROP, FORWARD, REPLY = 0, 1, 2
# Rows of NatState.counters: one writer thread each.
OUTBOUND, INBOUND = 0, 1
# Columns of NatState.counters.
(N_FORWARDED, N_ARP_REPLIES, N_ECHO_REPLIES, N_MALFORMED, N_UNSUPPORTED, N_NOT_OURS,
 N_UNKNOWN, N_EXPIRED, N_NO_PORT, N_ARP_IGNORED, N_TO_SELF, N_COUNTERS) = range(12)
COUNTER_NAMES = ("forwarded", "arp-replies", "echo-replies", "malformed", "unsupported",
                 "not-ours", "unknown", "expired", "no-port", "arp-ignored", "to-self")
DROP_REASONS = COUNTER_NAMES[N_MALFORMED:]
# Protocol rows of the public port map.
TCP_I, UDP_I, ICMP_I = 0, 1, 2
PROTO_NAMES = ("tcp", "udp", "icmp")
# Slots of NatState.conf.
(C_PRIV_ADDR, C_PRIV_MASK, C_PUB_ADDR, C_PRIV_MAC, C_PUB_MAC, C_PRIV_HOP, C_PUB_HOP,
 C_TIMEOUT_MS, N_CONF) = range(9)
PORT_FIRST, PORT_LAST = table.PORT_FIRST, table.PORT_LAST
VALID, STATIC = table.VALID, table.STATIC  # bits of a public port map word
CLOCK_TICK_S = 0.01


class NatConfigError(ValueError):
    """nat.json is wrong; the message names the file and the field."""


class NatState(NamedTuple):
    """Everything the translation keeps, as NumPy arrays compiled code can take."""

    conf: np.ndarray  # int64 [N_CONF]: addresses, MACs, timeout
    clock: np.ndarray  # int64 [1]: now, in milliseconds
    pub_map: np.ndarray  # int64 [3, 65536]: public port -> mapping word, 0 when free
    last_used: np.ndarray  # int64 [3, 65536]: clock of the mapping's last packet
    keys: np.ndarray  # int64 [HASH_SLOTS]: private endpoint key, 0 when empty
    values: np.ndarray  # int64 [HASH_SLOTS]: its public port
    cursor: np.ndarray  # int64 [3]: where the next allocation starts looking
    counters: np.ndarray  # int64 [2, N_COUNTERS]: per direction

    def copy(self) -> NatState:
        """Clones of a node share the one translation table (NFF-Go's Copy() hook)."""
        return self


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class PortSide:
    """One side of the NAT: its port id, address, prefix mask and next-hop MAC."""

    index: int
    address: int
    mask: int
    next_hop: int


@dataclass(frozen=True)
class Forward:
    """A static mapping: public `port` of `proto` goes to private `address:to_port`."""

    proto: str
    port: int
    address: int
    to_port: int


@dataclass(frozen=True)
class NatConfig:
    """The NAT's settings (the nat.json of NFF-Go's tutorial, plus timeout)."""

    private: PortSide
    public: PortSide
    forwards: tuple[Forward, ...] = ()
    timeout: float = 60.0
    source: str = "<dict>"


def _fail(source: str, where: str, why: str) -> NatConfigError:
    return NatConfigError(f"{source}: {where}: {why}")


def _port_side(doc: Any, name: str, source: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise _fail(source, name, f"expected an object with index, dst_mac and subnet, got "
                                  f"{type(doc).__name__}")
    for key in ("index", "dst_mac", "subnet"):
        if key not in doc:
            raise _fail(source, name, f'missing "{key}"')
    unknown = sorted(set(doc) - {"index", "dst_mac", "subnet", "forward-ports"})
    if unknown:
        raise _fail(source, f"{name}.{unknown[0]}", "unknown setting (known: index, "
                                                    "dst_mac, subnet, forward-ports)")
    index = doc["index"]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 1 << 16:
        raise _fail(source, f"{name}.index", f"{index!r} is not a port number")
    try:
        hop = int(parse_mac(doc["dst_mac"]))
    except (AddressError, TypeError) as e:
        raise _fail(source, f"{name}.dst_mac", str(e)) from None
    subnet = doc["subnet"]
    try:
        iface = ipaddress.IPv4Interface(subnet)
    except (ValueError, TypeError):
        raise _fail(source, f"{name}.subnet", f"{subnet!r} is not an IPv4 address or "
                                              f"address/prefix (DHCP is not supported)") from None
    return {"index": index, "address": int(iface.ip), "mask": int(iface.netmask),
            "next_hop": hop}


def _forwards(doc: Any, private: PortSide, source: str) -> tuple[Forward, ...]:
    where = "public-port.forward-ports"
    if not isinstance(doc, list):
        raise _fail(source, where, "expected a list of {port, destination, protocol}")
    out: list[Forward] = []
    seen: set[tuple[str, int]] = set()
    for i, entry in enumerate(doc):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict) or not {"port", "destination"} <= set(entry):
            raise _fail(source, at, 'expected {"port": N, "destination": "ADDR:PORT", '
                                    '"protocol": "TCP"|"UDP"}')
        port = entry["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise _fail(source, f"{at}.port", f"{port!r} is not a port number 1-65535")
        proto = str(entry.get("protocol", "TCP")).lower()
        if proto not in ("tcp", "udp"):
            raise _fail(source, f"{at}.protocol", f"{entry.get('protocol')!r}: expected TCP "
                                                  f"or UDP")
        dest = entry["destination"]
        host, colon, to_text = str(dest).rpartition(":")
        if not colon:
            host, to_text = str(dest), ""
        try:
            address = int(ipaddress.IPv4Address(host))
            to_port = int(to_text) if to_text else port
        except ValueError:
            raise _fail(source, f"{at}.destination", f"{dest!r} is not ADDR or "
                                                     f"ADDR:PORT") from None
        if not 1 <= to_port <= 65535:
            raise _fail(source, f"{at}.destination", f"port {to_port} is out of range")
        if address & private.mask != private.address & private.mask:
            raise _fail(source, f"{at}.destination", f"{host} is not in the private subnet")
        if (proto, port) in seen:
            raise _fail(source, f"{at}.port", f"{proto} port {port} is forwarded twice")
        seen.add((proto, port))
        out.append(Forward(proto, port, address, to_port))
    return tuple(out)


def parse_config(doc: Any, source: str = "<dict>") -> NatConfig:
    """A NatConfig from nat.json's content; raises NatConfigError naming the field."""
    if isinstance(doc, dict) and "port-pairs" in doc:
        pairs = doc["port-pairs"]
        if not isinstance(pairs, list) or len(pairs) != 1:
            raise _fail(source, "port-pairs", "exactly one pair is supported")
        doc = {**pairs[0], **{k: v for k, v in doc.items() if k != "port-pairs"}}
    if not isinstance(doc, dict):
        raise _fail(source, "top level", "expected an object")
    unknown = sorted(set(doc) - {"private-port", "public-port", "timeout", "host-name"})
    if unknown:
        raise _fail(source, unknown[0], "unknown setting (known: private-port, public-port, "
                                        "timeout)")
    for key in ("private-port", "public-port"):
        if key not in doc:
            raise _fail(source, key, "missing")
    private = PortSide(**_port_side(doc["private-port"], "private-port", source))
    public = PortSide(**_port_side(doc["public-port"], "public-port", source))
    if "forward-ports" in doc["private-port"]:
        raise _fail(source, "private-port.forward-ports", "forwarding is set on the public "
                                                          "port (connections from the "
                                                          "private side need no rule)")
    if private.index == public.index:
        raise _fail(source, "public-port.index", f"port {public.index} is also the private "
                                                 f"port")
    timeout = doc.get("timeout", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise _fail(source, "timeout", f"{timeout!r} must be a positive number of seconds")
    forwards = _forwards(doc["public-port"].get("forward-ports", []), private, source)
    return NatConfig(private, public, forwards, float(timeout), source)


def load_config(path: str | Path) -> NatConfig:
    """Read nat.json; a missing file or bad JSON is a NatConfigError naming the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise NatConfigError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:
        raise NatConfigError(f"{path}: not valid JSON: {e}") from None
    return parse_config(doc, str(path))


# --------------------------------------------------------------------------- compiled part
# Plain functions over the packet API and NumPy arrays: the flow compiler rewrites and
# compiles them (helpers included); interpreted, they run as they are, with the same result.
# They carry no annotations on purpose: the rewrite copies parameters into generated code,
# where annotation names would not resolve. pkt is a packet, ctx a NatState.


def count(ctx, direction, what, verdict):
    """Count the packet's fate in its direction's row and return its splitter output."""
    ctx.counters[direction, what] += 1
    return verdict


def answer_arp(pkt, ctx, direction, own_addr, own_mac):
    """Turn an ARP request for `own_addr` into the reply, sent back where it came from."""
    arp = pkt.arp
    if arp.op != 1 or arp.tpa != own_addr or arp.ptype != 0x0800:
        return count(ctx, direction, N_ARP_IGNORED, DROP)
    asker_mac = arp.sha
    asker_ip = arp.spa
    arp.op = 2
    arp.tha = asker_mac
    arp.tpa = asker_ip
    arp.sha = own_mac
    arp.spa = own_addr
    pkt.eth.dst = asker_mac
    pkt.eth.src = own_mac
    return count(ctx, direction, N_ARP_REPLIES, REPLY)


def answer_echo(pkt, ctx, direction, own_mac):
    """Turn an ICMP echo request to our address into the echo reply."""
    icmp = pkt.icmp
    if icmp.type != 8 or icmp.code != 0:
        return count(ctx, direction, N_UNSUPPORTED, DROP)
    ip = pkt.ipv4
    ip.src, ip.dst = ip.dst, ip.src
    ip.ttl = 64  # a fresh TTL, as a host's own reply has
    ip.update_checksum()
    icmp.type = 0
    icmp.checksum = C.checksum_adjust(icmp.checksum, 8 << 8, 0)
    pkt.eth.dst = pkt.eth.src
    pkt.eth.src = own_mac
    return count(ctx, direction, N_ECHO_REPLIES, REPLY)


def set_icmp_id(pkt, ident):
    """Set the ICMP echo identifier and adjust the ICMP checksum for it (RFC 1624)."""
    icmp = pkt.icmp
    old = icmp.id
    icmp.id = ident
    icmp.checksum = C.checksum_adjust(icmp.checksum, old, ident)


def private_to_public(pkt, ctx):
    """Outbound: translate the source to the NAT address and a public port (flow 1),
    answer ARP and echo for the private address (flow 2), or drop (flow 0)."""
    conf = ctx.conf
    if pkt.malformed:
        return count(ctx, OUTBOUND, N_MALFORMED, DROP)
    if pkt.has_arp:
        return answer_arp(pkt, ctx, OUTBOUND, conf[C_PRIV_ADDR], conf[C_PRIV_MAC])
    if not pkt.has_ipv4:
        return count(ctx, OUTBOUND, N_UNSUPPORTED, DROP)
    ip = pkt.ipv4
    if ip.dst == conf[C_PRIV_ADDR]:
        if pkt.has_icmp:
            return answer_echo(pkt, ctx, OUTBOUND, conf[C_PRIV_MAC])
        return count(ctx, OUTBOUND, N_TO_SELF, DROP)
    src = ip.src
    if (src & conf[C_PRIV_MASK]) != (conf[C_PRIV_ADDR] & conf[C_PRIV_MASK]):
        return count(ctx, OUTBOUND, N_NOT_OURS, DROP)
    if pkt.has_tcp:
        proto_i = TCP_I
        port = pkt.tcp.src_port
    elif pkt.has_udp:
        proto_i = UDP_I
        port = pkt.udp.src_port
    elif pkt.has_icmp and pkt.icmp.type == 8:
        proto_i = ICMP_I
        port = pkt.icmp.id
    else:
        return count(ctx, OUTBOUND, N_UNSUPPORTED, DROP)
    public = table.public_port_for(ctx.pub_map, ctx.last_used, ctx.keys, ctx.values,
                                   ctx.cursor, proto_i, src, port, ctx.clock[0],
                                   conf[C_TIMEOUT_MS])
    if public < 0:
        return count(ctx, OUTBOUND, N_NO_PORT, DROP)
    ip.rewrite_src(conf[C_PUB_ADDR])
    if proto_i == TCP_I:
        pkt.tcp.rewrite_src_port(public)
    elif proto_i == UDP_I:
        pkt.udp.rewrite_src_port(public)
    else:
        set_icmp_id(pkt, public)
    pkt.eth.dst = conf[C_PUB_HOP]
    pkt.eth.src = conf[C_PUB_MAC]
    return count(ctx, OUTBOUND, N_FORWARDED, FORWARD)


def public_to_private(pkt, ctx):
    """Inbound: send packets for a mapped public port to their private endpoint (flow 1),
    answer ARP and echo for the NAT address (flow 2), or drop (flow 0)."""
    conf = ctx.conf
    if pkt.malformed:
        return count(ctx, INBOUND, N_MALFORMED, DROP)
    if pkt.has_arp:
        return answer_arp(pkt, ctx, INBOUND, conf[C_PUB_ADDR], conf[C_PUB_MAC])
    if not pkt.has_ipv4:
        return count(ctx, INBOUND, N_UNSUPPORTED, DROP)
    ip = pkt.ipv4
    if ip.dst != conf[C_PUB_ADDR]:
        return count(ctx, INBOUND, N_NOT_OURS, DROP)
    if pkt.has_tcp:
        proto_i = TCP_I
        port = pkt.tcp.dst_port
    elif pkt.has_udp:
        proto_i = UDP_I
        port = pkt.udp.dst_port
    elif pkt.has_icmp:
        if pkt.icmp.type == 8:
            return answer_echo(pkt, ctx, INBOUND, conf[C_PUB_MAC])
        if pkt.icmp.type != 0:
            return count(ctx, INBOUND, N_UNSUPPORTED, DROP)
        proto_i = ICMP_I
        port = pkt.icmp.id
    else:
        return count(ctx, INBOUND, N_UNSUPPORTED, DROP)
    word = ctx.pub_map[proto_i, port]
    if word == 0:
        return count(ctx, INBOUND, N_UNKNOWN, DROP)
    now = ctx.clock[0]
    if (word & STATIC) == 0 and now - ctx.last_used[proto_i, port] > conf[C_TIMEOUT_MS]:
        return count(ctx, INBOUND, N_EXPIRED, DROP)
    ctx.last_used[proto_i, port] = now
    ip.rewrite_dst((word >> 16) & 0xFFFFFFFF)
    if proto_i == TCP_I:
        pkt.tcp.rewrite_dst_port(word & 0xFFFF)
    elif proto_i == UDP_I:
        pkt.udp.rewrite_dst_port(word & 0xFFFF)
    else:
        set_icmp_id(pkt, word & 0xFFFF)
    pkt.eth.dst = conf[C_PRIV_HOP]
    pkt.eth.src = conf[C_PRIV_MAC]
    return count(ctx, INBOUND, N_FORWARDED, FORWARD)


# --------------------------------------------------------------------------- Python side


@dataclass
class Mapping:
    """One translation, as `Nat.mappings()` lists it."""

    proto: str
    public_port: int
    private_address: str
    private_port: int
    static: bool
    idle_ms: int


@dataclass
class Nat:
    """The NAT's state and its clock; `build_nat` wires it into a flow graph."""

    config: NatConfig
    private_mac: int
    public_mac: int
    manual_clock: bool = False
    state: NatState = field(init=False)
    _ticker: threading.Thread | None = field(default=None, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        cfg = self.config
        conf = np.zeros(N_CONF, dtype=np.int64)
        conf[C_PRIV_ADDR], conf[C_PRIV_MASK] = cfg.private.address, cfg.private.mask
        conf[C_PUB_ADDR] = cfg.public.address
        conf[C_PRIV_MAC], conf[C_PUB_MAC] = self.private_mac, self.public_mac
        conf[C_PRIV_HOP], conf[C_PUB_HOP] = cfg.private.next_hop, cfg.public.next_hop
        conf[C_TIMEOUT_MS] = round(cfg.timeout * 1000)
        self.state = NatState(
            conf=conf,
            clock=np.zeros(1, dtype=np.int64),
            pub_map=np.zeros((3, 65536), dtype=np.int64),
            last_used=np.zeros((3, 65536), dtype=np.int64),
            keys=np.zeros(table.HASH_SLOTS, dtype=np.int64),
            values=np.zeros(table.HASH_SLOTS, dtype=np.int64),
            cursor=np.full(3, PORT_FIRST, dtype=np.int64),
            counters=np.zeros((2, N_COUNTERS), dtype=np.int64),
        )
        self.state.clock[0] = self._now_ms()
        for fw in cfg.forwards:
            proto_i = PROTO_NAMES.index(fw.proto)
            self.state.pub_map[proto_i, fw.port] = VALID | STATIC | (fw.address << 16) | fw.to_port
            table.hash_insert(self.state.keys, self.state.values,
                              table.endpoint_key(proto_i, fw.address, fw.to_port), fw.port)

    @staticmethod
    def _now_ms() -> int:
        return time.monotonic_ns() // 1_000_000

    # ---- clock
    def start(self) -> None:
        """Start ticking the clock (not with manual_clock)."""
        if self.manual_clock or self._ticker is not None:
            return
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="nat-clock", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        clock = self.state.clock
        while not self._stop.wait(CLOCK_TICK_S):
            clock[0] = self._now_ms()

    def close(self) -> None:
        """Stop the clock thread."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1)
            self._ticker = None

    def advance(self, seconds: float) -> None:
        """Move a manual clock forward (tests of the idle timeout)."""
        self.state.clock[0] += round(seconds * 1000)

    # ---- inspection (Python, not on the packet path)
    def counters(self) -> dict[str, dict[str, int]]:
        """{"outbound": {"forwarded": n, ...}, "inbound": {...}}"""
        rows = self.state.counters
        return {side: {name: int(rows[r, k]) for k, name in enumerate(COUNTER_NAMES)}
                for r, side in ((OUTBOUND, "outbound"), (INBOUND, "inbound"))}

    def mappings(self) -> list[Mapping]:
        """Every live mapping, by protocol and public port."""
        st = self.state
        now = int(st.clock[0])
        out = []
        for proto_i, name in enumerate(PROTO_NAMES):
            for port in np.flatnonzero(st.pub_map[proto_i]):
                word = int(st.pub_map[proto_i, port])
                out.append(Mapping(name, int(port),
                                   str(ipaddress.IPv4Address((word >> 16) & 0xFFFFFFFF)),
                                   word & 0xFFFF, bool(word & STATIC),
                                   now - int(st.last_used[proto_i, port])))
        return out

    def public_port(self, proto: str, address: str, port: int) -> int | None:
        """The public port mapped to a private endpoint, None if there is none."""
        key = table.endpoint_key(PROTO_NAMES.index(proto), int(ipaddress.IPv4Address(address)),
                                 port)
        slot = table.hash_find(self.state.keys, key)
        return None if slot < 0 else int(self.state.values[slot])


def build_nat(nf: flow.System, config: NatConfig, *, manual_clock: bool = False,
              mode: str | None = None) -> Nat:
    """Add the NAT's graph to `nf`: two splitters (outbound, inbound), each with a drop
    flow, a translated flow to the other port and a reply flow back to its own port."""
    nat = Nat(config, int(nf.port_mac(config.private.index)),
              int(nf.port_mac(config.public.index)), manual_clock=manual_clock)
    opts: dict[str, Any] = {"clones": 1}
    if mode is not None:
        opts["mode"] = mode
    priv, pub = config.private.index, config.public.index
    out_flows = nf.splitter(nf.receiver(priv), private_to_public, 3, nat.state,
                            name="nat outbound", **opts)
    in_flows = nf.splitter(nf.receiver(pub), public_to_private, 3, nat.state,
                           name="nat inbound", **opts)
    nf.stopper(out_flows[DROP], name="outbound drops")
    nf.stopper(in_flows[DROP], name="inbound drops")
    nf.sender(nf.merger(out_flows[FORWARD], in_flows[REPLY], name="to public"), pub)
    nf.sender(nf.merger(in_flows[FORWARD], out_flows[REPLY], name="to private"), priv)
    nat.start()
    return nat


def build(nf: flow.System, args: argparse.Namespace | None = None) -> None:
    """The NAT of NFF-Go's tutorial on ports "private-port" and "public-port" of nat.json."""
    path = getattr(args, "nat", None) or DEFAULT_CONFIG
    try:
        config = load_config(path)
    except NatConfigError as e:
        raise flow.FlowError(str(e)) from None
    build_nat(nf, config)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nat", metavar="FILE", default=str(DEFAULT_CONFIG),
                        help="NAT settings (default: nat.json beside this program)")


if __name__ == "__main__":
    flow.main(build, extra_arguments=_arguments)
