"""Step 11: as step 10, and the vector handler also does heavy CPU work, so the scheduler
gives it more cores (clones) than in step 10.

    python examples/tutorial/step11.py --port 0=mem:p0 --port 1=mem:p1 --target direct
"""

import numpy as np
from common import init_common_state, modify_packet, rules_file, run

from pktflow.acl import L3Rules

FLOWS = 3  # flow 0 is dropped, flow i > 0 leaves on port i - 1
TUNNEL_SRC, TUNNEL_DST, IPIP = "111.22.3.0", "3.22.111.0", 4
ROUNDS = 20_000_000  # xorshift rounds per vector: tens of milliseconds of real work


def heavy_code(seed, rounds):
    """Step a 32-bit xorshift generator: each round needs the last, so no compiler can
    skip or shorten the loop."""
    x = (seed & 0xFFFFFFFF) | 1
    for _ in range(rounds):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
    return x


def encapsulate_and_work(pkts, mask, ctx):
    """Step 10's tunnel, then the heavy work; its result goes to this clone's context, so
    it is really computed."""
    for i in range(len(pkts)):
        if mask[i]:
            pkts[i].push_ipv4(TUNNEL_SRC, TUNNEL_DST, IPIP)
    ctx[0] = heavy_code(ctx[0] + len(pkts), ROUNDS)


def build(nf, args):
    init_common_state(nf, args)
    rules = L3Rules.load(rules_file(args, "rules2.conf")).watch()

    def by_rules(pkt):
        return rules.output(pkt)

    first_flow = nf.receiver(0)
    output_flows = nf.splitter(first_flow, by_rules, FLOWS)
    nf.stopper(output_flows[0])
    nf.vector_handler(output_flows[1], encapsulate_and_work, ctx=np.zeros(1, np.int64))
    for i in range(1, FLOWS):
        nf.handler(output_flows[i], modify_packet[i - 1])
        nf.sender(output_flows[i], i - 1)
    return rules


if __name__ == "__main__":
    run(build, __doc__)
