"""Step 6: packets that rules1.conf accepts go back on port 0; rejected ones are dropped.

    python examples/tutorial/step06.py --port 0=mem:p0 --port 1=mem:p1 --target direct
"""

from common import init_common_state, modify_packet, rules_file, run

from pktflow.acl import L3Rules


def build(nf, args):
    init_common_state(nf, args)
    rules = L3Rules.load(rules_file(args, "rules1.conf"))

    def accepted(pkt):
        return rules.permit(pkt)

    first_flow = nf.receiver(0)
    second_flow = nf.separator(first_flow, accepted)
    nf.stopper(second_flow)
    nf.handler(first_flow, modify_packet[0])
    nf.sender(first_flow, 0)
    return rules


if __name__ == "__main__":
    run(build, __doc__)
