"""Step 4: receive on port 0; TCP packets to port 53 go back on port 1, the rest on 0.

    python examples/tutorial/step04.py --port 0=mem:p0 --port 1=mem:p1 --target direct
"""

from common import init_common_state, modify_packet, run


def not_dns(pkt):
    """True keeps a packet in the first flow; TCP to port 53 goes to the second."""
    return not (pkt.has_tcp and pkt.tcp.dst_port == 53)


def build(nf, args):
    init_common_state(nf, args)
    first_flow = nf.receiver(0)
    second_flow = nf.separator(first_flow, not_dns)
    nf.handler(first_flow, modify_packet[0])
    nf.handler(second_flow, modify_packet[1])
    nf.sender(first_flow, 0)
    nf.sender(second_flow, 1)


if __name__ == "__main__":
    run(build, __doc__)
