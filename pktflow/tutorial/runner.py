"""Run the tutorial steps against pktflow's own generator and check the seed's results.

The expectations (`STEPS`), the judge (`measure`, `run_step`) and the way the generator is
driven (`Rig.send`, `Rig.edit_rules`) do not depend on where the NF and the generator run;
a `Rig` subclass says only how to see the NF. By default one `StepRig` puts the step's NF
(its `build(nf, args)` from `examples/tutorial/stepNN.py`) and a `Pktgen` in this process,
wired port 0 to port 0 and port 1 to port 1 by memory ports; `pktflow testbed tutorial`
passes a rig that runs the NF as its own process on the testbed's target host
(`pktflow.testbed.tutorial.TestbedRig`). The generator loads the step's `.pg` script and sends a
bounded number of packets on port 0; the rig waits until the NF has handled every packet
and the generator has counted every reply, then compares what came back on each port with
the fraction the seed expects.

Counts are exact, not statistical: the generator's range mode repeats a fixed sequence
(4 IPv4 sources, 11 destination ports) and the partitioner a fixed 300/300 pattern, and
the memory rings are as large as the buffer pool, so no packet can be lost on the way.
When the packet count is a whole number of periods every ratio is exact; otherwise it
is off by less than one period's share of packets, which is the tolerance.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

from pktflow.acl import RuleError
from pktflow.flow import FlowConfig, FlowError, System
from pktflow.flow.cli import script_module
from pktflow.packet.pool import DEFAULT_BUFFERS, Pool
from pktflow.pktgen import CommandError, Pktgen, PktgenError
from pktflow.pktgen.config import DEFAULT_BURST, DEFAULT_SPEED_MBPS, WIRE_OVERHEAD
from pktflow.ports import PortTable
from pktflow.ports.base import PortError, PortSpecError
from pktflow.tutorial.targets import DIRECT, TargetError, target_macs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tutorial"
DEFAULT_PACKETS = 6600  # a whole number of every period: 4, 11 and 300 + 300
# The NF's own port MACs: fixed, so the compiled MAC-rewriting handlers (which hold them
# as constants) come from Numba's cache on every run.
NF_MACS = ("02:6e:66:00:00:00", "02:6e:66:00:00:01")
# A receive ring as large as the shared pool can never overflow: no packet is lost.
RING = DEFAULT_BUFFERS
ENCAP_BYTES = 20  # the outer IPv4 header of steps 9 to 11
RELOAD_BOUND = 1.0  # seconds within which a watched rules file must be in use
RELOAD_WAIT = 5.0  # how long to wait before calling a reload missing
LIVE_PPS = 20_000  # traffic that runs while a rules file is edited
SCALING_PPS = 20_000  # steps 10 and 11: paced so the scheduler sees a growing queue
SCALING_SECONDS = 1.0
STEP_FRAME_SIZE = 1500  # Pktgen size of every step script's frames (1496 bytes + FCS)
QUIET = 0.5  # step 1: how long nothing must come back
STALL = 5.0  # no counter moved for this long: what is missing is lost, stop waiting
SETTLE_TIMEOUT = 30.0  # bound on draining the NF and the generator's receive side


class StepError(RuntimeError):
    """A step could not be set up or run (not a wrong result); the message says why."""


# ----------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Expect:
    """The fractions of port 0's transmitted packets that come back on ports 0 and 1."""

    port0: Fraction
    port1: Fraction

    def of(self, port: int) -> Fraction:
        return self.port0 if port == 0 else self.port1


@dataclass(frozen=True)
class Edit:
    """The seed's on-the-fly change of one rule's source CIDR, and the ratios after it."""

    old: str
    new: str
    what: str
    after: Expect

    def apply(self, text: str) -> str:
        """`text` with the rule line that starts with `old` starting with `new`."""
        lines = text.splitlines(keepends=True)
        hits = [i for i, line in enumerate(lines) if line.split()[:1] == [self.old]]
        if len(hits) != 1:
            raise StepError(f"the rules file has {len(hits)} rule lines starting with "
                            f"{self.old}, expected one")
        i = hits[0]
        lines[i] = lines[i].replace(self.old, self.new, 1)
        return "".join(lines)


@dataclass(frozen=True)
class StepSpec:
    """One tutorial step: its graph (in words), script, rules and expected results."""

    number: int
    graph: str
    script: str
    expect: Expect
    period: int = 1  # length of the repeating packet sequence the ratios come from
    rules: str | None = None
    edit: Edit | None = None
    encapsulates: bool = False  # port 0's packets carry ENCAP_BYTES more
    paced: bool = False  # steps 10 and 11: SCALING_PPS for SCALING_SECONDS
    scales: bool = False  # step 11: more clones of the vector handler than step 10

    @property
    def name(self) -> str:
        return f"step{self.number:02d}"


F = Fraction
STEPS: dict[int, StepSpec] = {s.number: s for s in [
    StepSpec(1, "init only, no flows", "step02.pg", Expect(F(0), F(0))),
    StepSpec(2, "receive 0 -> rewrite MACs -> send 0", "step02.pg", Expect(F(1), F(0))),
    StepSpec(3, "receive 0 -> partition 300/300 -> send 0 and 1", "step03.pg",
             Expect(F(1, 2), F(1, 2)), period=600),
    StepSpec(4, "receive 0 -> separate TCP dst port 53 -> send 0 / send 1", "step04.pg",
             Expect(F(10, 11), F(1, 11)), period=11),
    StepSpec(5, "receive 0 -> separate by rules1 (accepted / rejected) -> send 0 / send 1",
             "step05.pg", Expect(F(3, 4), F(1, 4)), period=4, rules="rules1.conf"),
    StepSpec(6, "as 5, rejected flow stopped", "step06.pg", Expect(F(3, 4), F(0)), period=4,
             rules="rules1.conf"),
    StepSpec(7, "as 6, rules1 reloaded while running", "step07.pg", Expect(F(3, 4), F(0)),
             period=4, rules="rules1.conf",
             edit=Edit("111.2.0.2/32", "111.2.0.2/31", "Reject rule -> 111.2.0.2/31",
                       Expect(F(1, 2), F(0)))),
    StepSpec(8, "receive 0 -> split by rules2 into 3 flows (drop, send 0, send 1)",
             "step08.pg", Expect(F(1, 2), F(1, 4)), period=4, rules="rules2.conf",
             edit=Edit("111.2.0.0/31", "111.2.0.0/32", "port-1 rule -> 111.2.0.0/32",
                       Expect(F(1, 4), F(1, 2)))),
    StepSpec(9, "as 8, flow 1 tunnelled in an outer IPv4 header (IP-in-IP)", "step09.pg",
             Expect(F(1, 2), F(1, 4)), period=4, rules="rules2.conf", encapsulates=True,
             edit=Edit("111.2.0.2/32", "111.2.1.2/32", "drop rule -> 111.2.1.2/32",
                       Expect(F(1, 2), F(1, 2)))),
    StepSpec(10, "as 9, the tunnel handler takes a vector", "step10.pg",
             Expect(F(1, 2), F(1, 4)), period=4, rules="rules2.conf", encapsulates=True,
             paced=True),
    StepSpec(11, "as 10, the vector handler also burns CPU", "step11.pg",
             Expect(F(1, 2), F(1, 4)), period=4, rules="rules2.conf", encapsulates=True,
             paced=True, scales=True),
]}


def parse_steps(words: list[str]) -> list[int]:
    """'all', 'step05', '5' or '05' -> step numbers in order; raises ValueError if unknown."""
    if not words or words == ["all"]:
        return sorted(STEPS)
    numbers = []
    for w in words:
        text = w.lower().removeprefix("step")
        if w.lower() == "all":
            numbers.extend(sorted(STEPS))
        elif text.isdigit() and int(text) in STEPS:
            numbers.append(int(text))
        else:
            raise ValueError(f'unknown step "{w}": use step01 .. step11, 1 .. 11 or all')
    return list(dict.fromkeys(numbers))


def tolerance(fraction: Fraction, period: int, sent: int) -> int:
    """Packets a port's count may differ from `sent * fraction`: none for whole periods,
    else less than one period's share."""
    return 0 if sent % period == 0 else math.ceil(fraction * period)


@dataclass(frozen=True)
class Offer:
    """The paced traffic of steps 10 and 11: how many packets, how fast, in bursts of how
    many, and what bounds the count (said in the step's notes)."""

    count: int
    pps: int
    burst: int = DEFAULT_BURST
    bound: str = ""

    @property
    def rate(self) -> float:
        """The rate in Pktgen's terms (`set 0 rate`): percent of the line rate the generator
        assumes for a port that reports no speed, counting wire bytes as Pktgen does."""
        return (self.pps * (STEP_FRAME_SIZE + WIRE_OVERHEAD) * 8 * 100
                / (DEFAULT_SPEED_MBPS * 1e6))

    def describe(self, ports: str = "0") -> str:
        """What was offered, in packets per second and Pktgen's percent."""
        text = (f"offered {self.count} packets at {self.pps} pps = {self.rate:.3f}% of "
                f"{DEFAULT_SPEED_MBPS // 1000} Gbit/s line rate (`set {ports} rate "
                f"{self.rate:.4g}`, bursts of {self.burst})")
        return text + (f"; {self.bound}" if self.bound else "")


# ----------------------------------------------------------------------- results


@dataclass
class PortRow:
    """One port of one phase: what the generator sent and received, and the verdict."""

    port: int
    tx_packets: int
    tx_bytes: int
    rx_packets: int
    rx_bytes: int
    ratio: float
    expected: str
    tolerance: int
    passed: bool


@dataclass
class Check:
    """A verdict beyond the port ratios (reload, bytes, clones, counters)."""

    name: str
    expected: str
    measured: str
    passed: bool


@dataclass
class Phase:
    """One burst of traffic and what came back."""

    name: str
    ports: list[PortRow] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.ports) and all(c.passed for c in self.checks)


@dataclass
class StepResult:
    """Everything one step measured; `passed` when every row and check passed."""

    step: int
    name: str
    graph: str
    phases: list[Phase] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    peak_clones: int = 0  # of the vector handler (steps 10 and 11)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (self.error is None and bool(self.phases)
                and all(p.passed for p in self.phases) and all(c.passed for c in self.checks))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        for phase, pd in zip(self.phases, d["phases"], strict=True):
            pd["passed"] = phase.passed
        return d


@dataclass(frozen=True)
class NFCounts:
    """What the judge reads of the NF: packets its receivers took into the graph, packets
    still inside it, and packets its ports 0 and 1 sent."""

    received: int
    in_flight: int
    tx0: int
    tx1: int


@dataclass
class Counts:
    """Generator counters of one burst, per port."""

    tx_packets: list[int]
    tx_bytes: list[int]
    rx_packets: list[int]
    rx_bytes: list[int]
    tx_dropped: int
    settled: bool
    seconds: float


@dataclass
class EditOutcome:
    """What a rules file edit did: the versions before and after, how fast, any error."""

    version_before: int
    version_after: int
    seconds: float
    error: str | None


# ----------------------------------------------------------------------- the rig


def load_step_module(number: int, examples: Path = EXAMPLES) -> ModuleType:
    """Import examples/tutorial/stepNN.py (and its `common`) as a module."""
    examples = examples.resolve()
    path = examples / f"step{number:02d}.py"
    if not path.is_file():
        raise StepError(f"{path}: no such file (give the examples folder with --dir)")
    if str(examples) not in sys.path:
        sys.path.insert(0, str(examples))
    loaded = sys.modules.get("common")
    if loaded is not None and Path(getattr(loaded, "__file__", "")).parent != examples:
        raise StepError(f"the steps' common.py is already loaded from {loaded.__file__}; "
                        f"run the steps of {examples} in a new process")
    # The name a step gets when run as a script too, so both share Numba's cache.
    return script_module(path)


_rigs = itertools.count()


class Rig:
    """The generator side of one step and the judge's view of the NF, wherever the NF runs.

    The generator (`Pktgen` on `gen_ports`, loaded with the step's script) is driven the
    same way for every rig; subclasses say how to read the NF's counters, its rules file's
    status and its final conservation check (in this process, or over its statistics
    server and log when it runs in another namespace). Use as a context manager.
    """

    spec: StepSpec
    gen: Pktgen | None = None
    gen_ports: PortTable | None = None
    rules_path: Path | None = None

    def _start_generator(self, gen_ports: PortTable, script: Path,
                         pool: Pool | None = None) -> None:
        """Start the generator on `gen_ports` (with `pool`, the NF's when they share
        memory wires) and run the step's script on it."""
        self.messages: list[str] = []
        self.gen_ports = gen_ports
        self.gen = Pktgen(gen_ports, pool=pool, output=self.messages.append)
        errors = self.gen.load(script)
        if errors:
            raise StepError("; ".join(errors))

    # ---- what subclasses provide ------------------------------------------------------
    def nf_counts(self) -> NFCounts:
        """The NF's counters now; its graph's counters are read before its ports'."""
        raise NotImplementedError

    def rules_status(self) -> dict[str, Any]:
        """The watched rules file's `version`, `failed_reloads` and `last_error`."""
        raise NotImplementedError

    def vector_handler_peak(self) -> int:
        """Most clones the scheduler gave the vector handler's segment so far."""
        raise NotImplementedError

    @property
    def max_clones(self) -> int:
        """How many clones the NF's scheduler may give one segment."""
        raise NotImplementedError

    def finish_nf(self) -> dict[str, Any]:
        """Stop the NF and return its final conservation counters."""
        raise NotImplementedError

    def notes(self) -> list[str]:
        """Remarks for the step's report that only this kind of rig knows (real-wire
        drops, for example)."""
        return []

    def paced_offer(self, spec: StepSpec) -> Offer:
        """Steps 10 and 11's traffic: SCALING_PPS for SCALING_SECONDS (memory wires as
        large as the pool cannot overflow); a rig on real links bounds it by its rings."""
        count = int(SCALING_PPS * SCALING_SECONDS) // spec.period * spec.period
        return Offer(count, SCALING_PPS)

    def close(self) -> None:
        """Stop the generator and the NF, release their ports."""
        raise NotImplementedError

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- driving the generator and judging --------------------------------------------
    def _settled(self, base: NFCounts) -> bool:
        """True when the NF's graph took in every packet sent and ended each one, and the
        generator then counted every reply the NF's ports sent.

        The order of reads matters: a port counts a packet before the graph does, so only
        the graph's own counters say the NF is done; the generator is read last so that
        its replies are compared with the NF's final port counters."""
        nf = self.nf_counts()
        gs = self.gen.stats()
        return (nf.received - base.received == gs[0]["tx_packets"] and nf.in_flight == 0
                and gs[0]["rx_packets"] == nf.tx0 - base.tx0
                and gs[1]["rx_packets"] == nf.tx1 - base.tx1)

    def _progress(self) -> tuple[int, ...]:
        nf = self.nf_counts()
        gs = self.gen.stats()
        return (nf.received, nf.in_flight, nf.tx0, nf.tx1,
                gs[0]["rx_packets"], gs[1]["rx_packets"])

    def _settle(self, base: NFCounts, nothing_back: bool) -> bool:
        """Wait until every packet is accounted for; give up once nothing moved for
        STALL seconds (a packet lost on a real wire never arrives) or after
        SETTLE_TIMEOUT."""
        if nothing_back:
            # Nothing is expected, so no event marks the end: watch for a quiet while.
            self.gen.wait_quiet(QUIET, QUIET * 4)
            return True
        deadline = time.monotonic() + SETTLE_TIMEOUT
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            if self._settled(base):
                return True
            now = self._progress()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > STALL:
                break
            time.sleep(0.01)
        return self._settled(base)

    def send(self, count: int, pps: int | None = None, offer: Offer | None = None) -> Counts:
        """Send `count` packets on port 0 (as fast as the port allows, or `pps`, or paced
        by `offer`'s rate and burst), wait until the NF drained and the replies settled;
        returns the generator's counters."""
        gen = self.gen
        gen.clear()
        base = self.nf_counts()
        gen.execute(f"set 0 count {count}")
        if offer is not None:
            gen.execute(f"set 0 rate {offer.rate!r}")
            gen.execute(f"set 0 burst {offer.burst}")
        else:
            gen.execute(f"set 0 pps {pps}" if pps else "set 0 rate 100")
        started = time.monotonic()
        gen.start([0])
        if not gen.wait_done(SETTLE_TIMEOUT):
            gen.stop([0])
        nothing_back = self.spec.expect == Expect(Fraction(0), Fraction(0))
        settled = self._settle(base, nothing_back)
        seconds = time.monotonic() - started
        s = gen.stats()
        return Counts([s[p]["tx_packets"] for p in (0, 1)], [s[p]["tx_bytes"] for p in (0, 1)],
                      [s[p]["rx_packets"] for p in (0, 1)], [s[p]["rx_bytes"] for p in (0, 1)],
                      s[0]["tx_dropped"], settled, seconds)

    def edit_rules(self, transform: Callable[[str], str]) -> EditOutcome:
        """Rewrite the rules file copy with `transform` while traffic runs, and wait until
        the NF's watcher has installed it (or reported it broken)."""
        if self.rules_path is None:
            raise StepError(f"{self.spec.name} has no watched rules file to edit")
        gen = self.gen
        gen.clear()
        base = self.nf_counts()
        before = self.rules_status()
        text = transform(self.rules_path.read_text())
        gen.execute("set 0 count 0")
        gen.execute(f"set 0 pps {LIVE_PPS}")
        gen.start([0])
        try:
            # Written as editors save: a new file renamed over the old one.
            tmp = self.rules_path.with_suffix(".tmp")
            tmp.write_text(text)
            written = time.monotonic()
            os.replace(tmp, self.rules_path)
            deadline = written + RELOAD_WAIT
            status = self.rules_status()
            while time.monotonic() < deadline:
                status = self.rules_status()
                if (status["version"] != before["version"]
                        or status["failed_reloads"] != before["failed_reloads"]):
                    break
                time.sleep(0.005)
            seconds = time.monotonic() - written
        finally:
            gen.stop([0])
            self._settle(base, False)
        error = status["last_error"] if status["failed_reloads"] != before["failed_reloads"] \
            else None
        if status["version"] == before["version"] and error is None:
            error = f"no reload within {RELOAD_WAIT:g} s"
        return EditOutcome(before["version"], status["version"], seconds, error)


class StepRig(Rig):
    """One step's NF and a generator in this process, port 0 to 0 and 1 to 1 over memory
    wires; use as a context manager (everything is stopped and closed on exit)."""

    def __init__(self, spec: StepSpec, workdir: Path, examples: Path = EXAMPLES,
                 target: str = DIRECT, config: FlowConfig | None = None,
                 ports: tuple[PortTable, PortTable] | None = None) -> None:
        """`ports`: (generator ports, NF ports) to use instead of memory wires, for
        example AF_PACKET ports on veth links; the rig closes them."""
        self.spec = spec
        self.examples = examples
        self.rules: Any = None
        self.nf: System | None = None
        self._nf_ports: PortTable | None = None  # closed by the System once it exists
        module = load_step_module(spec.number, examples)
        targets = examples / "config.json"
        mac0, mac1 = target_macs(targets, target)
        self.rules_path = copy_rules(spec, examples, workdir)
        args = step_arguments(target, targets, self.rules_path)
        wire = f"tutorial{os.getpid()}_{next(_rigs)}"  # a fresh pair of wires per rig
        try:
            if ports is not None:
                gen_ports, self._nf_ports = ports
            else:
                gen_ports = PortTable.from_specs(
                    [f"{p}=mem:{wire}_{p},ring={RING},mac={mac}"
                     for p, mac in ((0, mac0), (1, mac1))])
                self._nf_ports = PortTable.from_specs(
                    [f"{p}=mem:{wire}_{p},ring={RING},mac={mac}"
                     for p, mac in enumerate(NF_MACS)])
            self.gen_ports = gen_ports
            # A pool of the rig's own: nothing else in the process (an earlier NF or
            # generator, a test) can hold or hand back buffers the step is using.
            # Over memory wires the NF and the generator share a pool of their own; ports
            # given by the caller were opened on the caller's pool.
            default = FlowConfig(pool_size=None if ports is not None else RING)
            self.nf = System(config or default, self._nf_ports)
            parser = argparse.ArgumentParser()
            sys.modules["common"].add_arguments(parser)
            self.rules = module.build(self.nf, parser.parse_args(args))
            self.nf.start()
            self._start_generator(gen_ports, examples / spec.script,
                                  None if ports is not None else self.nf.pool)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the watcher, the generator and the NF; free the memory wires."""
        stop = getattr(self.rules, "stop", None)
        if callable(stop):
            stop()
        if self.gen is not None:
            self.gen.close()
        if self.nf is not None:
            self.nf.close()
        elif self._nf_ports is not None:
            self._nf_ports.close()
        if self.gen_ports is not None:
            self.gen_ports.close()

    def nf_counts(self) -> NFCounts:
        c = self.nf.check_conservation()
        ports = self.nf.ports
        return NFCounts(int(c["entered"]["received"]), int(c["in_flight"]),
                        ports[0].stats.tx_packets, ports[1].stats.tx_packets)

    def rules_status(self) -> dict[str, Any]:
        if not hasattr(self.rules, "status"):
            raise StepError(f"{self.spec.name} has no watched rules file to edit")
        return self.rules.status()

    def vector_handler_peak(self) -> int:
        for node in self.nf.stats()["nodes"]:
            if node["op"] == "vector_handler":
                return int(node["peak_clones"])
        return 0

    @property
    def max_clones(self) -> int:
        return self.nf.config.max_clones

    def finish_nf(self) -> dict[str, Any]:
        self.nf.stop()
        return self.nf.check_conservation()


def copy_rules(spec: StepSpec, examples: Path, workdir: Path) -> Path | None:
    """Copy the step's rules file into `workdir` (the step edits the copy, never the
    shipped file); None for steps without rules."""
    if not spec.rules:
        return None
    path = workdir / spec.rules
    shutil.copyfile(examples / spec.rules, path)
    return path


def step_arguments(target: str, targets: Path, rules: Path | None) -> list[str]:
    """The tutorial options a step program gets: target, target table, rules copy."""
    return ["--target", target, "--targets", str(targets)] + (
        ["--rules", str(rules)] if rules else [])


def measure(spec: StepSpec, name: str, counts: Counts, expect: Expect) -> Phase:
    """Compare one burst with the expected fractions; adds the burst's own checks."""
    phase = Phase(name)
    sent = counts.tx_packets[0]
    for port in (0, 1):
        fraction = expect.of(port)
        allowed = tolerance(fraction, spec.period, sent)
        rx = counts.rx_packets[port]
        ok = sent > 0 and abs(rx - sent * fraction) <= allowed
        phase.ports.append(PortRow(port, counts.tx_packets[port], counts.tx_bytes[port], rx,
                                   counts.rx_bytes[port], round(rx / sent, 4) if sent else 0.0,
                                   str(fraction), allowed, ok))
    phase.checks.append(Check("sent without loss", "0 dropped",
                              f"{counts.tx_dropped} dropped", counts.tx_dropped == 0))
    if not counts.settled:
        phase.checks.append(Check("drained", f"within {SETTLE_TIMEOUT:g} s",
                                  "packets still in flight or lost", False))
    if spec.encapsulates and sent:
        frame = counts.tx_bytes[0] // sent
        sizes = []
        ok = counts.tx_bytes[0] == frame * sent
        for port, size in ((0, frame + ENCAP_BYTES), (1, frame)):
            pkts, nbytes = counts.rx_packets[port], counts.rx_bytes[port]
            ok = ok and nbytes == pkts * size
            sizes.append(f"{nbytes / pkts:.0f}" if pkts else "-")
        phase.checks.append(Check("bytes per packet back on port 0 / 1",
                                  f"{frame + ENCAP_BYTES} / {frame}", " / ".join(sizes), ok))
    return phase


RigFactory = Callable[[StepSpec, Path], Rig]

# Drop reasons that mean the NF lost a packet, not that the step's graph chose to drop it.
UNINTENDED_DROPS = frozenset({"queue-full", "malformed", "tx-error", "handler-error",
                              "splitter-range", "shutdown"})


def run_step(spec: StepSpec, packets: int = DEFAULT_PACKETS, examples: Path = EXAMPLES,
             target: str = DIRECT, progress: Callable[[str], None] = lambda text: None,
             reference_clones: int | None = None,
             rig: RigFactory | None = None) -> StepResult:
    """Run one step end to end and judge it; never raises for a failing step.

    `rig(spec, workdir)` builds where the NF and the generator run (default: both in this
    process over memory wires, `StepRig`); the expectations and checks are the same."""
    result = StepResult(spec.number, spec.name, spec.graph)
    started = time.monotonic()
    make_rig = rig or (lambda spec, workdir: StepRig(spec, workdir, examples, target))
    try:
        with tempfile.TemporaryDirectory(prefix=f"pktflow-{spec.name}-") as tmp, \
                make_rig(spec, Path(tmp)) as rig:
            if spec.paced:
                offer = rig.paced_offer(spec)
                progress(f"{offer.count} packets at {offer.pps} pps")
                counts = rig.send(offer.count, offer=offer)
                result.notes.append(offer.describe())
            else:
                progress(f"{packets} packets")
                counts = rig.send(packets)
            result.phases.append(measure(spec, "traffic", counts, spec.expect))
            if spec.edit is not None:
                progress(f"editing the rules: {spec.edit.what}")
                outcome = rig.edit_rules(spec.edit.apply)
                result.checks.append(Check(
                    f"reload after edit ({spec.edit.what})",
                    f"new version within {RELOAD_BOUND:g} s",
                    f"version {outcome.version_before} -> {outcome.version_after} in "
                    f"{outcome.seconds:.2f} s" + (f": {outcome.error}" if outcome.error else ""),
                    outcome.error is None and outcome.version_after > outcome.version_before
                    and outcome.seconds <= RELOAD_BOUND))
                progress(f"{packets} packets with the edited rules")
                counts = rig.send(packets)
                result.phases.append(measure(spec, "after edit", counts, spec.edit.after))
            if spec.paced:
                result.peak_clones = rig.vector_handler_peak()
                result.notes.append(f"the scheduler ran the vector handler on up to "
                                    f"{result.peak_clones} clone(s) of "
                                    f"{rig.max_clones} allowed")
            if spec.scales:
                result.checks.append(_scaling_check(result.peak_clones, reference_clones,
                                                    rig.max_clones))
            result.notes += rig.notes()
            c = rig.finish_nf()
            result.checks.append(Check("NF counters add up", "entered == ended",
                                       f"{c['total_entered']} == {c['total_ended']}",
                                       bool(c["balanced"])))
            lost = {reason: count for reason, count in c.get("ended", {}).items()
                    if reason in UNINTENDED_DROPS and count}
            result.checks.append(Check(
                "no packet lost inside the NF", "no drop but by the graph's own choice",
                ", ".join(f"{count} {reason}" for reason, count in lost.items()) or "none",
                not lost))
    except (StepError, FlowError, RuleError, TargetError, CommandError, PktgenError,
            PortError, PortSpecError, OSError) as e:
        result.error = f"{type(e).__name__}: {e}"
    result.seconds = round(time.monotonic() - started, 2)
    return result


def _scaling_check(peak: int, reference: int | None, cores: int) -> Check:
    """Step 11: more clones than step 10 had (1 when step 10 did not run here)."""
    base = 1 if reference is None else reference
    label = "step 10" if reference is not None else "a light handler"
    if cores < 2:
        return Check("vector handler clones", f"more than {label} ({base})",
                     f"{peak} (only {cores} core: not checked)", True)
    return Check("vector handler clones", f"more than {label} ({base})", str(peak), peak > base)


def run_steps(numbers: list[int], packets: int = DEFAULT_PACKETS, examples: Path = EXAMPLES,
              target: str = DIRECT, progress: Callable[[int, str], None] | None = None,
              done: Callable[[StepResult], None] | None = None,
              rig: RigFactory | None = None) -> list[StepResult]:
    """Run the given steps in order (each on a rig from `rig`, see run_step); step 11
    compares its clones with step 10's."""
    results: list[StepResult] = []
    for number in numbers:
        spec = STEPS[number]
        step10 = next((r for r in results if r.step == 10 and r.error is None), None)

        def report(text: str, number: int = number) -> None:
            if progress is not None:
                progress(number, text)

        result = run_step(spec, packets, examples, target, report,
                          step10.peak_clones if step10 else None, rig)
        results.append(result)
        if done is not None:
            done(result)
    return results
