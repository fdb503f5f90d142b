"""Step 2: receive on port 0 and send everything back on port 0.

    python examples/tutorial/step02.py --port 0=mem:p0 --port 1=mem:p1 --target direct
"""

from common import init_common_state, modify_packet, run


def build(nf, args):
    init_common_state(nf, args)
    first_flow = nf.receiver(0)
    nf.handler(first_flow, modify_packet[0])
    nf.sender(first_flow, 0)


if __name__ == "__main__":
    run(build, __doc__)
