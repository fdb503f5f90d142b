"""An AF_PACKET port receives only its own interface's frames, also while it is being
opened: frames on the host's other interfaces (another port's traffic, the statistics
server's loopback connections) must never land in its receive ring."""

from __future__ import annotations

import os
import threading

import pytest

from pktflow.packet import Pool
from pktflow.testbed.net import VethLab, numbered_frames, receive_frames, send_frames

pytestmark = pytest.mark.root
OPENS = 30


def test_frames_of_other_interfaces_never_reach_a_port_being_opened():
    tag = f"ab{os.getpid() % 100000}"
    links = [("a", "qa0", "b", "qb0"), ("a", "qa1", "b", "qb1")]
    pool = Pool(buffers=4096, name="afpacket-bind-test")
    with VethLab(tag, ["a", "b"], links) as lab:
        flood = lab.open_port("b", "packet:qb1", pool, 1)
        stop = threading.Event()
        flooded = [0]

        def keep_sending() -> None:
            frames = numbered_frames(256, 7, size=64)
            while not stop.is_set():
                flooded[0] += send_frames(flood, frames)

        sender = threading.Thread(target=keep_sending, daemon=True)
        sender.start()
        strays = []
        try:
            for _ in range(OPENS):
                port = lab.open_port("a", "packet:qa0", pool, 0)
                try:
                    # Nothing is ever sent on qa0: whatever arrives came from qa1.
                    strays += receive_frames(port, 1, timeout=0.02)
                finally:
                    port.close()
        finally:
            stop.set()
            sender.join(10)
            flood.close()
    assert flooded[0] > 1000, "the other interface carried too little traffic to test"
    assert strays == [], f"{len(strays)} frames of another interface received"
