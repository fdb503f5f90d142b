"""`pktflow decode FILE`: a table of decoded packets; `pktflow demo`: an end-to-end tour.

Both read packets through the object API (`Packet` views), so what they print is what
user code sees. `demo` stands in until the tutorial runner registers its own `demo`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
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
    """Add `decode`, and `demo` unless an application module already provides one."""
    decode = subparsers.add_parser(
        "decode", help="print a table of the packets in a pcap or pcapng file",
        description="Decode a capture file (pcap or pcapng, Ethernet) with pktflow's parser "
        "and print one row per packet.")
    decode.add_argument("file", type=Path, help="capture file to read")
    decode.add_argument("--count", "-c", type=int, default=0, metavar="N",
                        help="show at most N packets (default: all)")
    decode.set_defaults(func=run_decode)
    if "demo" not in subparsers.choices:
        demo = subparsers.add_parser(
            "demo", help="build packets, write a pcap, read it back through a port, decode it")
        demo.set_defaults(func=run_demo)


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


def demo_frames() -> list[bytes]:
    """One frame of each kind pktflow parses, plus a malformed one."""
    from pktflow.packet.build import frame

    eth = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
    v4 = {"src": "111.2.0.1", "dst": "10.0.0.2"}
    v6 = {"src": "2001:db8::1", "dst": "2001:db8::2"}
    broken = bytearray(frame(eth=eth, ipv4=v4, tcp={}))
    broken[14] = 0x43  # IHL 3: shorter than an IPv4 header
    return [
        frame(eth=eth, ipv4=v4, tcp={}, payload=b"pktgen defaults 1234 -> 5678"),
        frame(eth=eth, ipv4=v4, udp={"src_port": 5353, "dst_port": 53}, payload=b"\0" * 12),
        frame(eth=eth, ipv4=v4, icmp={"type": 8, "id": 7, "seq": 1}, payload=b"ping"),
        frame(eth={"src": "02:00:00:00:00:01", "dst": "ff:ff:ff:ff:ff:ff"},
              arp={"op": 1, "sha": "02:00:00:00:00:01", "spa": "10.0.0.1",
                   "tpa": "10.0.0.2"}),
        frame(eth=eth, ipv6=v6, udp={"dst_port": 4000}, payload=b"v6"),
        frame(eth={"src": "02:00:00:00:00:01", "dst": "33:33:ff:00:00:02"},
              ipv6={"src": "fe80::1", "dst": "ff02::1:ff00:2", "hop_limit": 255},
              icmp6={"type": 135, "target": "2001:db8::2", "nd_opt_type": 1, "nd_opt_len": 1,
                     "nd_lladdr": "02:00:00:00:00:01"}),
        frame(eth=eth, vlan={"vid": 10}, ipv4=v4, udp={}),
        frame(eth=eth, vlan={"vid": 100}, inner_vlan={"vid": 200}, ipv4=v4, tcp={"flags": 0x12}),
        frame(eth=eth, mpls={"label": 16}, ipv4=v4, udp={}),
        frame(eth=eth, ipv4={"src": "111.22.3.0", "dst": "3.22.111.0"}, gre={}),
        frame(eth=eth, ipv4=v4, udp={"dst_port": 4789}, vxlan={"vni": 42}, payload=frame(
            eth=eth, ipv4={"src": "192.168.1.2", "dst": "10.1.1.2"}, udp={})),
        bytes(broken),
    ]


def run_demo(args: argparse.Namespace) -> int:
    """Build packets, send them over a memory wire into a pcap port that writes a file,
    play the file back through another pcap port, decode it and ask tcpdump too."""
    from pktflow.ports import PortTable  # a layer above packet: only the demo needs it

    console = _console()
    frames = demo_frames()
    with tempfile.TemporaryDirectory(prefix="pktflow-demo-") as tmp:
        path = Path(tmp) / "demo.pcap"
        pool = Pool(1024, name="demo")
        console.print(f"[bold]1.[/bold] built {len(frames)} frames; sending them "
                      f"mem:demo (port 0) -> mem:demo (port 1) -> pcap:,{path.name} (port 2)")
        table = PortTable.from_specs(["0=mem:demo", "1=mem:demo", f"2=pcap:,{path}"])
        try:
            for port in table:
                port.open(pool)
            batch = pool.alloc(len(frames))
            for b, raw in zip(batch.idx[: batch.n], frames, strict=True):
                pool.write(int(b), raw)
            table[0].send(batch)
            table[1].recv(batch, len(frames))
            table[2].send(batch)
        finally:
            table.close()
        console.print(f"   port 0 tx {table[0].stats.tx_packets}, port 1 rx "
                      f"{table[1].stats.rx_packets}, port 2 wrote {table[2].stats.tx_packets} "
                      f"packets ({path.stat().st_size} bytes)")
        console.print(f"[bold]2.[/bold] reading {path.name} back through port pcap:{path.name}"
                      " and decoding it")
        table = PortTable.from_specs([f"0=pcap:{path}"])
        port = table[0]
        port.open(pool)
        batch = Batch(pool, 64)
        while port.recv(batch, 64 - batch.n):
            pass
        table.close()
        parse_batch(pool.data, pool.meta, batch.idx, batch.n)
        console.print(packet_table(packet_rows(batch, 1, int(pool.ts[batch.idx[0]]))))
        same = batch.frames() == frames
        console.print(f"   {batch.n} packets back, bytes identical to what was built: "
                      f"{'[green]yes[/green]' if same else '[red]NO[/red]'}")
        tcpdump = shutil.which("tcpdump")
        if tcpdump:
            console.print("[bold]3.[/bold] the same file in tcpdump -nn -r:")
            out = subprocess.run([tcpdump, "-nn", "-r", str(path)], capture_output=True,
                                 text=True, timeout=30)
            for line in out.stdout.splitlines():
                console.print(f"   {line}", highlight=False, markup=False)
            if out.returncode:
                console.print(f"[red]   tcpdump failed: {out.stderr.strip()}[/red]")
                return 1
        else:
            console.print("[bold]3.[/bold] tcpdump is not installed; skipping its check")
    return 0 if same else 1
