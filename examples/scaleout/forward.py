"""One NF instance of a scaled-out deployment: receive on port 0, do `--work` rounds of
CPU work per packet, send on port 1. Many instances run behind a spreader (an ECMP router,
RSS) that hashes each flow to one of them; see docs/scale-out.md.

    python examples/scaleout/forward.py --port 0=packet:eth0 --port 1=packet:eth1 --work 2000
"""

from __future__ import annotations

import argparse

import numpy as np

from pktflow import flow


def spin(seed, rounds):
    """A 32-bit xorshift chain: each round needs the last, so the work cannot be skipped."""
    x = (seed & 0xFFFFFFFF) | 1
    for _ in range(rounds):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
    return x


def work(pkts, mask, ctx):
    """ctx[1] rounds per packet (the cost of a real NF's per-packet work); the result
    goes to ctx[0], so it is really computed."""
    x = ctx[0]
    for i in range(len(pkts)):
        if mask[i]:
            x = spin(x + i, ctx[1])
    ctx[0] = x


def build(nf: flow.System, args: argparse.Namespace) -> None:
    packets = nf.receiver(0)
    nf.vector_handler(packets, work, ctx=np.array([0, args.work], dtype=np.int64))
    nf.sender(packets, 1)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work", type=int, default=0, metavar="ROUNDS",
                        help="xorshift rounds per packet (default 0: plain forwarding)")


if __name__ == "__main__":
    flow.main(build, extra_arguments=_arguments)
