"""`pktflow pktgen`: the generator on ports from the same port table as NFs.

Interactive when stdin and stdout are terminals: a live page and a `Pktgen:/>` prompt.
Otherwise (scripts, CI) it runs `-f` and stdin commands, optionally transmits for
`--run-for` seconds or `--count` packets, and prints final statistics (`--json`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from pktflow.flow.config import ConfigError, parse_address
from pktflow.flow.dashboard import BindError, Board, StatsHTTPServer
from pktflow.packet.pcap import PcapError
from pktflow.pktgen.board import attach_pktgen
from pktflow.pktgen.commands import CommandError
from pktflow.pktgen.engine import PktgenError
from pktflow.pktgen.page import render_page
from pktflow.pktgen.session import Pktgen
from pktflow.ports.base import PortError, PortSpecError, PortTable


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `pktgen` subcommand."""
    p = subparsers.add_parser(
        "pktgen", help="Pktgen-compatible traffic generator (console, scripts, statistics)",
        description="Generate traffic with DPDK Pktgen's commands on memory, pcap or Linux "
        "ports. Interactive on a terminal; otherwise runs scripts and prints statistics.")
    p.add_argument("--port", action="append", default=[], metavar="ID=DRIVER:ARGS",
                   help="a port, e.g. 0=mem:a or 1=pcap:in.pcap,out.pcap (repeat)")
    p.add_argument("--config", metavar="FILE", help='ports from JSON {"ports": {"0": "mem:a"}}')
    p.add_argument("-f", "--script", metavar="FILE", help="run this command file at start")
    p.add_argument("--pcap", action="append", default=[], metavar="ID=FILE",
                   help="pcap file to replay on port ID after 'enable ID pcap'")
    p.add_argument("-s", dest="pcap_pktgen", action="append", default=[], metavar="ID:FILE",
                   help="the same in Pktgen's form")
    p.add_argument("--run-for", type=float, metavar="SECONDS",
                   help="transmit this long, then stop and print statistics")
    p.add_argument("--count", type=int, metavar="N",
                   help="send N packets per started port, then print statistics")
    p.add_argument("--json", action="store_true", help="print final statistics as JSON")
    p.add_argument("--stats", metavar="ADDR",
                   help="serve statistics and the live dashboard over HTTP on PORT or "
                        "HOST:PORT (default host 127.0.0.1)")
    p.add_argument("--stats-public", action="store_true",
                   help="allow --stats on an address other machines can reach")
    p.set_defaults(func=main)


def _pcap_files(args: argparse.Namespace) -> dict[int, str]:
    files: dict[int, str] = {}
    for text, sep, flag in [(t, "=", "--pcap") for t in args.pcap] + [
            (t, ":", "-s") for t in args.pcap_pktgen]:
        pid, found, path = text.partition(sep)
        if not found or not pid.strip().isdigit() or not path:
            raise PortSpecError(f'{flag} "{text}": expected ID{sep}FILE, e.g. 0{sep}in.pcap')
        files[int(pid)] = path
    return files


def main(args: argparse.Namespace) -> int:
    try:
        if args.config:
            ports = PortTable.from_config(args.config)
        else:
            ports = PortTable.from_specs(args.port)
        if not len(ports):
            print("pktgen: no ports: give --port 0=mem:a (and more) or --config FILE",
                  file=sys.stderr)
            return 2
        if args.count is not None and args.count < 0:
            print("pktgen: --count must be 0 or more", file=sys.stderr)
            return 2
        gen = Pktgen(ports, pcap=_pcap_files(args))
    except (PortSpecError, PortError, PktgenError, PcapError, OSError) as e:
        print(f"pktgen: {e}", file=sys.stderr)
        return 2
    server = None
    try:
        address = parse_address(args.stats)
        if address is not None:
            board = Board()
            attach_pktgen(board, gen)
            server = StatsHTTPServer(board, address, public=args.stats_public)
            print(f"pktgen: dashboard on {server.url} (JSON /stats, Prometheus /metrics)",
                  file=sys.stderr)
    except (ConfigError, BindError) as e:
        print(f"pktgen: {e}", file=sys.stderr)
        gen.close()
        ports.close()
        return 2
    try:
        return _run(gen, args)
    finally:
        if server is not None:
            server.close()
        gen.close()
        ports.close()


def _run(gen: Pktgen, args: argparse.Namespace) -> int:
    batch_mode = args.run_for is not None or args.count is not None or args.json
    if args.count is not None:
        gen.execute(f"set all count {args.count}")
    if args.script:
        try:
            gen.load(args.script)
        except CommandError as e:
            print(f"pktgen: {e}", file=sys.stderr)
            return 2
    if gen.quit_requested:
        return _finish(gen, args)
    if not batch_mode and sys.stdin.isatty() and sys.stdout.isatty():
        from pktflow.pktgen.console import run_console

        run_console(gen)
        return 0
    if not batch_mode and not sys.stdin.isatty():
        _run_stdin(gen)
        return _finish(gen, args)
    if not gen.sending() and (args.run_for is not None or args.count is not None):
        gen.start()
    if args.count is not None and args.count > 0:
        gen.wait_done(args.run_for)
    elif args.run_for is not None:
        deadline = time.monotonic() + args.run_for
        while time.monotonic() < deadline and gen.sending():
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return _finish(gen, args)


def _run_stdin(gen: Pktgen) -> None:
    for number, line in enumerate(sys.stdin, 1):
        try:
            out = gen.execute(line)
        except CommandError as e:
            print(f"<stdin>:{number}: {e}", file=sys.stderr)
            continue
        if out:
            print(out, flush=True)
        if gen.quit_requested:
            break


def _finish(gen: Pktgen, args: argparse.Namespace) -> int:
    gen.stop()
    gen.wait_quiet()
    if args.json:
        print(json.dumps({str(k): v for k, v in gen.stats().items()}, indent=2))
    elif args.run_for is not None or args.count is not None:
        print(render_page(gen, "main"))
    errors = gen.errors()
    for pid, message in sorted(errors.items()):
        print(f"pktgen: port {pid}: {message}", file=sys.stderr)
    return 1 if errors else 0
