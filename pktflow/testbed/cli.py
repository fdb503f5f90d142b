"""`pktflow testbed`: the tutorial topology in network namespaces, built through Mininet.

    pktflow testbed [up] [--for SECONDS]    build it, print it, keep it until Ctrl-C
    pktflow testbed shell --nf 'CMD'        NF on the target host, generator console on
                                            the generator host (the two-terminal tutorial)
    pktflow testbed shell --step step05     the same with a tutorial step and its script
    pktflow testbed tutorial STEP|all       tutorial steps: NF on the target host, generator
                                            on the generator host, judged as `pktflow tutorial`
    pktflow testbed gen --hosts 3           generators on several hosts at once
    pktflow testbed kpktgen --hosts 2 -- pktgen_sample01_simple.sh -i {intf} -m {dst_mac}
                                            kernel pktgen scripts or a `kpktgen run` config
                                            on several hosts at once, each its own engine
    pktflow testbed clean                   remove leftovers of a killed run

Everything is torn down on exit, on failure and on Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from pktflow.testbed.net import TestbedError, clean, leftovers


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `testbed` subcommand."""
    p = subparsers.add_parser(
        "testbed", help="tutorial topology in network namespaces (Mininet, root)",
        description="Build the tutorial topology (generator host and target host joined by "
        "two veth links, port 0 to 0 and 1 to 1) in network namespaces through Mininet.")
    sub = p.add_subparsers(dest="testbed_command", metavar="ACTION")
    up = sub.add_parser("up", help="build the topology and keep it until Ctrl-C (default)")
    up.add_argument("--for", dest="hold", type=float, metavar="SECONDS",
                    help="tear down after this many seconds instead of waiting for Ctrl-C")
    shell = sub.add_parser("shell", help="NF on the target host, generator console on the "
                           "generator host")
    what = shell.add_mutually_exclusive_group(required=True)
    what.add_argument("--nf", metavar="CMD",
                      help="command run on the target host; {port0} and {port1} become its "
                      "port specs, e.g. \"pktflow run nf.py --port 0={port0} --port 1={port1}\"")
    what.add_argument("--step", metavar="STEP",
                      help="run tutorial step STEP (e.g. step05) on the target host; the "
                      "console starts with that step's script, written for the generator "
                      "host's MACs")
    shell.add_argument("--driver", default="auto", choices=("auto", "xdp", "packet"),
                       help="port driver for both hosts (default auto)")
    shell.add_argument("-f", "--script", metavar="FILE", help="generator command file")
    shell.add_argument("--json", action="store_true",
                       help="generator prints its final statistics as JSON (scripted runs)")
    tut = sub.add_parser("tutorial", help="run tutorial steps: NF on the target host, "
                         "generator on the generator host, same table as `pktflow tutorial`")
    tut.add_argument("steps", nargs="*", metavar="STEP",
                     help="step01 .. step11, nat, or all (default: the eleven steps and NAT)")
    tut.add_argument("--driver", default="packet", choices=("packet", "auto", "xdp"),
                     help="port driver of the NF and the generator (default packet)")
    tut.add_argument("--packets", type=int, metavar="N",
                     help="packets per traffic phase (default: as `pktflow tutorial`)")
    tut.add_argument("--json", action="store_true", help="print the results as JSON")
    tut.add_argument("--dir", metavar="DIR",
                     help="folder of the tutorial programs (default examples/tutorial)")
    gen = sub.add_parser("gen", help="generators on several hosts at once, counted by a sink")
    gen.add_argument("--hosts", type=int, default=3, help="generator hosts (default 3)")
    gen.add_argument("--count", type=int, default=20000, help="frames per generator")
    gen.add_argument("--pps", type=int, default=10000, help="rate of each generator")
    gen.add_argument("--driver", default="packet", choices=("auto", "xdp", "packet"))
    kp = sub.add_parser("kpktgen", help="kernel-pktgen scripts or configs on several hosts "
                        "at once, each host with its own engine at /proc/net/pktgen")
    kp.add_argument("--hosts", type=int, default=2, help="generator hosts (default 2)")
    kp.add_argument("--config", metavar="FILE", help="`pktflow kpktgen run` config for "
                    "every host; {intf}, {dst_mac}, {host} in it become each host's own")
    kp.add_argument("--kernel", action="store_true", help="use the kernel's pktgen "
                    "(CONFIG_NET_PKTGEN) instead of pktflow's engine")
    kp.add_argument("--timeout", type=float, default=120.0, help="seconds before the "
                    "commands are stopped (default 120)")
    kp.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                    help="command run on every host ({intf}, {dst_mac}, {host} replaced)")
    sub.add_parser("clean", help="remove namespaces, links and host shells left by a killed run")
    p.set_defaults(func=main, testbed_command=None, hold=None)


def main(args: argparse.Namespace) -> int:
    action = args.testbed_command or "up"
    try:
        if action == "clean":
            return _clean()
        if action == "gen":
            return _gen(args)
        if action == "kpktgen":
            return _kpktgen(args)
        if action == "shell":
            return _shell(args)
        if action == "tutorial":
            return _tutorial(args)
        return _up(args.hold)
    except TestbedError as e:
        print(f"testbed: {e}", file=sys.stderr)
        return 2


def _up(hold: float | None) -> int:
    from pktflow.testbed.topo import Testbed

    with Testbed.tutorial() as tb:
        print(tb.summary())
        print("ready: press Ctrl-C to tear down" if hold is None
              else f"ready: tearing down in {hold:g} s", flush=True)
        try:
            deadline = None if hold is None else time.monotonic() + hold
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
    print("testbed torn down")
    return 0


def _shell(args: argparse.Namespace) -> int:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pktflow-testbed-shell-") as tmp:
        return _shell_in(args, Path(tmp))


def _step_nf(tb, args: argparse.Namespace, workdir: Path) -> list[str]:
    """The chosen tutorial step's command on the target host; writes its target table,
    scripts and rules copy into `workdir` and makes the step's script the console's."""
    from pktflow.testbed.tutorial import gen_macs, nf_argv, write_step_files
    from pktflow.tutorial.runner import EXAMPLES, STEPS, StepError, copy_rules, parse_steps

    try:
        (number,) = parse_steps([args.step])
    except ValueError as e:
        raise TestbedError(str(e)) from None
    spec = STEPS[number]
    targets = write_step_files(gen_macs(tb), workdir)
    rules = copy_rules(spec, EXAMPLES, workdir)
    if rules is not None:
        print(f"the step's rules file on the target host: {rules} (edit it while it runs)")
    args.script = args.script or str(workdir / spec.script)
    try:
        return nf_argv(tb, spec, EXAMPLES, args.driver, targets, rules)
    except StepError as e:
        raise TestbedError(str(e)) from None


def _shell_in(args: argparse.Namespace, workdir: Path) -> int:
    from pktflow.testbed.topo import Testbed, python_argv
    from pktflow.testbed.tutorial import MTU

    with Testbed.tutorial(mtu=MTU) as tb:
        print(tb.summary(), flush=True)
        if args.step:
            nf_argv = _step_nf(tb, args, workdir)
        else:
            ports = {f"port{i}": f"{args.driver}:{tb.intf('tgt', i)}" for i in (0, 1)}
            nf_argv = shlex.split(args.nf.format(**ports))
            if nf_argv and nf_argv[0] == "pktflow":
                nf_argv = python_argv(*nf_argv[1:])
        log_path = f"/tmp/pktflow-testbed-nf-{time.strftime('%H%M%S')}.log"
        with open(log_path, "w") as log:
            nf = tb.popen("tgt", nf_argv, stdout=log, stderr=subprocess.STDOUT)
        print(f"NF on the target host: {shlex.join(nf_argv)} (output in {log_path})")
        gen_argv = python_argv("pktgen", "--port", f"0={args.driver}:{tb.intf('gen', 0)}",
                               "--port", f"1={args.driver}:{tb.intf('gen', 1)}")
        if args.script:
            gen_argv += ["-f", args.script]
        if args.json:
            gen_argv.append("--json")
        try:
            # ip netns exec keeps the terminal and its process group, so the console owns
            # the keyboard as the original's second terminal did.
            console = subprocess.Popen(["ip", "netns", "exec", tb.ns_name("gen"), *gen_argv])
            try:
                code = console.wait()
            except KeyboardInterrupt:
                console.terminate()
                code = console.wait(5)
        finally:
            if nf.poll() is None:
                nf.terminate()
                try:
                    nf.wait(5)
                except subprocess.TimeoutExpired:
                    nf.kill()
        if nf.returncode not in (0, -15, None):
            print(f"the NF exited with {nf.returncode}: see {log_path}", file=sys.stderr)
    print("testbed torn down")
    return code


def _tutorial(args: argparse.Namespace) -> int:
    import json

    from pktflow.testbed.topo import Testbed
    from pktflow.testbed.tutorial import MTU, TestbedRig
    from pktflow.tutorial.cli import make_console, show_steps, summary_line
    from pktflow.tutorial.runner import DEFAULT_PACKETS, EXAMPLES, parse_steps

    words = [w.lower() for w in args.steps]
    named_nat = "nat" in words
    want_nat = named_nat or words in ([], ["all"])  # all: the eleven steps and NAT
    words = [w for w in words if w != "nat"]
    try:
        numbers = parse_steps(words) if words or not named_nat else []
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.packets is not None and args.packets < 1:
        print("error: --packets must be at least 1", file=sys.stderr)
        return 2
    nat_ok, nat_doc = True, None
    examples = Path(args.dir) if args.dir else EXAMPLES
    out = make_console(stderr=args.json)
    started = time.monotonic()
    try:
        with Testbed.tutorial(mtu=MTU) as tb:
            out.print(tb.summary(), highlight=False)
            out.print(f"NF on tgt ({args.driver}:{tb.intf('tgt', 0)}, "
                      f"{args.driver}:{tb.intf('tgt', 1)}), generator on gen\n",
                      highlight=False)

            def rig(spec, workdir):
                return TestbedRig(tb, spec, workdir, examples, args.driver)

            results = show_steps(numbers, args.packets or DEFAULT_PACKETS, examples,
                                 "testbed", args.json, out, rig)
            if want_nat:
                from pktflow.testbed.nat import nat_for_cli

                nat_ok, nat_doc = nat_for_cli(tb, args.packets, args.driver, args.json,
                                              lambda text: out.print(text, highlight=False))
    except KeyboardInterrupt:
        print("interrupted: NF stopped, testbed torn down", file=sys.stderr)
        return 130
    seconds = time.monotonic() - started
    passed = all(r.passed for r in results) and nat_ok
    if args.json:
        doc = {"steps": [r.to_dict() for r in results], "passed": passed,
               "seconds": round(seconds, 2)}
        print(json.dumps(doc | ({"nat": nat_doc} if nat_doc else {}), indent=2))
    else:
        line = summary_line(results, seconds, passed)
        if nat_doc is not None:
            nat_word = "passed" if nat_ok else "FAILED"
            line = (line.replace(" passed in", f" passed, NAT {nat_word}, in") if numbers
                    else f"NAT {nat_word} in {seconds:.1f} s: {'PASS' if passed else 'FAIL'}")
        out.print(line, highlight=False)
        out.print("testbed torn down", highlight=False)
    return 0 if passed else 1


def _gen(args: argparse.Namespace) -> int:
    from pktflow.testbed.multigen import format_results, run_fan_in

    t0 = time.monotonic()
    results = run_fan_in(args.hosts, args.count, args.pps, args.driver)
    print(format_results(results))
    print(f"{args.hosts} generator hosts in {time.monotonic() - t0:.1f} s")
    failed = [r for r in results if r.exit_code != 0 or r.tx_packets != args.count]
    for r in failed:
        print(f"{r.host}: exit {r.exit_code}: {r.stderr.strip()[-500:]}", file=sys.stderr)
    return 1 if failed else 0


def _kpktgen(args: argparse.Namespace) -> int:
    from pktflow.testbed.kpktgen import format_runs, run_on_hosts

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if bool(command) == bool(args.config):
        print("testbed kpktgen: give --config FILE or -- COMMAND (one of them)",
              file=sys.stderr)
        return 2
    tb, runs = run_on_hosts(args.hosts, command or None,
                            Path(args.config) if args.config else None, args.kernel,
                            args.timeout, on_ready=lambda tb: print(tb.summary(), flush=True))
    print(format_runs(runs, tb.setup_seconds))
    failed = [r for r in runs if r.exit_code != 0]
    for r in failed:
        print(f"{r.host}: exit {r.exit_code}: {r.output.strip()[-800:]}", file=sys.stderr)
    print("testbed torn down")
    return 1 if failed else 0


def _clean() -> int:
    found = clean()
    removed = [f"{kind}: {', '.join(map(str, items))}" for kind, items in found.items() if items]
    print("removed " + "; ".join(removed) if removed else "nothing to clean")
    rest = leftovers()
    if any(rest.values()):
        print(f"still present: {rest}", file=sys.stderr)
        return 1
    return 0
