"""Step 9: as step 8, and flow 1 is also tunnelled in a new outer IPv4 header (IP-in-IP).

    python examples/tutorial/step09.py --port 0=mem:p0 --port 1=mem:p1 --target direct
"""

from common import init_common_state, modify_packet, rules_file, run

from pktflow.acl import L3Rules

FLOWS = 3  # flow 0 is dropped, flow i > 0 leaves on port i - 1
TUNNEL_SRC, TUNNEL_DST, IPIP = "111.22.3.0", "3.22.111.0", 4


def encapsulate(pkt):
    """Prepend an outer IPv4 header; push_ipv4 fills its length, TTL and checksum."""
    pkt.push_ipv4(TUNNEL_SRC, TUNNEL_DST, IPIP)


def build(nf, args):
    init_common_state(nf, args)
    rules = L3Rules.load(rules_file(args, "rules2.conf")).watch()

    def by_rules(pkt):
        return rules.output(pkt)

    first_flow = nf.receiver(0)
    output_flows = nf.splitter(first_flow, by_rules, FLOWS)
    nf.stopper(output_flows[0])
    nf.handler(output_flows[1], encapsulate)
    for i in range(1, FLOWS):
        nf.handler(output_flows[i], modify_packet[i - 1])
        nf.sender(output_flows[i], i - 1)
    return rules


if __name__ == "__main__":
    run(build, __doc__)
