"""What every tutorial step shares: its command line, the target table, and the two
handlers that address a packet back to the generator (NFF-Go's common.go).

The target table (config.json) maps a host name, or the reserved word `direct`, to the
MAC addresses of the generator's ports 0 and 1. `direct` is the generator of
`pktflow tutorial`, wired to the NF by memory ports in the same process.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from pktflow import flow
from pktflow.acl import RuleError
from pktflow.packet.addr import MACAddr
from pktflow.tutorial.targets import TargetError, target_macs

HERE = Path(__file__).resolve().parent
log = logging.getLogger("pktflow.tutorial")

# Set by init_common_state() before the graph runs; the flow compiler reads them when it
# compiles the handlers, as the original's handlers read its package variables.
dst_mac0 = dst_mac1 = MACAddr(0)  # the generator's ports (from the target table)
src_mac0 = src_mac1 = MACAddr(0)  # this NF's own ports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every step takes on top of the flow system's (--port, --duration...)."""
    g = parser.add_argument_group("tutorial")
    g.add_argument("--target", default="direct",
                   help="host name in the target table, or direct (default)")
    g.add_argument("--targets", default=str(HERE / "config.json"), metavar="FILE",
                   help="target table: host name -> MACs of the generator's ports 0 and 1")
    g.add_argument("--rules", metavar="FILE",
                   help="rules file (steps 5 to 11; default: the step's own, beside it)")


def init_common_state(nf: flow.System, args: argparse.Namespace) -> None:
    """Learn the generator's MACs from the target table and this NF's from its ports."""
    global dst_mac0, dst_mac1, src_mac0, src_mac1
    dst_mac0, dst_mac1 = target_macs(args.targets, args.target)
    # A step that uses one port may run with one; the other MAC then stays unused.
    if 0 in nf.ports:
        src_mac0 = nf.port_mac(0)
    if 1 in nf.ports:
        src_mac1 = nf.port_mac(1)
    log.info("source MACs %s %s, destination MACs %s %s (target %s)",
             src_mac0, src_mac1, dst_mac0, dst_mac1, args.target)


def modify_packet0(pkt):
    """Address a packet leaving port 0: to the generator's port 0, from our port 0."""
    pkt.eth.dst = dst_mac0
    pkt.eth.src = src_mac0


def modify_packet1(pkt):
    """Address a packet leaving port 1: to the generator's port 1, from our port 1."""
    pkt.eth.dst = dst_mac1
    pkt.eth.src = src_mac1


modify_packet = [modify_packet0, modify_packet1]


def rules_file(args: argparse.Namespace, default: str) -> Path:
    """The rules file to use: --rules, else the step's default file beside the programs."""
    return Path(args.rules) if args.rules else HERE / default


def run(build: Callable[..., object], doc: str | None) -> None:
    """Run a step from the command line: flow options plus --target/--targets/--rules."""

    def checked_build(nf: flow.System, args: argparse.Namespace) -> object:
        try:
            return build(nf, args)
        except (TargetError, RuleError) as e:  # a bad table or rules file: say where
            raise flow.FlowError(str(e)) from None

    flow.main(checked_build, description=(doc or "").strip().splitlines()[0],
              extra_arguments=add_arguments)
