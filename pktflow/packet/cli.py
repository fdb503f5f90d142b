"""`pktflow decode FILE`: a table of decoded packets.

It reads packets through the object API (`Packet` views), so what it prints is what user
code sees.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pktflow.packet import meta as M
from pktflow.packet.parse import parse_batch
from pktflow.packet.pcap import PcapError, PcapReader
from pktflow.packet.pool import Batch, Pool
from pktflow.packet.view import Packet

TCP_FLAG_LETTERS = "FSRPAUECN"  # bit 0 (FIN) upwards, as tcpdump abbreviates them
ICMP_TYPES = {0: "echo reply", 3: "unreachable", 8: "echo request", 11: "time exceeded"}
ICMP6_TYPES = {1: "unreachable", 128: "echo request", 129: "echo reply",
               133: "router solicitation", 134: "router advertisement",
               135: "neighbor solicitation", 136: "neighbor advertisement"}
BAD_MARKS = ((M.F_BAD_L2, "malformed L2"), (M.F_BAD_L3, "malformed L3"),
             (M.F_BAD_L4, "malformed L4"))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `decode`."""
    decode = subparsers.add_parser(
        "decode", help="print a table of the packets in a pcap or pcapng file",
        description="Decode a capture file (pcap or pcapng, Ethernet) with pktflow's parser "
        "and print one row per packet.")
    decode.add_argument("file", type=Path, help="capture file to read")
    decode.add_argument("--count", "-c", type=int, default=0, metavar="N",
                        help="show at most N packets (default: all)")
    decode.set_defaults(func=run_decode)


def _console() -> Console:
    # Pipes get a wide table instead of rich's 80-column default, so rows stay on one line.
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _tcp_flags(value: int) -> str:
    return "".join(c for i, c in enumerate(TCP_FLAG_LETTERS) if value >> i & 1) or "."


def _describe(pkt: Packet) -> tuple[str, str, str, str, str]:
    """(layers, source, destination, info, flags) of one parsed packet."""
    layers = "/".join(pkt.layers()) or "-"
    src = dst = ""
    info: list[str] = []
    marks = [text for bit, text in BAD_MARKS if pkt.flags & bit]
    if pkt.has_eth:
        src, dst = str(pkt.eth.src), str(pkt.eth.dst)
    if pkt.has_vlan:
        info.append(f"vlan {pkt.vlan.vid}" + (f".{pkt.inner_vlan.vid}" if pkt.has_inner_vlan
                                              else ""))
    if pkt.has_mpls:
        info.append(f"mpls {pkt.mpls.label}")
    if pkt.has_arp:
        op = {1: "who-has", 2: "is-at"}.get(pkt.arp.op, f"op {pkt.arp.op}")
        src, dst = str(pkt.arp.spa), str(pkt.arp.tpa)
        info.append(f"arp {op}")
    for l3 in ("ipv4", "ipv6"):
        if pkt.has(l3):
            header = getattr(pkt, l3)
            src, dst = str(header.src), str(header.dst)
    if pkt.has_ipv4:
        if not pkt.ipv4.checksum_ok():
            marks.append("bad ipv4 checksum")
        if pkt.flags & M.F_IPV4_OPTIONS:
            marks.append("ip options")
    if pkt.flags & M.F_FRAGMENT or (pkt.has_ipv4 and pkt.ipv4.mf):
        marks.append("fragment")
    for l4 in ("tcp", "udp"):
        if pkt.has(l4):
            header = getattr(pkt, l4)
            if pkt.has_ipv6:  # brackets keep the port apart from the address
                src, dst = f"[{src}]", f"[{dst}]"
            src, dst = f"{src}:{header.src_port}", f"{dst}:{header.dst_port}"
    if pkt.has_tcp:
        info.append(f"[{_tcp_flags(pkt.tcp.flags)}] seq {pkt.tcp.seq}")
    if pkt.has_icmp:
        info.append(ICMP_TYPES.get(pkt.icmp.type, f"icmp type {pkt.icmp.type}"))
    if pkt.has_icmp6:
        kind = ICMP6_TYPES.get(pkt.icmp6.type, f"icmp6 type {pkt.icmp6.type}")
        if pkt.icmp6.type in (135, 136):
            kind += f" {pkt.icmp6.target}"
        info.append(kind)
    if pkt.has_gre:
        info.append(f"gre proto 0x{pkt.gre.proto:04x}")
    if pkt.has_vxlan:
        info.append(f"vni {pkt.vxlan.vni}")
    fragment = "fragment" in marks
    for l4 in ("tcp", "udp", "icmp", "icmp6"):
        if pkt.has(l4) and not fragment and not getattr(pkt, l4).checksum_ok():
            marks.append(f"bad {l4} checksum")
    return layers, src, dst, "; ".join(info), ", ".join(marks)


Row = tuple[str, str, str, str, str, str, str, str]
COLUMNS = (("#", "right"), ("time", "right"), ("len", "right"), ("layers", "left"),
           ("source", "left"), ("destination", "left"), ("info", "left"), ("flags", "left"))


def packet_rows(batch: Batch, first: int, t0: int) -> list[Row]:
    """One row of text per packet of a parsed batch, numbered from `first`, with times
    relative to `t0` (ns)."""
    pool = batch.pool
    rows = []
    for number, b in enumerate(batch.idx[: batch.n], first):
        pkt = Packet(pool, b)
        layers, src, dst, info, flags = _describe(pkt)
        rows.append((str(number), f"{(int(pool.ts[b]) - t0) / 1e9:.6f}", str(pkt.length),
                     layers, src, dst, info, flags))
    return rows


def packet_table(rows: list[Row]) -> Table:
    """A rich table of packet rows."""
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name, justify in COLUMNS:
        table.add_column(name, justify=justify, no_wrap=name != "info")
    for row in rows:
        # Text cells, not markup: addresses like [fe80::1]:53 must print as they are.
        table.add_row(*(Text(cell) for cell in row[:-1]), Text(row[-1], style="red"))
    return table


def decode_file(reader: PcapReader, limit: int = 0) -> tuple[list[Row], str | None]:
    """Rows for up to `limit` packets (0 = all) of `reader`, read and parsed a batch at a
    time through a small pool; and the damage that stopped reading early, if any."""
    pool = Pool(512, name="decode")
    batch = Batch(pool, 256)
    rows: list[Row] = []
    t0 = None
    while not limit or len(rows) < limit:
        want = 256 if not limit else min(256, limit - len(rows))
        try:
            got = reader.read_into(batch, want)
        except PcapError as e:
            return rows, str(e)
        if not got:
            break
        parse_batch(pool.data, pool.meta, batch.idx, batch.n)
        t0 = int(pool.ts[batch.idx[0]]) if t0 is None else t0
        rows += packet_rows(batch, len(rows) + 1, t0)
        pool.free(batch)
    return rows, reader.error


def run_decode(args: argparse.Namespace) -> int:
    """Print the packets of `args.file` as a table; 1 if the file is unreadable or damaged."""
    console = _console()
    if args.count < 0:
        console.print("[red]error:[/red] --count must be 0 (all) or more")
        return 2
    try:
        reader = PcapReader(args.file)
    except PcapError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False)
        return 1
    with reader:
        rows, error = decode_file(reader, args.count)
        console.print(packet_table(rows))
        more = "" if reader.at_end else " (more in the file: raise --count)"
        kind = reader.format
        if kind == "pcap":
            kind += ", ns timestamps" if reader.nanosecond else ", us timestamps"
        console.print(f"{len(rows)} packets from {args.file} ({kind}){more}", highlight=False)
        if reader.oversize:
            console.print(f"[yellow]{reader.oversize} records longer than 1920 bytes were "
                          f"skipped[/yellow]")
        if error:
            console.print(f"[red]error:[/red] {error}", highlight=False)
            return 1
    return 0
