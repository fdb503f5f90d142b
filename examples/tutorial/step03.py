"""Step 3: receive on port 0; send 300 packets back on port 0, the next 300 on port 1.

    python examples/tutorial/step03.py --port 0=mem:p0 --port 1=mem:p1 --target direct
"""

from common import init_common_state, modify_packet, run


def build(nf, args):
    init_common_state(nf, args)
    first_flow = nf.receiver(0)
    second_flow = nf.partitioner(first_flow, 300, 300)
    nf.handler(first_flow, modify_packet[0])
    nf.handler(second_flow, modify_packet[1])
    nf.sender(first_flow, 0)
    nf.sender(second_flow, 1)


if __name__ == "__main__":
    run(build, __doc__)
