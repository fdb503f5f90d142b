"""`pktflow tutorial`: run the tutorial steps against the generator and judge them;
`pktflow tutorial scripts` writes the generator scripts; `pktflow demo` runs them all.

    pktflow tutorial                  # steps 1 to 11 (same as: all)
    pktflow tutorial step07 step09    # some steps
    pktflow tutorial all --json       # results as JSON on stdout
    pktflow tutorial nat              # the NAT scenario
    pktflow tutorial scripts --target direct
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pktflow.flow.config import ConfigError, parse_address
from pktflow.flow.dashboard import BindError, Board, StatsHTTPServer
from pktflow.flow.stats import prometheus
from pktflow.pktgen.board import attach_pktgen
from pktflow.tutorial.runner import (
    DEFAULT_PACKETS,
    EXAMPLES,
    STEPS,
    Rig,
    RigFactory,
    StepResult,
    StepRig,
    StepSpec,
    parse_steps,
)
from pktflow.tutorial.targets import DIRECT, TargetError

NAT_MODULE = "pktflow.tutorial.nat"


def make_console(stderr: bool = False) -> Console:
    # Pipes get a fixed wide table instead of rich's 80 columns, so rows stay on one line.
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=120)


def _verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[bold red]FAIL[/]"


def step_table(result: StepResult) -> Table:
    """The per-port table of one step: tx/rx packets and bytes, ratio, expected, verdict."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name, justify in (("phase", "left"), ("port", "right"), ("tx pkts", "right"),
                          ("tx bytes", "right"), ("rx pkts", "right"), ("rx bytes", "right"),
                          ("rx/tx0", "right"), ("expected", "right"), ("result", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for phase in result.phases:
        for row in phase.ports:
            expected = row.expected + (f" ±{row.tolerance}" if row.tolerance else "")
            table.add_row(phase.name if row.port == 0 else "", str(row.port),
                          str(row.tx_packets), str(row.tx_bytes), str(row.rx_packets),
                          str(row.rx_bytes), f"{row.ratio:.4f}", expected, _verdict(row.passed))
    return table


def step_heading(result: StepResult) -> str:
    """The line above a step's table: name, graph, verdict and time."""
    return (f"[bold]{result.name}[/]: {result.graph}  {_verdict(result.passed)} "
            f"({result.seconds:.1f} s)")


def check_lines(result: StepResult) -> list[str]:
    """One line per check beyond the port rows, and the error if the step broke."""
    lines = []
    for phase in result.phases:
        for c in phase.checks:
            lines.append(f"  {_verdict(c.passed)}  {phase.name}: {c.name}: {c.measured} "
                         f"(expected {c.expected})")
    for c in result.checks:
        lines.append(f"  {_verdict(c.passed)}  {c.name}: {c.measured} (expected {c.expected})")
    lines += [f"  note  {note}" for note in result.notes]
    if result.error:
        lines.append(f"  [bold red]FAIL[/]  {result.error}")
    return lines


def _run_nat(packets: int | None, as_json: bool) -> tuple[bool, Any]:
    """Run helper module pktflow.tutorial.nat; (passed, its JSON document or None)."""
    from pktflow.tutorial import nat

    captured: list[str] = []
    output = captured.append if as_json else print
    kwargs = {"packets": packets} if packets is not None else {}
    result = nat.run_nat(json=as_json, output=output, **kwargs)
    return bool(result.passed), json.loads(captured[0]) if as_json else None


def cmd_tutorial(args: argparse.Namespace) -> int:
    """Run the steps the arguments name; 0 when every one passed, 1 if any failed."""
    words = [w.lower() for w in args.steps]
    if words[:1] == ["scripts"]:
        return cmd_scripts(args)
    want_nat = "nat" in words
    if want_nat and importlib.util.find_spec(NAT_MODULE) is None:
        print("error: the NAT scenario is not in this tree", file=sys.stderr)
        return 2
    words = [w for w in words if w != "nat"]
    try:
        numbers = parse_steps(words) if words or not want_nat else []
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.packets is not None and args.packets < 1:
        print("error: --packets must be at least 1", file=sys.stderr)
        return 2
    examples = Path(args.dir) if args.dir else EXAMPLES
    out = make_console(stderr=args.json)
    try:
        server = dashboard_server(args.dashboard, args.stats_public)
    except (ConfigError, BindError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rig = None
    if server is not None:
        print(f"dashboard on {server.url}", file=sys.stderr)
        rig = dashboard_rig(server.board, examples, args.target)
    started = time.monotonic()
    try:
        results = show_steps(numbers, args.packets or DEFAULT_PACKETS, examples, args.target,
                             args.json, out, rig)
    except BaseException:
        if server is not None:
            server.close()
        raise
    passed = all(r.passed for r in results)
    doc: dict[str, Any] = {"steps": [r.to_dict() for r in results]}
    if want_nat:
        nat_ok, doc["nat"] = _run_nat(args.packets, args.json)
        passed = passed and nat_ok
    seconds = time.monotonic() - started
    doc.update(passed=passed, seconds=round(seconds, 2))
    if args.json:
        print(json.dumps(doc, indent=2))
    elif numbers:
        out.print(summary_line(results, seconds, passed), highlight=False)
    if server is not None:
        if sys.stdin.isatty():
            linger(server)
        server.close()
    return 0 if passed else 1


def show_steps(numbers: list[int], packets: int, examples: Path, target: str, as_json: bool,
               out: Console, rig: RigFactory | None = None) -> list[StepResult]:
    """Run the steps under a progress bar and print each one's heading, table and checks
    as it ends (nothing but the bar with `as_json`). `rig` says where NF and generator run
    (see `run_step`); `pktflow testbed tutorial` passes the testbed's."""
    from pktflow.tutorial.runner import run_steps

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} steps"), TimeElapsedColumn(),
                  console=out, transient=True) as progress:
        task = progress.add_task("starting", total=len(numbers))

        def show(number: int, text: str) -> None:
            progress.update(task, description=f"step{number:02d}: {text}")

        def done(result: StepResult) -> None:
            progress.advance(task)
            if not as_json:
                progress.console.print(step_heading(result), highlight=False)
                progress.console.print(step_table(result))
                for line in check_lines(result):
                    progress.console.print(line, highlight=False)
                progress.console.print()

        return run_steps(numbers, packets, examples, target, show, done, rig)


def dashboard_server(address: str | None, public: bool = False) -> StatsHTTPServer | None:
    """The statistics server `--dashboard [ADDR]` asks for (None without it)."""
    parsed = parse_address(address)
    return None if parsed is None else StatsHTTPServer(Board(), parsed, public=public)


def linger(server: StatsHTTPServer) -> None:
    """Keep the dashboard up after the steps (they take seconds) until Ctrl-C."""
    print(f"dashboard on {server.url} shows the last step's final counters; Ctrl-C to quit",
          file=sys.stderr)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass


def dashboard_rig(board: Board, examples: Path, target: str) -> RigFactory:
    """A rig factory that puts each step's NF and generator on `board` as they start."""

    def make(spec: StepSpec, workdir: Path) -> Rig:
        rig = StepRig(spec, workdir, examples, target)
        show_rig(board, rig)
        return rig

    return make


def show_rig(board: Board, rig: StepRig) -> None:
    """Serve the step's NF ("nf"), generator ("pktgen") and name ("step") on `board`."""
    board.attach("nf", rig.nf.stats, prometheus)
    attach_pktgen(board, rig.gen)
    step = {"name": rig.spec.name, "graph": rig.spec.graph}
    board.attach("step", lambda: step)


def summary_line(results: list[StepResult], seconds: float, passed: bool) -> str:
    """The last line of a run: how many steps passed, in how long, and the verdict."""
    good = sum(r.passed for r in results)
    return f"{good} of {len(results)} steps passed in {seconds:.1f} s: {_verdict(passed)}"


def cmd_scripts(args: argparse.Namespace) -> int:
    """Write the generator scripts for --target from the target table."""
    from pktflow.tutorial.scripts import generate

    examples = Path(args.dir) if args.dir else EXAMPLES
    outdir = Path(args.out) if args.out else examples
    try:
        paths = generate(examples / "config.json", args.target, outdir)
    except (TargetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


def _add_options(parser: argparse.ArgumentParser, scripts: bool = True) -> None:
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--packets", type=int, metavar="N",
                        help=f"packets per traffic phase (default {DEFAULT_PACKETS}, a whole "
                             "number of every step's period; steps 10 and 11 send paced "
                             "traffic of their own)")
    parser.add_argument("--target", default=DIRECT,
                        help="target table entry: the generator's MACs (default direct)")
    parser.add_argument("--dir", metavar="DIR",
                        help="folder of the tutorial programs (default examples/tutorial)")
    parser.add_argument("--dashboard", nargs="?", const="8090", metavar="ADDR",
                        help="serve the live dashboard of the running step on PORT or "
                             "HOST:PORT (default 127.0.0.1:8090)")
    parser.add_argument("--stats-public", action="store_true",
                        help="allow --dashboard on an address other machines can reach")
    if scripts:
        parser.add_argument("--out", metavar="DIR",
                            help="scripts: folder to write the .pg files to (default --dir)")


def register(subparsers: Any) -> None:
    """Add `pktflow tutorial` and `pktflow demo`."""
    names = ", ".join(f"step{n:02d}" for n in (1, 2)) + f" .. step{max(STEPS):02d}"
    parser = subparsers.add_parser(
        "tutorial", help="run the tutorial steps against the generator and check them",
        description="Run tutorial steps (NF and generator in one process over memory "
                    "ports) and compare what comes back with the expected ratios. "
                    "`pktflow tutorial scripts` writes the generator scripts instead.")
    parser.add_argument("steps", nargs="*", metavar="STEP",
                        help=f"{names}, all (default), nat, or scripts")
    _add_options(parser)
    parser.set_defaults(func=cmd_tutorial)
    demo = subparsers.add_parser("demo", help="run every tutorial step (pktflow tutorial all)")
    _add_options(demo, scripts=False)
    demo.set_defaults(func=cmd_tutorial, steps=["all"])
