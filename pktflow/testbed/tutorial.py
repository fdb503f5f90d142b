"""`pktflow testbed tutorial`: the tutorial steps with the NF on the target host and the
generator on the generator host, judged exactly as `pktflow tutorial` judges them.

Each step gets a fresh NF process started inside the target host's namespace (the step's
program, `examples/tutorial/stepNN.py`, on the target's two veth ends) and a generator whose
ports are opened inside the generator host's namespace. The generator's scripts are written
for the target entry `testbed` of a target table that names the generator's real interface
MACs, as a user of the original tutorial wrote theirs with genscripts. The judge reads the
NF's counters from its statistics server (inside the target's namespace) and its rules
reloads from its log; steps 7 to 9 edit the target's copy of the rules file.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from pktflow.flow import FlowConfig
from pktflow.packet.addr import MACAddr
from pktflow.pktgen.config import MAX_BURST
from pktflow.ports import PortTable
from pktflow.ports.base import PortError
from pktflow.ports.linux import Interface, netns
from pktflow.testbed.topo import Testbed
from pktflow.tutorial.runner import (
    EXAMPLES,
    NFCounts,
    Offer,
    Rig,
    StepError,
    StepSpec,
    copy_rules,
    step_arguments,
)
from pktflow.tutorial.scripts import generate

TARGET = "testbed"  # the target table entry naming the generator host's ports
# Steps 9 to 11 put a 20-byte outer IPv4 header on 1496-byte frames (Pktgen size 1500):
# 1502 bytes of IP need an MTU above 1500, as the original's NICs had.
MTU = 1600
DRIVERS = ("packet", "auto", "xdp")
STATS_PORT = 9180  # on the target host's own loopback, so no other process shares it
NF_START_TIMEOUT = 120.0  # compiling the step's handlers the first time takes a while
NF_STOP_TIMEOUT = 30.0
HOST_WORDS = {"tgt": "target"}  # how error messages name a host
LOG_HEAD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")  # logging's asctime
# Steps 10 and 11 offer at most this share of the NF's receive ring. AF_PACKET's ring is
# blocks the kernel hands over when full or after a 1 ms timeout, so a ring that holds N
# full-size frames in full blocks holds fewer when bursts leave blocks part full.
RING_SHARE = 0.75
RING_BOUND_SPEEDUP = 3  # the embedded rate times this, when the ring bounds the count
DEFAULT_RING = 4096  # frames assumed when the NF's driver differs from the generator's


def write_step_files(gen_macs: list[MACAddr], workdir: Path) -> Path:
    """Write into `workdir` a target table whose entry `testbed` names the generator host's
    port MACs, and the generator scripts for it; returns the table's path."""
    targets = workdir / "config.json"
    targets.write_text(json.dumps({TARGET: [str(mac) for mac in gen_macs]}))
    generate(targets, TARGET, workdir)
    return targets


def gen_macs(tb: Testbed) -> list[MACAddr]:
    """The MACs of the generator host's ports 0 and 1."""
    with netns(tb.ns_path("gen")):
        ifaces = [Interface(tb.intf("gen", p)) for p in (0, 1)]
    try:
        return [iface.mac for iface in ifaces]
    finally:
        for iface in ifaces:
            iface.close()


def nf_argv(tb: Testbed, spec: StepSpec, examples: Path, driver: str, targets: Path,
            rules: Path | None) -> list[str]:
    """The command that runs a step's program on the target host's two ports."""
    program = examples / f"step{spec.number:02d}.py"
    if not program.is_file():
        raise StepError(f"{program}: no such file (give the examples folder with --dir)")
    return [sys.executable, str(program),
            *(a for p in (0, 1) for a in ("--port", f"{p}={driver}:{tb.intf('tgt', p)}")),
            *step_arguments(TARGET, targets, rules)]


class NFLog:
    """Reads the NF's log as it is written: the rules file's versions and failed reloads
    (the watcher logs both), and the last lines for error messages."""

    def __init__(self, stream: IO[str], rules: Path | None) -> None:
        self.version = 0
        self.failed_reloads = 0
        self.last_error: str | None = None
        self.tail: deque[str] = deque(maxlen=40)
        self._rules = re.escape(str(rules)) if rules else None
        self._failure_follows = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True,
                                        name="pktflow-testbed-nf-log")
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self.tail.append(line)
            with self._lock:
                self._parse(line)

    def _parse(self, line: str) -> None:
        if self._failure_follows and not LOG_HEAD.match(line):
            # The reload error (file:line: why) is the record's second line.
            self._failure_follows = False
            self.last_error = line.strip()
            self.failed_reloads += 1
            return
        self._failure_follows = False
        if self._rules is None:
            return
        loaded = re.search(rf"{self._rules}: loaded version (\d+)", line)
        if loaded:
            self.version = int(loaded.group(1))
            self.last_error = None
        elif re.search(rf"{self._rules}: reload failed", line):
            self._failure_follows = True

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"version": self.version, "failed_reloads": self.failed_reloads,
                    "last_error": self.last_error}

    def text(self) -> str:
        return "\n".join(self.tail)

    def join(self, timeout: float = 2.0) -> None:
        self._thread.join(timeout)


class NFProcess:
    """An NF program running as its own process on a testbed host, seen through its
    statistics server (on that host's loopback) and its log; `finish()` stops it as
    Ctrl-C does and reads its final counters, `close()` stops it in any case."""

    def __init__(self, tb: Testbed, host: str, argv: list[str], rules: Path | None = None,
                 start_timeout: float = NF_START_TIMEOUT) -> None:
        """Start `argv` (the NF's command, without --stats) on `host` and wait until its
        statistics server says it runs; a StepError with its last words if it does not."""
        self.tb = tb
        self.host = host
        self.start_timeout = start_timeout
        self.proc = tb.popen(host, [*argv, "--stats", f"127.0.0.1:{STATS_PORT}", "-v"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.log = NFLog(self.proc.stderr, rules)
        try:
            self._wait_running()
        except BaseException:
            self.close()
            raise

    def _wait_running(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if self._fetch().get("running"):
                    return
            except (OSError, http.client.HTTPException, ValueError):
                pass  # not listening yet
            time.sleep(0.1)
        raise StepError(f"the NF on the {HOST_WORDS.get(self.host, self.host)} host did not "
                        f"start within {self.start_timeout:g} s:\n{self.log.text()[-2000:]}")

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            self.log.join()
            raise StepError(f"the NF on the {HOST_WORDS.get(self.host, self.host)} host "
                            f"exited with {self.proc.returncode}:\n{self.log.text()[-2000:]}")

    def stats(self) -> dict[str, Any]:
        """The NF's statistics, fetched from inside its host's namespace; a StepError
        with the NF's last words if it died."""
        try:
            return self._fetch()
        except (OSError, http.client.HTTPException, ValueError):
            self._check_alive()
            raise

    def _fetch(self) -> dict[str, Any]:
        with netns(self.tb.ns_path(self.host)):
            conn = http.client.HTTPConnection("127.0.0.1", STATS_PORT, timeout=2)
            try:
                conn.request("GET", "/stats")
                reply = conn.getresponse()
                body = reply.read()
            finally:
                conn.close()
        if reply.status != 200:
            raise http.client.HTTPException(f"/stats answered {reply.status}")
        return json.loads(body)

    def finish(self) -> dict[str, Any]:
        """Stop the NF as Ctrl-C does and read the conservation line of its summary; the
        drop reasons come from its statistics just before (no traffic runs by then)."""
        ended = self.stats()["conservation"]["ended"]
        proc = self.proc
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(NF_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise StepError(f"the NF did not stop within {NF_STOP_TIMEOUT:g} s") from None
        out = proc.stdout.read()
        self.log.join()
        found = re.search(r"conservation: entered (\d+) ended (\d+) \((balanced|NOT balanced)\)",
                          out)
        if proc.returncode != 0 or found is None:
            raise StepError(f"the NF exited with {proc.returncode} and no final counters:\n"
                            f"{out[-1000:]}{self.log.text()[-1000:]}")
        return {"total_entered": int(found.group(1)), "total_ended": int(found.group(2)),
                "balanced": found.group(3) == "balanced", "ended": ended}

    def close(self) -> None:
        """Stop the NF if it still runs (SIGINT, then SIGKILL) and close its pipes."""
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.log.join()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


class TestbedRig(Rig):
    """One step on the testbed: the NF in its own process on the target host, the
    generator on the generator host's ports; use as a context manager (the NF is stopped
    and every port closed on exit)."""

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, tb: Testbed, spec: StepSpec, workdir: Path, examples: Path = EXAMPLES,
                 driver: str = "packet", gen_driver: str | None = None) -> None:
        """`driver`: the NF's ports; `gen_driver`: the generator's (default the same)."""
        gen_driver = gen_driver or driver
        for d in (driver, gen_driver):
            if d not in DRIVERS:
                raise StepError(f"driver must be one of {', '.join(DRIVERS)}, got {d}")
        self.spec = spec
        self.tb = tb
        self.nf: NFProcess | None = None
        try:
            with netns(tb.ns_path("gen")):
                gen_ports = PortTable.from_specs(
                    [f"{p}={gen_driver}:{tb.intf('gen', p)}" for p in (0, 1)])
            self.gen_ports = gen_ports
            # The NF opens its ports with the same driver: its ring is the generator's size.
            self.receive_ring = (gen_ports[0].queue_capacity if gen_driver == driver
                                 else None) or DEFAULT_RING
            targets = write_step_files([gen_ports[p].mac for p in (0, 1)], workdir)
            self.rules_path = copy_rules(spec, examples, workdir)
            self.nf = NFProcess(tb, "tgt", nf_argv(tb, spec, examples, driver, targets,
                                                   self.rules_path), self.rules_path)
            self._start_generator(gen_ports, workdir / spec.script)
        except (PortError, OSError) as e:
            self.close()
            raise StepError(f"testbed: {e}") from None
        except BaseException:
            self.close()
            raise

    # ---- the judge's view of the NF ------------------------------------------------
    def nf_counts(self) -> NFCounts:
        snap = self.nf.stats()
        c, ports = snap["conservation"], snap["ports"]
        return NFCounts(int(c["entered"]["received"]), int(c["in_flight"]),
                        ports["0"]["tx_packets"], ports["1"]["tx_packets"])

    def rules_status(self) -> dict[str, Any]:
        if self.rules_path is None:
            raise StepError(f"{self.spec.name} has no rules file")
        return self.nf.log.status()

    def vector_handler_peak(self) -> int:
        for node in self.nf.stats()["nodes"]:
            if node["op"] == "vector_handler":
                return int(node["peak_clones"])
        return 0

    @property
    def max_clones(self) -> int:
        return FlowConfig().max_clones  # the step programs run with the defaults

    def paced_offer(self, spec: StepSpec) -> Offer:
        """The embedded runner's rate, in bursts of Pktgen's largest size, and no more
        packets than the NF's receive ring holds: step 11's CPU-heavy handler sharing two
        cores with the generator then falls behind (the scheduler sees the backlog and
        clones it), but the kernel never drops a frame, so the step judges the NF."""
        offer = super().paced_offer(spec)
        ring = self.receive_ring
        limit = int(ring * RING_SHARE) // spec.period * spec.period
        if offer.count <= limit:
            return Offer(offer.count, offer.pps, MAX_BURST)
        # Fewer packets at the embedded rate would last too short a time for the
        # scheduler's samples to see a backlog every run (seen: 1 run in 4 without a
        # clone); the same packets faster pile up in the ring, which holds them all.
        return Offer(limit, offer.pps * RING_BOUND_SPEEDUP, MAX_BURST,
                     f"at most {RING_SHARE:.0%} of the NF's {ring}-frame receive ring, so "
                     f"a backlog never overflows it")

    def notes(self) -> list[str]:
        """Frames the kernel dropped because a socket's receive ring was full: on a real
        wire a step that cannot keep up loses packets there, not in a queue we count."""
        out = []
        for name, ports in (("NF", self.nf.stats()["ports"]), ("generator", None)):
            for p in (0, 1):
                if ports is None:
                    port = self.gen_ports[p]
                    refresh = getattr(port, "refresh_kernel_stats", None)
                    if callable(refresh):
                        refresh()
                    dropped = port.stats.rx_dropped
                else:
                    dropped = ports[str(p)]["rx_dropped"]
                if dropped:
                    out.append(f"{name} port {p}: the kernel dropped {dropped} frames "
                               f"(receive ring full)")
        return out

    def finish_nf(self) -> dict[str, Any]:
        return self.nf.finish()

    def close(self) -> None:
        try:
            if self.gen is not None:
                self.gen.close()
            if self.gen_ports is not None:
                self.gen_ports.close()
        finally:
            if self.nf is not None:
                self.nf.close()
