"""`pktflow kpktgen`: drive the kernel packet generator's files, or pktflow's engine.

    pktflow kpktgen run CONFIG [--dir PATH] [--json]   configure, start, show live rates
    pktflow kpktgen show [--json]                      threads, devices and results
    pktflow kpktgen stop | reset
    pktflow kpktgen serve [--dir PATH] [--proc] -- COMMAND   pktflow's engine (FUSE)

`--dir` points at any directory that serves the protocol (an engine's mount); the default
is /proc/net/pktgen. Ctrl-C during `run` writes stop to pgctrl and prints the results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pktflow.kpktgen.control import DEFAULT_ROOT, KpktgenError, Pktgen, Result, rates


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `kpktgen` subcommand."""
    p = subparsers.add_parser(
        "kpktgen", help="kernel pktgen (/proc/net/pktgen) control, and pktflow's engine",
        description="Drive the Linux kernel packet generator through its files "
        "(/proc/net/pktgen), or pktflow's userspace engine serving the same files.")
    sub = p.add_subparsers(dest="kpktgen_command", metavar="ACTION")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", metavar="PATH", help="pktgen directory (default "
                       f"{DEFAULT_ROOT}; an engine's mount from `pktflow kpktgen serve`)")
        q.add_argument("--json", action="store_true", help="print results as JSON")

    run = sub.add_parser("run", help="configure threads and devices from a file, start, "
                         "show live rates until done or Ctrl-C")
    run.add_argument("config", metavar="CONFIG", help="TOML, YAML or JSON file")
    run.add_argument("--no-live", action="store_true", help="no live rate display")
    run.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="write stop after this many seconds")
    common(run)
    common(sub.add_parser("show", help="threads, devices and each device's result"))
    common(sub.add_parser("stop", help="stop every running device (pgctrl stop)"))
    common(sub.add_parser("reset", help="stop and remove every device (pgctrl reset)"))
    try:
        from pktflow.kpktgen.fs import register_serve
    except ModuleNotFoundError as e:
        if e.name != "pktflow.kpktgen.fs":
            raise
    else:
        register_serve(sub)
    p.set_defaults(func=main, kpktgen_command=None)


def main(args: argparse.Namespace) -> int:
    action = args.kpktgen_command
    if action is None:
        print("usage: pktflow kpktgen {run,show,stop,reset,serve} ... (see --help)",
              file=sys.stderr)
        return 2
    from pktflow.kpktgen.config import ConfigError

    try:
        if action == "run":
            return _run(args)
        pg = Pktgen(args.dir or DEFAULT_ROOT)
        if action == "show":
            return _show(pg, args.json)
        pg.stop() if action == "stop" else pg.reset()
        if args.json:
            print(json.dumps({"done": action, "root": str(pg.root)}))
        return 0
    except (KpktgenError, ConfigError) as e:
        print(f"kpktgen: {e}", file=sys.stderr)
        return 1


def _console() -> Console:
    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, width=120)


def result_table(results: dict[str, Result], live: dict[str, float] | None = None) -> Table:
    """Devices as rows: sent so far, live rate (or the run's pps), errors, Result text."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name, justify in (("device", "left"), ("sent", "right"), ("pps", "right"),
                          ("Mb/sec", "right"), ("errors", "right"), ("result", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, r in results.items():
        if live is not None and not r.finished:
            pps, mbps = live.get(name, 0.0), ""
        else:
            pps, mbps = float(r.pps), str(r.mbps)
        first = r.text.splitlines()[0] if r.text else ""
        table.add_row(name, str(r.packets if r.finished else r.sofar), f"{pps:,.0f}", mbps,
                      str(r.errors if r.finished else r.current.get("errors", 0)), first)
    return table


def _show(pg: Pktgen, as_json: bool) -> int:
    if as_json:
        print(json.dumps(pg.snapshot(), indent=2))
        return 0
    out = Console() if Console().is_terminal else Console(width=120)
    out.print(f"{pg.root}: {pg.version}", highlight=False)
    for t in pg.threads:
        out.print(f"{t.name}: running {' '.join(t.running) or '-'}; stopped "
                  f"{' '.join(t.stopped) or '-'}; result {t.result}", highlight=False)
    results = pg.results()
    if results:
        out.print(result_table(results))
    return 0


def _run(args: argparse.Namespace) -> int:
    from pktflow.kpktgen.config import load_config

    cfg = load_config(args.config)
    pg = Pktgen(args.dir or cfg.dir or DEFAULT_ROOT)
    try:
        pg.configure(cfg.by_thread())
    except KpktgenError as e:
        raise KpktgenError(e.path, e.line, e.result,
                           f"{cfg.where(e.path.name)}: {e.os_error or 'refused'}") from None
    names = [d.name for d in cfg.devices]
    results, interrupted = watch(pg, names, live=not args.no_live and not args.json,
                                 timeout=args.timeout)
    if args.json:
        print(json.dumps({"devices": {n: r.to_dict() for n, r in results.items()},
                          "interrupted": interrupted}, indent=2))
    else:
        out = Console() if Console().is_terminal else Console(width=120)
        out.print(result_table(results))
        for name, r in results.items():
            out.print(f"{name}: Result: {r.text}", highlight=False)
    failed = [r for r in results.values() if not r.ok]
    return 130 if interrupted else (1 if failed else 0)


def watch(pg: Pktgen, names: list[str], live: bool = True, timeout: float | None = None,
          interval: float = 0.25) -> tuple[dict[str, Result], bool]:
    """Start, show each device's rate from its Current section (pkts-sofar) until every
    device is done; Ctrl-C or `timeout` writes stop. Returns the final results and
    whether the run was stopped early."""
    run = pg.start_in_background()
    interrupted = False
    deadline = None if timeout is None else time.monotonic() + timeout
    prev = {n: pg.device(n).result() for n in names}
    t_prev = time.monotonic()
    display = Live(result_table(prev, {}), console=_console(), refresh_per_second=4,
                   transient=True) if live else None
    try:
        if display:
            display.start()
        while not run.done:
            if deadline is not None and time.monotonic() > deadline:
                interrupted = True
                run.stop()
                break
            time.sleep(interval)
            now = {n: pg.device(n).result() for n in names}
            t_now = time.monotonic()
            if display:
                display.update(result_table(now, rates(prev, now, t_now - t_prev)))
            prev, t_prev = now, t_now
    except KeyboardInterrupt:
        interrupted = True
        run.stop()
    finally:
        if display:
            display.stop()
    # The start write returns once every device has stopped; a stop lets it return.
    try:
        while not run.wait(timeout=1.0):
            run.stop()
    except KeyboardInterrupt:
        interrupted = True
        run.stop()
        run.wait(timeout=5.0)
    return {n: pg.device(n).result() for n in names}, interrupted

