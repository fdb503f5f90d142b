"""N NF instances behind an ECMP spreader, on namespace hosts (root).

    gen --g0/r0-- rtr --r1/n1in-- nf1 --n1out/s1-- sink
                      --r2/n2in-- nf2 --n2out/s2--

The router namespace `rtr` is a plain Linux router: the service prefix 10.9.0.0/24 is a
multipath route with one next hop per NF host, and `fib_multipath_hash_policy=1` makes the
kernel pick the next hop by a hash of the 5-tuple (L4 ECMP, as a ToR switch or a NIC's RSS
spreads flows). Each NF host runs one pktflow NF process (`examples/scaleout/forward.py`),
pinned to a core of its own, that forwards what it receives to the sink host. The
generator (pktflow's Pktgen on `gen`) walks many UDP source ports, so it offers many
flows. What each instance got and carried is read from the kernel's interface counters
(what the router handed each NF host, what each NF sent to the sink) and from each NF's
own statistics server.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pktflow.pktgen import Pktgen
from pktflow.ports import PortTable
from pktflow.ports.linux import netns
from pktflow.testbed.net import TestbedError, VethLab, run
from pktflow.testbed.tutorial import NFProcess

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scaleout" / "forward.py"
SERVICE = "10.9.0.0/24"  # the prefix the router spreads over the instances
SERVICE_ADDR = "10.9.0.1"
GEN_ADDR = "10.0.0.2"
FIRST_SPORT = 1024
DPORT = 5001
HASH_SEED = 0x5EED  # a fixed ECMP hash seed: the same flows always land on the same hosts
MAX_INSTANCES = 8


def hop_addr(i: int) -> str:
    """The address the router reaches NF host i (1-based) at."""
    return f"10.0.{i}.2"


@dataclass
class Snapshot:
    """Counters at one moment: the generator's sent frames, the router's received and
    forwarded ones, and per instance what reached its host, what it sent on and what the
    sink got from it."""

    when: float
    sent: int
    router_in: int
    spread: list[int]
    nf_out: list[int]
    sink: list[int]
    cpu: list[float]  # seconds of CPU each NF process used so far

    def minus(self, old: Snapshot) -> Snapshot:
        def d(a: list[int], b: list[int]) -> list[int]:
            return [x - y for x, y in zip(a, b, strict=True)]

        return Snapshot(self.when - old.when, self.sent - old.sent,
                        self.router_in - old.router_in, d(self.spread, old.spread),
                        d(self.nf_out, old.nf_out), d(self.sink, old.sink),
                        [x - y for x, y in zip(self.cpu, old.cpu, strict=True)])


@dataclass
class Load:
    """What N instances carried over a measured window of steady load."""

    instances: int
    offered_pps: float
    carried_pps: float
    per_instance_pps: list[float]
    shares: list[float]  # of the frames the router spread, per instance
    arrived_pps: list[float]  # what the router handed each instance's host
    cores_used: list[float]  # CPU seconds per second each NF process got


def link_counters(ns: str, ifname: str) -> dict[str, int]:
    """rx/tx packets and rx drops of an interface, from the kernel (`ip -s -j link`)."""
    doc = json.loads(run("ip", "-n", ns, "-s", "-j", "link", "show", "dev", ifname).stdout)
    stats = doc[0]["stats64"]
    return {"rx": int(stats["rx"]["packets"]), "tx": int(stats["tx"]["packets"]),
            "rx_dropped": int(stats["rx"]["dropped"])}


def process_cpu(pid: int) -> float:
    """CPU seconds (user and system, all threads) a process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def link_mac(ns: str, ifname: str) -> str:
    return json.loads(run("ip", "-n", ns, "-j", "link", "show", "dev", ifname).stdout)[0][
        "address"]


class _Hosts:
    """The lab seen as NFProcess expects a testbed: start a process in a host, name its
    namespace."""

    def __init__(self, lab: VethLab) -> None:
        self.lab = lab

    def popen(self, host: str, argv: list[str], **kwargs):
        return self.lab.exec(host, *argv, **kwargs)

    def ns_path(self, host: str) -> str:
        return self.lab.ns(host)


class ScaleOut:
    """N NF instances behind an ECMP router; use as a context manager (every process,
    namespace and link is removed on exit, also after an error).

    `work`: per-packet rounds of CPU work in each instance (0 forwards only); `pin`: run
    instance i on core i mod cores, so each instance is one core's worth of NF; `driver`:
    the NFs' ports (packet, xdp or auto)."""

    def __init__(self, instances: int, work: int = 0, tag: str | None = None,
                 pin: bool = True, driver: str = "packet") -> None:
        if not 1 <= instances <= MAX_INSTANCES:
            raise TestbedError(f"instances must be 1..{MAX_INSTANCES}, got {instances}")
        self.n = instances
        self.work = work
        self.pin = pin
        self.driver = driver
        self.tag = tag or f"so{os.getpid() % 100000}"
        ids = range(1, instances + 1)
        self.lab = VethLab(self.tag, ["gen", "rtr", *(f"nf{i}" for i in ids), "sink"],
                           [("gen", "g0", "rtr", "r0"),
                            *(("rtr", f"r{i}", f"nf{i}", f"n{i}in") for i in ids),
                            *((f"nf{i}", f"n{i}out", "sink", f"s{i}") for i in ids)])
        self.nfs: list[NFProcess] = []
        self.gen: Pktgen | None = None
        self.gen_ports: PortTable | None = None
        self.cores: list[int] = []

    # ---- life cycle -------------------------------------------------------------------
    def __enter__(self) -> ScaleOut:
        self.lab.__enter__()
        try:
            self._route()
            self._start_nfs()
            self._start_generator()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self.gen is not None:
                self.gen.close()
            if self.gen_ports is not None:
                self.gen_ports.close()
            for nf in self.nfs:
                nf.close()
        finally:
            self.gen = self.gen_ports = None
            self.nfs = []
            self.lab.close()

    def _route(self) -> None:
        rtr = self.lab.ns("rtr")
        settings = ["net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1",
                    "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]
        run("ip", "netns", "exec", rtr, "sysctl", "-q", "-w", *settings)
        # The seed sysctl exists from Linux 6.11; older kernels pick a random seed per boot.
        run("ip", "netns", "exec", rtr, "sysctl", "-q", "-w",
            f"net.ipv4.fib_multipath_hash_seed={HASH_SEED}", check=False)
        run("ip", "-n", rtr, "addr", "add", "10.0.0.1/24", "dev", "r0")
        hops = []
        for i in range(1, self.n + 1):
            run("ip", "-n", rtr, "addr", "add", f"10.0.{i}.1/24", "dev", f"r{i}")
            # The NF answers no ARP: the router knows each NF host's MAC statically.
            run("ip", "-n", rtr, "neigh", "replace", hop_addr(i), "lladdr",
                link_mac(self.lab.ns(f"nf{i}"), f"n{i}in"), "dev", f"r{i}", "nud", "permanent")
            hops += ["nexthop", "via", hop_addr(i), "dev", f"r{i}"]
        run("ip", "-n", rtr, "route", "add", SERVICE, *hops)

    def _start_nfs(self) -> None:
        hosts = _Hosts(self.lab)
        allowed = sorted(os.sched_getaffinity(0))
        for i in range(1, self.n + 1):
            argv = [sys.executable, str(EXAMPLE), "--port", f"0={self.driver}:n{i}in",
                    "--port", f"1={self.driver}:n{i}out", "--work", str(self.work)]
            if self.pin:
                core = allowed[(i - 1) % len(allowed)]
                self.cores.append(core)
                argv = ["taskset", "-c", str(core), *argv]
            self.nfs.append(NFProcess(hosts, f"nf{i}", argv))  # type: ignore[arg-type]

    def _start_generator(self) -> None:
        with netns(self.lab.ns("gen")):
            self.gen_ports = PortTable.from_specs(["0=packet:g0"])
        self.gen = Pktgen(self.gen_ports, output=lambda _text: None)
        router_mac = link_mac(self.lab.ns("rtr"), "r0")
        for command in (f"set 0 dst mac {router_mac}", "set 0 proto udp",
                        f"set 0 src ip {GEN_ADDR}/24", f"set 0 dst ip {SERVICE_ADDR}",
                        f"range 0 dst mac start {router_mac}",
                        "range 0 proto udp",
                        *(f"range 0 {name} {what} {value}" for name, value in
                          (("src ip", GEN_ADDR), ("dst ip", SERVICE_ADDR))
                          for what in ("start", "min", "max")),
                        "range 0 src ip inc 0.0.0.0", "range 0 dst ip inc 0.0.0.0",
                        *(f"range 0 dst port {what} {DPORT}" for what in ("start", "min", "max")),
                        "range 0 dst port inc 0",
                        *(f"range 0 size {what} 64" for what in ("start", "min", "max")),
                        "range 0 size inc 0", "enable 0 range"):
            self.gen.execute(command)

    # ---- traffic ----------------------------------------------------------------------
    def offer(self, flows: int, pps: int, count: int = 0) -> None:
        """Start sending: `flows` UDP source ports in turn (one flow each), at `pps`;
        `count` frames in all (0: until `stop()`)."""
        if not 1 <= flows <= 65536 - FIRST_SPORT:
            raise TestbedError(f"flows must be 1..{65536 - FIRST_SPORT}, got {flows}")
        gen = self.gen
        gen.clear()
        for command in (f"range 0 src port start {FIRST_SPORT}",
                        f"range 0 src port min {FIRST_SPORT}",
                        f"range 0 src port max {FIRST_SPORT + flows - 1}",
                        "range 0 src port inc 1", f"set 0 pps {pps}", f"set 0 count {count}"):
            gen.execute(command)
        gen.start([0])

    def stop(self) -> None:
        self.gen.stop([0])

    def snapshot(self) -> Snapshot:
        lab = self.lab
        ids = range(1, self.n + 1)
        spread = [link_counters(lab.ns(f"nf{i}"), f"n{i}in") for i in ids]
        out = [link_counters(lab.ns(f"nf{i}"), f"n{i}out")["tx"] for i in ids]
        sink = [link_counters(lab.ns("sink"), f"s{i}")["rx"] for i in ids]
        return Snapshot(time.monotonic(), link_counters(lab.ns("gen"), "g0")["tx"],
                        link_counters(lab.ns("rtr"), "r0")["rx"], [s["rx"] for s in spread],
                        out, sink, [process_cpu(nf.proc.pid) for nf in self.nfs])

    def settle(self, timeout: float = 30.0, quiet: float = 2.0) -> Snapshot:
        """Wait until the generator is done and every frame it sent is accounted for at
        each hop (the NFs' own counts included: an NF still compiling its kernels holds
        frames in its ring), or nothing moved for `quiet` seconds; the last snapshot."""
        self.gen.wait_done(timeout)
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            now = self.snapshot()
            received = self.nf_received()
            if (sum(now.spread) == now.sent and received == now.spread
                    and now.nf_out == now.spread and now.sink == now.spread):
                return now
            key = (now.sent, now.spread, received, now.nf_out, now.sink)
            if key != last:
                last, since = key, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return now
            time.sleep(0.1)
        return self.snapshot()

    def measure(self, flows: int, pps: int, seconds: float, warmup: float = 1.0) -> Load:
        """Offer `pps` over `flows` flows, and after `warmup` measure for `seconds` what
        each instance carried to the sink."""
        self.offer(flows, pps)
        try:
            time.sleep(warmup)
            first = self.snapshot()
            time.sleep(seconds)
            d = self.snapshot().minus(first)
        finally:
            self.stop()
        spread = sum(d.spread) or 1
        return Load(self.n, d.sent / d.when, sum(d.sink) / d.when,
                    [x / d.when for x in d.sink], [x / spread for x in d.spread],
                    [x / d.when for x in d.spread], [x / d.when for x in d.cpu])

    def nf_received(self) -> list[int]:
        """Packets each NF's graph took in (its own count)."""
        return [int(nf.stats()["conservation"]["entered"]["received"]) for nf in self.nfs]
