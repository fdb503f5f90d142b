"""Kernel-pktgen style generation on Mininet hosts, all at once.

Each generator host k1..kN has one link to host `ksink`. Every generator host runs its own
pktflow engine (`pktflow kpktgen serve --proc`, a private mount namespace inside that
host), so the kernel's scripts or a `pktflow kpktgen run` config find /proc/net/pktgen
there; starting one host never waits for another, unlike the kernel's single pgctrl lock.
The sink's interface counters say what each host delivered and when its first frame came.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pktflow.testbed.net import TestbedError, run
from pktflow.testbed.topo import LinkSpec, Testbed, python_argv

SINK = "ksink"
POLL_S = 0.02
# Words replaced in a command's arguments and in a config's text, per host.
PLACEHOLDERS = ("{intf}", "{dst_mac}", "{host}")


@dataclass
class HostRun:
    """One generator host: what ran, how it ended, what its sink port saw."""

    host: str
    intf: str
    argv: list[str]
    exit_code: int | None = None
    output: str = ""
    first_frame_s: float | None = None  # from launch to its first frame at the sink
    last_frame_s: float | None = None
    rx_at_sink: int = 0
    results: dict = field(default_factory=dict)  # device: Result dict (config runs)

    @property
    def pps(self) -> float:
        """Frames per second at the sink between its first and last frame."""
        if self.first_frame_s is None or self.last_frame_s is None:
            return 0.0
        return self.rx_at_sink / max(self.last_frame_s - self.first_frame_s, POLL_S)


def kpktgen_testbed(hosts: int) -> Testbed:
    """Hosts k1..kN, each with port 0 linked to port i-1 of host ksink."""
    if not 1 <= hosts <= 10:
        raise TestbedError(f"hosts must be 1..10, got {hosts}")
    gens = [f"k{i}" for i in range(1, hosts + 1)]
    return Testbed(gens + [SINK], [LinkSpec(g, 0, SINK, i) for i, g in enumerate(gens)])


def _fill(text: str, values: dict[str, str]) -> str:
    for key in PLACEHOLDERS:
        text = text.replace(key, values[key])
    return text


def _mac(tb: Testbed, host: str, port: int) -> str:
    out = run("ip", "-n", tb.ns_name(host), "-j", "link", "show", tb.intf(host, port)).stdout
    return json.loads(out)[0]["address"]


def _rx(tb: Testbed, ports: int) -> list[int]:
    out = run("ip", "-n", tb.ns_name(SINK), "-s", "-j", "link", "show").stdout
    by_name = {i["ifname"]: i["stats64"]["rx"]["packets"] for i in json.loads(out)}
    return [by_name.get(tb.intf(SINK, i), 0) for i in range(ports)]


def host_argv(command: list[str], kernel: bool) -> list[str]:
    """The command wrapped in the host's own engine (or bare, for the kernel's pktgen)."""
    if command and command[0] == "pktflow":
        command = python_argv(*command[1:])
    return command if kernel else python_argv("kpktgen", "serve", "--proc", "--", *command)


def run_on_hosts(hosts: int, command: list[str] | None = None, config: Path | None = None,
                 kernel: bool = False, timeout: float = 120.0,
                 on_ready=None) -> tuple[Testbed, list[HostRun]]:
    """Build the testbed, start `command` (or `pktflow kpktgen run` of `config`) on every
    generator host at the same moment, count arrivals per host at the sink until all
    exit (at most `timeout` s), tear down. {intf}, {dst_mac} and {host} in the command's
    words or the config's text become each host's own."""
    if (command is None) == (config is None):
        raise TestbedError("give a command or a config file (one of them)")
    if kernel and not Path("/proc/net/pktgen").exists():
        from pktflow.kpktgen.control import NO_PKTGEN

        raise TestbedError(f"{NO_PKTGEN}: modprobe pktgen, or drop --kernel to use "
                           "pktflow's engine")
    config_text = None
    if config is not None:
        try:
            config_text = Path(config).read_text()
        except OSError as e:
            raise TestbedError(f"{config}: cannot read: {e.strerror}") from None
    tb = kpktgen_testbed(hosts)
    with tb, tempfile.TemporaryDirectory(prefix="pktflow-kpktgen-") as tmp:
        if on_ready:
            on_ready(tb)
        gens = tb.hosts[:-1]
        runs = []
        for i, g in enumerate(gens):
            values = {"{intf}": tb.intf(g, 0), "{dst_mac}": _mac(tb, SINK, i), "{host}": g}
            if config_text is not None:
                path = Path(tmp) / f"{g}{Path(config).suffix}"
                path.write_text(_fill(config_text, values))
                argv = ["pktflow", "kpktgen", "run", str(path), "--json", "--no-live"]
            else:
                argv = [_fill(w, values) for w in command]
            runs.append(HostRun(g, tb.intf(g, 0), host_argv(argv, kernel)))
        _run_all(tb, runs, timeout)
        for r in runs:
            if config_text is not None and r.exit_code in (0, 1):
                try:
                    r.results = json.loads(r.output[r.output.index("{"):])["devices"]
                except (ValueError, KeyError):
                    pass
    return tb, runs


def _run_all(tb: Testbed, runs: list[HostRun], timeout: float) -> None:
    base = _rx(tb, len(runs))
    t0 = time.monotonic()
    procs = [tb.popen(r.host, r.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                      text=True) for r in runs]
    # Each host's output is read on a thread of its own, so a full pipe never stalls one.
    outputs: list[list[str]] = [[] for _ in procs]
    readers = [threading.Thread(target=lambda p=p, o=o: o.append(p.stdout.read()),
                                daemon=True) for p, o in zip(procs, outputs, strict=True)]
    for t in readers:
        t.start()
    deadline = t0 + timeout
    last = list(base)
    while time.monotonic() < deadline:
        now = time.monotonic() - t0
        counts = _rx(tb, len(runs))
        for r, c, prev in zip(runs, counts, last, strict=True):
            if c != prev:
                if r.first_frame_s is None:
                    r.first_frame_s = now
                r.last_frame_s = now
        last = counts
        if all(p.poll() is not None for p in procs):
            break
        time.sleep(POLL_S)
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    counts = _rx(tb, len(runs))
    for r, p, c, b, out, t in zip(runs, procs, counts, base, outputs, readers, strict=True):
        t.join(5)
        r.exit_code = p.wait()
        r.output = "".join(out)
        r.rx_at_sink = c - b


def format_runs(runs: list[HostRun], setup_s: float) -> str:
    lines = [f"{'host':<5} {'intf':<10} {'exit':>4} {'at sink':>9} {'pps':>10} "
             f"{'first frame s':>13}  result"]
    for r in runs:
        first = f"{r.first_frame_s:.2f}" if r.first_frame_s is not None else "-"
        result = "; ".join(f"{d}: {v['text'].splitlines()[0]}" for d, v in r.results.items())
        lines.append(f"{r.host:<5} {r.intf:<10} {r.exit_code!s:>4} {r.rx_at_sink:>9} "
                     f"{r.pps:>10,.0f} {first:>13}  {result}")
    total = sum(r.pps for r in runs)
    lines.append(f"{len(runs)} hosts: total {total:,.0f} pps at the sink; testbed set-up "
                 f"{setup_s / len(runs):.2f} s per host")
    return "\n".join(lines)
