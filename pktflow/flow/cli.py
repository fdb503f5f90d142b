"""The command-line side of the flow engine: options, `main(build)`, `pktflow flow ...`.

An NF program is a build function plus two lines:

    if __name__ == "__main__":
        flow.main(build)

`main` parses `--port ID=DRIVER:ARGS` (repeatable), `--config FILE`, `--cores`, `--batch`,
`--stats ADDR`, `--duration` and friends, builds the port table and the `System`, calls
`build(nf)` (or `build(nf, args)`), runs it and prints the final counters.

A program run as a script is imported again under a stable module name (see
`script_module`) and its `build` taken from there: Numba's cache stores the types of
compiled arguments by value when their classes live in `__main__` (a context NamedTuple,
say), so every run would compile the kernels again.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import logging
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pktflow.flow.config import ConfigError, FlowConfig, parse_address
from pktflow.flow.graph import FlowError
from pktflow.flow.system import System
from pktflow.packet.codegen import import_file
from pktflow.ports.base import PortError, PortSpecError, PortTable

BuildFunction = Callable[..., None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every NF program takes (ports, config file, cores, stats, ...)."""
    g = parser.add_argument_group("flow system")
    g.add_argument("--port", action="append", default=[], metavar="ID=DRIVER:ARGS",
                   help="a port, e.g. 0=mem:a or 1=pcap:in.pcap,out.pcap (repeatable)")
    g.add_argument("--config", metavar="FILE",
                   help="JSON or TOML settings (batch_size, cores, ...), may hold \"ports\"")
    g.add_argument("--cores", metavar="LIST", help="CPUs workers may use, e.g. 0-1 or 2")
    g.add_argument("--batch", type=int, dest="batch_size", metavar="N",
                   help="packets per batch (default 256)")
    g.add_argument("--ring", type=int, dest="ring_size", metavar="N",
                   help="packets per ring between segments (default 16384)")
    g.add_argument("--pool", type=int, dest="pool_size", metavar="N",
                   help="buffers of a private pool (default: the shared pool)")
    g.add_argument("--scheduler-interval", type=float, metavar="S",
                   help="seconds between scaling decisions (default 0.2)")
    g.add_argument("--stats", metavar="ADDR",
                   help="serve statistics and the live dashboard over HTTP on PORT or "
                        "HOST:PORT (default host 127.0.0.1)")
    g.add_argument("--stats-public", action="store_true", default=None,
                   help="allow --stats on an address other machines can reach")
    g.add_argument("--log-interval", type=float, metavar="S",
                   help="log a one-line summary every S seconds")
    g.add_argument("--mode", choices=("auto", "compiled", "interpreted"),
                   help="how user functions run (default auto: compiled when possible)")
    g.add_argument("--duration", type=float, metavar="S",
                   help="run S seconds, then stop (default: until Ctrl-C)")
    g.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")


def config_from_args(args: argparse.Namespace) -> FlowConfig:
    """The FlowConfig that `--config` and the other options describe (options win)."""
    config = FlowConfig.from_file(args.config) if args.config else FlowConfig()
    values: dict[str, Any] = {}
    for key in ("batch_size", "ring_size", "pool_size", "scheduler_interval", "log_interval",
                "mode", "stats_public"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    if args.cores is not None:
        cores = args.cores
        values["cores"] = int(cores) if cores.isdigit() and "," not in cores else cores
    if args.stats is not None:
        values["stats"] = parse_address(args.stats)
    return config.with_values(**values)


def ports_from_args(args: argparse.Namespace) -> PortTable:
    """`--port` specs, else the "ports" table of `--config`, else no ports."""
    if args.port:
        return PortTable.from_specs(args.port)
    if args.config and not args.config.endswith(".toml"):
        try:
            doc = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{args.config}: {e}") from None
        if isinstance(doc, dict) and "ports" in doc:
            return PortTable.from_config(args.config)
    return PortTable()


def system_from_args(args: argparse.Namespace) -> System:
    """A System with the configuration and ports the options give."""
    return System(config_from_args(args), ports_from_args(args))


def summary(stats: dict[str, Any]) -> str:
    """Final counters as a few readable lines."""
    lines = []
    for n in stats["nodes"]:
        drops = ", ".join(f"{r} {v}" for r, v in n["dropped"].items() if v)
        path = f" [{n['path']}]" if "path" in n else ""
        lines.append(f"  {n['op']} {n['name']}{path}: in {n['in']} out {n['out']}"
                     f"{' dropped ' + drops if drops else ''}")
    for key, p in stats["ports"].items():
        lines.append(f"  port {key} {p['name']}: rx {p['rx_packets']} pkts {p['rx_bytes']} B, "
                     f"tx {p['tx_packets']} pkts {p['tx_bytes']} B")
    c = stats["conservation"]
    lines.append(f"  conservation: entered {c['total_entered']} ended {c['total_ended']} "
                 f"({'balanced' if c['balanced'] else 'NOT balanced'})")
    return "\n".join(lines)


def _call_build(build: BuildFunction, nf: System, args: argparse.Namespace) -> None:
    try:
        takes_args = len(inspect.signature(build).parameters) >= 2
    except (TypeError, ValueError):
        takes_args = False
    if takes_args:
        build(nf, args)
    else:
        build(nf)


def script_module_name(path: str | Path) -> str:
    """The module name an NF program file is imported under: its stem plus a hash of its
    absolute path, the same on every run and distinct for different files."""
    path = Path(path).resolve()
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"pktflow_nf_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def script_module(path: str | Path):
    """An NF program file imported under `script_module_name(path)` (once per process)."""
    return import_file(script_module_name(path), path)


def importable_build(build: BuildFunction) -> BuildFunction:
    """`build` itself, or, when it was defined in a script running as `__main__`, the same
    function of that script imported under a stable module name (the top level of the
    script runs a second time, without its `if __name__ == "__main__":` part)."""
    if getattr(build, "__module__", None) != "__main__":
        return build
    main_module = sys.modules.get("__main__")
    path = getattr(main_module, "__file__", None)
    if path is None:
        return build  # interactive or `python -c`: nothing to import
    spec = getattr(main_module, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        module = importlib.import_module(spec.name)  # `python -m package.module`
    else:
        module = script_module(path)
    twin: Any = module
    for part in build.__qualname__.split("."):
        twin = getattr(twin, part, None)
    return twin if callable(twin) else build


def main(build: BuildFunction, argv: list[str] | None = None, *,
         description: str | None = None,
         extra_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """Parse the command line, build the graph with `build(nf)` and run it; exits the
    process with the status unless called with `argv` (then returns it)."""
    parser = argparse.ArgumentParser(description=description or (build.__doc__ or "").strip())
    add_arguments(parser)
    if extra_arguments is not None:
        extra_arguments(parser)
    args = parser.parse_args(argv)
    status = run_args(importable_build(build), args)
    if argv is None:
        sys.exit(status)
    return status


def run_args(build: BuildFunction, args: argparse.Namespace) -> int:
    """Build and run from parsed options; errors in configuration print and return 2."""
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # also when `pktflow` configured logging first
    try:
        nf = system_from_args(args)
    except (ConfigError, PortSpecError, PortError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        _call_build(build, nf, args)
        nf.validate()
        final = nf.run(args.duration)
    except FlowError as e:
        print(f"error: {e}", file=sys.stderr)
        nf.close()
        return 2
    nf.close()
    print(summary(final))
    return 0


def _load_build(path: str) -> BuildFunction:
    try:
        module = script_module(path)
    except FileNotFoundError:
        raise FlowError(f"{path}: no such file") from None
    except ImportError as e:
        raise FlowError(str(e)) from None
    build = getattr(module, "build", None)
    if not callable(build):
        raise FlowError(f"{path}: defines no build(nf) function")
    return build


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        build = _load_build(args.program)
    except FlowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_args(build, args)


def _cmd_stats(args: argparse.Namespace) -> int:
    host, port = parse_address(args.address) or ("127.0.0.1", 8080)
    url = f"http://{host}:{port}/{'metrics' if args.prometheus else 'stats'}"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = reply.read().decode()
    except OSError as e:
        print(f"error: {url}: {e}", file=sys.stderr)
        return 1
    print(body if args.prometheus else summary(json.loads(body)))
    return 0


def register(subparsers: Any) -> None:
    """Add `pktflow flow run PROGRAM.py` and `pktflow flow stats ADDR`."""
    parser = subparsers.add_parser("flow", help="run a flow-graph NF, or read its statistics")
    sub = parser.add_subparsers(dest="flow_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run the build(nf) function of a Python file")
    run.add_argument("program", help="a Python file defining build(nf)")
    add_arguments(run)
    run.set_defaults(func=_cmd_run)
    stats = sub.add_parser("stats", help="print the statistics of a running NF")
    stats.add_argument("address", nargs="?", default="8080", help="PORT or HOST:PORT")
    stats.add_argument("--prometheus", action="store_true", help="raw Prometheus text")
    stats.set_defaults(func=_cmd_stats)
