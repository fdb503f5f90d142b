"""Step 7: as step 6, and edits of rules1.conf take effect while the NF runs.

    python examples/tutorial/step07.py --port 0=mem:p0 --port 1=mem:p1 --target direct
"""

from common import init_common_state, modify_packet, rules_file, run

from pktflow.acl import L3Rules


def build(nf, args):
    init_common_state(nf, args)
    # watch(): a changed file is loaded within a fraction of a second and swapped in
    # between two batches; a broken edit is reported and the old rules stay.
    rules = L3Rules.load(rules_file(args, "rules1.conf")).watch()

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
