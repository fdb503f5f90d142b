"""`pktflow testbed tutorial nat`: the tutorial's NAT scenario on the namespace testbed.

The NAT (`examples/nat/nat.py`) runs as its own process on the target host, its private
side on port 0 and its public side on port 1; the generator's two ports on the generator
host are the clients (port 0) and the server (port 1). nat.pg and nat.json are written for
the generator's real MACs, as NFF-Go's genscripts wrote them for a target. The judge is
`pktflow tutorial nat`'s: the same traffic comes back on both ports, then probes on the
wire check ARP and echo answers and translation field by field. What the in-process
scenario reads from the NAT's tables (its mappings) is checked on the wire here: each
client sends once more and must leave with the public port it got during the traffic.
"""

from __future__ import annotations

import json as jsonlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pktflow.packet.addr import MACAddr
from pktflow.packet.build import frame
from pktflow.packet.pool import default_pool
from pktflow.pktgen import Pktgen
from pktflow.pktgen.config import MAX_BURST
from pktflow.ports import PortTable
from pktflow.ports.linux import netns
from pktflow.testbed.topo import Testbed
from pktflow.testbed.tutorial import DEFAULT_RING, RING_SHARE, TARGET, NFProcess
from pktflow.tutorial.nat import (
    DEFAULT_PACKETS,
    EXAMPLE,
    Check,
    NatResult,
    exchange_frames,
    judge_traffic,
    nat_json,
    probe_nat,
    view_frame,
)
from pktflow.tutorial.runner import Offer, StepError
from pktflow.tutorial.scripts import script_text

NAT_PPS = 20_000  # per generator port: paced, so what is judged is the NAT, not a ring
SETTLE_TIMEOUT = 30.0
NAT_START_TIMEOUT = 300.0  # the first run on a machine compiles both NAT kernels
STALL = 5.0  # no counter moved for this long: what is missing is lost
CLIENTS = range(2, 13)  # nat.pg's clients 192.168.1.2 .. 12, source port 1234
FIRST_PUBLIC_PORT = 1024  # the NAT numbers each protocol's public ports upward from here


class FreshNat:
    """The public ports a NAT that has just started gives its first UDP and ICMP
    mappings: the probes' expectations when the NAT's tables are in another process."""

    def public_port(self, proto: str, address: str, port: int) -> int | None:
        return FIRST_PUBLIC_PORT if proto in ("udp", "icmp") else None


def nat_offer(packets: int, ring: int) -> Offer:
    """Per-port traffic: `packets` at NAT_PPS, no more than RING_SHARE of a receive ring,
    so a NAT starved of CPU for a while still loses nothing."""
    limit = int(ring * RING_SHARE)
    if packets <= limit:
        return Offer(packets, NAT_PPS, MAX_BURST)
    return Offer(limit, NAT_PPS, MAX_BURST,
                 f"at most {RING_SHARE:.0%} of the NAT's {ring}-frame receive ring")


def _mapping_check(gen: PortTable, nf_macs: tuple[int, int], gen_macs: tuple[int, int]
                   ) -> Check:
    """Each client sends one more TCP packet; the translated copies must carry the public
    ports 1024.. in the clients' order (the mappings the traffic made, kept per client)."""
    frames = [frame(eth={"dst": nf_macs[0], "src": gen_macs[0]},
                    ipv4={"src": f"192.168.1.{h}", "dst": "10.1.1.2"},
                    tcp={"src_port": 1234, "dst_port": 80}, payload=bytes([h]) * 8)
              for h in CLIENTS]
    got = exchange_frames(gen[0], frames, gen[1], len(frames), default_pool())
    seen = {}
    for raw in got:
        pkt = view_frame(raw)
        if pkt.has_tcp and pkt.ipv4.src == "10.1.1.1" and raw[-8:] == raw[-1:] * 8:
            seen[raw[-1]] = pkt.tcp.src_port
    want = {h: FIRST_PUBLIC_PORT + h - CLIENTS[0] for h in CLIENTS}
    return Check(f"{len(want)} clients mapped to public ports {FIRST_PUBLIC_PORT}-"
                 f"{FIRST_PUBLIC_PORT + len(want) - 1} in order (seen on the wire)",
                 seen == want, f"{len(seen)} of {len(want)} translated as expected"
                 if seen != want else f"{len(seen)} TCP mappings")


def _settle(gen: Pktgen) -> bool:
    """Wait until each port received what the other sent; False if it stalled."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        s = gen.stats()
        now = (s[0]["rx_packets"], s[1]["rx_packets"])
        if now == (s[1]["tx_packets"], s[0]["tx_packets"]):
            return True
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > STALL:
            return False
        time.sleep(0.01)
    return False


def run_nat_testbed(tb: Testbed, packets: int = DEFAULT_PACKETS, driver: str = "packet",
                    json: bool = False, output: Callable[[str], None] = print) -> NatResult:
    """Run the NAT scenario on `tb` (a `Testbed.tutorial()`); print the table (or JSON
    with `json`) through `output` and return the result. A NAT that cannot start raises
    StepError with its own last words."""
    began = time.monotonic()
    with netns(tb.ns_path("gen")):
        gen_ports = PortTable.from_specs([f"{p}={driver}:{tb.intf('gen', p)}" for p in (0, 1)])
    nf = gen = None
    try:
        offer = nat_offer(packets, gen_ports[0].queue_capacity or DEFAULT_RING)
        result = NatResult(offer.count)
        macs = [gen_ports[p].mac for p in (0, 1)]
        with tempfile.TemporaryDirectory(prefix="pktflow-testbed-nat-") as tmp:
            config = Path(tmp) / "nat.json"
            config.write_text(nat_json(*macs))
            script = Path(tmp) / "nat.pg"
            script.write_text(script_text("nat.pg", macs[0], macs[1], TARGET))
            nf = NFProcess(tb, "tgt", [sys.executable, str(EXAMPLE), "--nat", str(config),
                                       *(a for p in (0, 1) for a in
                                         ("--port", f"{p}={driver}:{tb.intf('tgt', p)}"))],
                            start_timeout=NAT_START_TIMEOUT)
            gen = Pktgen(gen_ports, output=lambda _text: None)
            errors = gen.load(script)
        if errors:
            raise StepError("; ".join(errors))
        ports = nf.stats()["ports"]
        nf_macs = tuple(int(MACAddr(ports[str(p)]["mac"])) for p in (0, 1))
        gen_macs = (int(macs[0]), int(macs[1]))
        for command in (f"set all count {offer.count}", f"set all rate {offer.rate!r}",
                        f"set all burst {offer.burst}"):
            gen.execute(command)
        gen.execute("start 0")
        # The server answers once the first client's mapping (public port 1024) exists.
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while gen.stats()[1]["rx_packets"] == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        gen.execute("start 1")
        gen.wait_done(SETTLE_TIMEOUT)
        settled = _settle(gen)
        judge_traffic(result, gen.stats())
        if not settled:
            result.checks.append(Check("drained", False, "packets lost or still in flight "
                                       f"after {SETTLE_TIMEOUT:g} s"))
        gen.close()  # the probes below read the generator's ports themselves
        gen = None
        result.checks.append(_mapping_check(gen_ports, nf_macs, gen_macs))
        result.checks.extend(probe_nat(gen_ports, nf_macs, gen_macs, FreshNat(), default_pool()))
        final = nf.finish()
        result.checks.append(Check("NF accounting adds up (every packet in one counter)",
                                   bool(final["balanced"]),
                                   f"{final['total_entered']} in, {final['total_ended']} "
                                   "ended"))
        result.nat_counters = {"ended": dict(final["ended"])}
        result.notes.append(f"NAT on tgt ({driver}:{tb.intf('tgt', 0)} private, "
                            f"{driver}:{tb.intf('tgt', 1)} public), generator on gen")
        result.notes.append(offer.describe("all") + ", on each generator port")
    finally:
        if gen is not None:
            gen.close()
        if nf is not None:
            nf.close()
        gen_ports.close()
    result.seconds = time.monotonic() - began
    output(jsonlib.dumps(result.to_dict(), indent=2) if json else result.table())
    return result



def nat_for_cli(tb: Testbed, packets: int | None, driver: str, as_json: bool,
                print_line: Callable[[str], None]) -> tuple[bool, dict]:
    """`pktflow testbed tutorial nat`: run the scenario, print its table (not with
    `as_json`) or why it could not run; returns (passed, its JSON document)."""
    from pktflow.ports.base import PortError

    try:
        result = run_nat_testbed(tb, packets or DEFAULT_PACKETS, driver, json=False,
                                 output=(lambda _text: None) if as_json else print_line)
    except (StepError, PortError, OSError) as e:
        print_line(f"nat: FAIL: {type(e).__name__}: {e}")
        return False, {"scenario": "nat", "passed": False, "error": f"{e}"}
    return result.passed, result.to_dict()
