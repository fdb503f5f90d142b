"""The NAT scenario of the tutorial: the NAT example and the generator in one process.

The generator's ports 0 and 1 are wired to the NAT's ports 0 (private) and 1 (public) by
memory ports. nat.pg (from the target table, as NFF-Go's genscripts wrote it) makes port 0
eleven clients 192.168.1.2..12, source port 1234, talking to the server 10.1.1.2, and port
1 that server sending to the NAT address 10.1.1.1, port 1024. After `start 0` and
`start 1` the generator must count the same traffic received on both ports: translation
works both ways. Probes then check ARP and ICMP echo answers and one translated UDP and
ICMP exchange field by field, with checksums.

    run_nat(packets=20000)        # prints the table, returns a NatResult
    python -m pktflow.tutorial.nat --packets 20000 [--json] [--write-files DIR]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json as jsonlib
import os
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pktflow.packet.addr import MACAddr
from pktflow.packet.build import frame, put
from pktflow.packet.codegen import import_file
from pktflow.packet.pool import Batch, Pool
from pktflow.ports.base import Port, PortTable
from pktflow.tutorial.scripts import script_text
from pktflow.tutorial.targets import DIRECT, target_macs

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "nat" / "nat.py"
TARGETS = REPO / "examples" / "tutorial" / "config.json"
DEFAULT_PACKETS = 20_000
FRAME_BYTES = 1496  # Pktgen size 1500 counts the 4-byte FCS
RING = 16384  # as many packets as the shared pool has buffers: a wire never overflows
PROBE_WAIT_S = 2.0
GRAPH = ("receive 0 -> translate out -> send 1 | receive 1 -> translate in -> send 0; "
         "ARP/echo answered on both")

_runs = itertools.count()


def nat_json(mac0: MACAddr, mac1: MACAddr) -> str:
    """nat.json as NFF-Go's genscripts wrote it for the generator host whose ports 0 and 1
    have these MACs (each NAT port's next hop)."""
    doc = {
        "private-port": {"index": 0, "dst_mac": str(mac0), "subnet": "192.168.1.1/24"},
        "public-port": {"index": 1, "dst_mac": str(mac1), "subnet": "10.1.1.1"},
    }
    return jsonlib.dumps(doc, indent=4) + "\n"


def write_nat_files(outdir: str | Path, targets: str | Path = TARGETS,
                    target: str = DIRECT) -> list[Path]:
    """Write nat.pg and nat.json for `target` of the target table into `outdir`."""
    mac0, mac1 = target_macs(targets, target)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    pg, js = outdir / "nat.pg", outdir / "nat.json"
    pg.write_text(script_text("nat.pg", mac0, mac1, target))
    js.write_text(nat_json(mac0, mac1))
    return [pg, js]


def load_example() -> types.ModuleType:
    """The NAT example program (examples/nat/nat.py) as a module, loaded once."""
    return import_file("pktflow_example_nat", EXAMPLE)


@dataclass
class PortRow:
    """One generator port: what it sent, what came back, and what should have."""

    port: int
    side: str
    tx_packets: int
    tx_bytes: int
    rx_packets: int
    rx_bytes: int
    expected_packets: int
    expected_bytes: int

    @property
    def ok(self) -> bool:
        return (self.rx_packets, self.rx_bytes) == (self.expected_packets,
                                                    self.expected_bytes)


@dataclass
class Check:
    """One verified fact beyond the counters (a probe reply, the mappings, accounting)."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class NatResult:
    """What run_nat saw: per-port counters, checks, the NAT's own counters."""

    packets: int
    ports: list[PortRow] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    nat_counters: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # where it ran, what was offered

    @property
    def passed(self) -> bool:
        return bool(self.ports) and all(r.ok for r in self.ports) and all(
            c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {
            "scenario": "nat", "packets": self.packets, "passed": self.passed,
            "seconds": round(self.seconds, 2),
            "ports": [{**asdict(r), "ok": r.ok} for r in self.ports],
            "checks": [asdict(c) for c in self.checks],
            "nat": self.nat_counters, "notes": self.notes,
        }

    def table(self) -> str:
        """The result as plain text, laid out like the tutorial steps' tables."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for name in ("port", "side", "tx pkts", "tx bytes", "rx pkts", "rx bytes",
                     "rx/tx other", "expected rx", "result"):
            table.add_column(name, justify="left" if name in ("side", "result") else "right")
        for r in self.ports:
            ratio = r.rx_packets / r.expected_packets if r.expected_packets else 0.0
            table.add_row(str(r.port), r.side, str(r.tx_packets), str(r.tx_bytes),
                          str(r.rx_packets), str(r.rx_bytes), f"{ratio:.4f}",
                          f"tx of port {1 - r.port}: {r.expected_packets}",
                          "PASS" if r.ok else "FAIL")
        console = Console(file=io.StringIO(), width=120, color_system=None)
        console.print(table)
        lines = [
            f"nat: {GRAPH}  {'PASS' if self.passed else 'FAIL'} ({self.seconds:.1f} s)",
            *(line.rstrip() for line in console.file.getvalue().rstrip("\n").splitlines()),
        ]
        for c in self.checks:
            detail = f": {c.detail}" if c.detail else ""
            lines.append(f"  {'PASS' if c.ok else 'FAIL'}  {c.name}{detail}")
        lines += [f"  note  {note}" for note in self.notes]
        lines.append(f"NAT scenario: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- probes


def exchange_frames(send_port: Port, frames: list[bytes], recv_port: Port, want: int,
              pool: Pool) -> list[bytes]:
    """Send `frames` out of `send_port` and collect up to `want` frames arriving on
    `recv_port` within PROBE_WAIT_S."""
    batch = pool.alloc(len(frames))
    for k, raw in enumerate(frames):
        pool.write(int(batch.idx[k]), raw)
    send_port.send(batch)
    got: list[bytes] = []
    rx = Batch(pool, 64)
    deadline = time.monotonic() + PROBE_WAIT_S
    while len(got) < want and time.monotonic() < deadline:
        rx.n = 0
        if recv_port.recv(rx, 64):
            got.extend(rx.frames())
            pool.free(rx)
        else:
            time.sleep(0.002)
    return got


def view_frame(raw: bytes) -> Any:
    """A parsed pktflow Packet of `raw` in a private one-buffer pool."""
    return put(Pool(buffers=1, name="probe"), 0, raw)


def probe_nat(gen: PortTable, nf_macs: tuple[int, int], gen_macs: tuple[int, int],
           nat: Any, pool: Pool) -> list[Check]:
    """ARP and echo answers on both NAT ports, and UDP and ICMP through the NAT."""
    checks = []
    sides = ((0, "192.168.1.1", "192.168.1.2"), (1, "10.1.1.1", "10.1.1.2"))
    for port, own, asker in sides:
        mine, theirs = gen_macs[port], nf_macs[port]
        req = frame(eth={"dst": "ff:ff:ff:ff:ff:ff", "src": mine},
                    arp={"op": 1, "sha": mine, "spa": asker, "tpa": own})
        got = exchange_frames(gen[port], [req], gen[port], 1, pool)
        ok = len(got) == 1
        if ok:
            a = view_frame(got[0])
            ok = (a.has_arp and a.arp.op == 2 and a.arp.sha == theirs and a.arp.spa == own
                  and a.arp.tha == mine and a.arp.tpa == asker and a.eth.dst == mine
                  and a.eth.src == theirs)
        checks.append(Check(f"ARP request for {own} answered on port {port}", ok))
        echo = frame(eth={"dst": theirs, "src": mine}, ipv4={"src": asker, "dst": own},
                     icmp={"type": 8, "id": 7, "seq": 1}, payload=b"pktflow")
        got = exchange_frames(gen[port], [echo], gen[port], 1, pool)
        ok = len(got) == 1
        if ok:
            e = view_frame(got[0])
            ok = (e.has_icmp and e.icmp.type == 0 and e.icmp.id == 7 and e.ipv4.src == own
                  and e.ipv4.dst == asker and e.eth.dst == mine and bool(e.checksums_ok())
                  and got[0].endswith(b"pktflow"))
        checks.append(Check(f"ICMP echo to {own} answered on port {port}", ok))

    # UDP through the NAT: out from a new client, and the server's answer back in.
    out = frame(eth={"dst": nf_macs[0], "src": gen_macs[0]},
                ipv4={"src": "192.168.1.20", "dst": "10.1.1.2"},
                udp={"src_port": 5000, "dst_port": 53}, payload=b"query")
    got = exchange_frames(gen[0], [out], gen[1], 1, pool)
    public = nat.public_port("udp", "192.168.1.20", 5000)
    ok = len(got) == 1 and public is not None
    if ok:
        u = view_frame(got[0])
        ok = (u.ipv4.src == "10.1.1.1" and u.ipv4.dst == "10.1.1.2"
              and u.udp.src_port == public and u.udp.dst_port == 53
              and u.eth.dst == gen_macs[1] and u.eth.src == nf_macs[1]
              and bool(u.checksums_ok()))
    checks.append(Check("UDP 192.168.1.20:5000 -> 10.1.1.2:53 leaves as "
                        f"10.1.1.1:{public}, checksums right", ok))
    back = frame(eth={"dst": nf_macs[1], "src": gen_macs[1]},
                 ipv4={"src": "10.1.1.2", "dst": "10.1.1.1"},
                 udp={"src_port": 53, "dst_port": public or 0}, payload=b"answer")
    got = exchange_frames(gen[1], [back], gen[0], 1, pool)
    ok = len(got) == 1
    if ok:
        u = view_frame(got[0])
        ok = (u.ipv4.dst == "192.168.1.20" and u.udp.dst_port == 5000
              and u.ipv4.src == "10.1.1.2" and u.eth.dst == gen_macs[0]
              and u.eth.src == nf_macs[0] and bool(u.checksums_ok()))
    checks.append(Check(f"its answer to 10.1.1.1:{public} reaches 192.168.1.20:5000, "
                        "checksums right", ok))

    # ICMP echo through the NAT: the identifier is the port.
    ping = frame(eth={"dst": nf_macs[0], "src": gen_macs[0]},
                 ipv4={"src": "192.168.1.21", "dst": "10.1.1.2"},
                 icmp={"type": 8, "id": 77, "seq": 3}, payload=b"ping")
    got = exchange_frames(gen[0], [ping], gen[1], 1, pool)
    ident = nat.public_port("icmp", "192.168.1.21", 77)
    ok = len(got) == 1 and ident is not None
    if ok:
        p = view_frame(got[0])
        ok = (p.ipv4.src == "10.1.1.1" and p.icmp.id == ident and p.icmp.type == 8
              and bool(p.checksums_ok()))
        pong = frame(eth={"dst": nf_macs[1], "src": gen_macs[1]},
                     ipv4={"src": "10.1.1.2", "dst": "10.1.1.1"},
                     icmp={"type": 0, "id": ident, "seq": 3}, payload=b"ping")
        got = exchange_frames(gen[1], [pong], gen[0], 1, pool)
        ok = ok and len(got) == 1
        if ok:
            r = view_frame(got[0])
            ok = (r.ipv4.dst == "192.168.1.21" and r.icmp.id == 77 and r.icmp.type == 0
                  and bool(r.checksums_ok()))
    checks.append(Check(f"ICMP echo 192.168.1.21 id 77 -> 10.1.1.2 goes out as id {ident} "
                        "and its reply comes back", ok))
    return checks


# --------------------------------------------------------------------------- the run


def judge_traffic(result: NatResult, stats: dict[int, dict[str, Any]]) -> None:
    """Add the generator's two ports (each port's reception against what the other sent)
    and the traffic checks to `result`; `stats` is the generator's `stats()`."""
    packets = result.packets
    for port, side in ((0, "private"), (1, "public")):
        s, other = stats[port], stats[1 - port]
        result.ports.append(PortRow(port, side, s["tx_packets"], s["tx_bytes"],
                                    s["rx_packets"], s["rx_bytes"],
                                    other["tx_packets"], other["tx_bytes"]))
    sent = [stats[p]["tx_packets"] for p in (0, 1)]
    result.checks.append(Check(
        "both ports sent their count of 1496-byte frames",
        sent == [packets, packets]
        and all(stats[p]["tx_bytes"] == packets * FRAME_BYTES for p in (0, 1)),
        f"{sent[0]} and {sent[1]}"))
    result.checks.append(Check(
        "same traffic received on port 0 and port 1",
        (stats[0]["rx_packets"], stats[0]["rx_bytes"])
        == (stats[1]["rx_packets"], stats[1]["rx_bytes"])))


def run_nat(packets: int = DEFAULT_PACKETS, json: bool = False,
            output: Callable[[str], None] = print, timeout: float = 60.0,
            script: str | Path | None = None) -> NatResult:
    """Run the NAT scenario with `packets` per generator port; print the table (or JSON
    with `json`) through `output` and return the result. `script` replaces the nat.pg
    generated from the target table."""
    from pktflow.flow import FlowConfig, System
    from pktflow.pktgen import Pktgen
    from pktflow.pktgen.commands import CommandError

    if isinstance(packets, bool) or not isinstance(packets, int) or packets < 1:
        raise ValueError(f"packets={packets!r}: expected a whole number >= 1")
    example = load_example()
    began = time.monotonic()
    gen_macs = target_macs(TARGETS, DIRECT)
    config = example.parse_config(jsonlib.loads(nat_json(*gen_macs)), "nat.json (direct)")
    tag = f"nat{os.getpid()}_{next(_runs)}"
    # The generator opens its wire ends first, with the target table's MACs.
    gen_ports = PortTable.from_specs(
        [f"{i}=mem:{tag}_{i},ring={RING},mac={gen_macs[i]}" for i in (0, 1)])
    nf = nat = gen = None
    result = NatResult(packets)
    try:
        nf = System(FlowConfig(), PortTable.from_specs(
            [f"{i}=mem:{tag}_{i},ring={RING}" for i in (0, 1)]))
        nat = example.build_nat(nf, config)
        nf.start()
        nf_macs = (int(nf.port_mac(0)), int(nf.port_mac(1)))
        gen = Pktgen(gen_ports, output=lambda _text: None)
        with tempfile.TemporaryDirectory(prefix="pktflow-nat-") as tmp:
            errors = gen.load(script or write_nat_files(tmp)[0])
        if errors:
            raise CommandError("; ".join(errors))
        gen.execute(f"set all count {packets}")
        deadline = time.monotonic() + timeout
        gen.execute("start 0")
        # The server answers once the first client's mapping (public port 1024) exists.
        while gen.stats()[1]["rx_packets"] == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        gen.execute("start 1")
        gen.wait_done(max(0.0, deadline - time.monotonic()))
        gen.wait_quiet(quiet=0.2, timeout=max(0.5, deadline - time.monotonic()))
        judge_traffic(result, gen.stats())
        gen.close()  # the probes below read the generator's ports themselves
        maps = [m for m in nat.mappings() if m.proto == "tcp"]
        clients = {(m.private_address, m.private_port): m.public_port for m in maps}
        want = {(f"192.168.1.{h}", 1234): 1024 + h - 2 for h in range(2, 13)}
        result.checks.append(Check("11 clients mapped to public ports 1024-1034 in order",
                                   clients == want, f"{len(clients)} TCP mappings"))
        result.checks.extend(probe_nat(gen_ports, nf_macs, gen_macs, nat, nf.pool))
        final = nf.stop()
        cons = final["conservation"]
        result.checks.append(Check("NF accounting adds up (every packet in one counter)",
                                   bool(cons["balanced"] and cons["exact"]),
                                   f"{cons['total_entered']} in, {cons['total_ended']} "
                                   "ended"))
        result.nat_counters = nat.counters()
    finally:
        if gen is not None:
            gen.close()
        if nat is not None:
            nat.close()
        if nf is not None:
            nf.close()
        gen_ports.close()
    result.seconds = time.monotonic() - began
    output(jsonlib.dumps(result.to_dict(), indent=2) if json else result.table())
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m pktflow.tutorial.nat`: run the scenario; 0 when it passes."""
    parser = argparse.ArgumentParser(description="Run the tutorial's NAT scenario.")
    parser.add_argument("--packets", type=int, default=DEFAULT_PACKETS,
                        help=f"packets per generator port (default {DEFAULT_PACKETS})")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--script", metavar="FILE",
                        help="a generator script to run instead of the generated nat.pg")
    parser.add_argument("--write-files", metavar="DIR",
                        help="only write nat.pg and nat.json for the direct target into DIR")
    args = parser.parse_args(argv)
    if args.write_files:
        for path in write_nat_files(args.write_files):
            print(path)
        return 0
    if args.packets < 1:
        parser.error("--packets must be at least 1")
    return 0 if run_nat(args.packets, json=args.json, script=args.script).passed else 1


if __name__ == "__main__":
    sys.exit(main())
