"""Zero-copy transmit on AF_PACKET (`Port.lend_tx` / `commit_tx`): the generator writes
frames straight into the TX ring. The wire must see exactly what the copying path sends,
counters must add up, the ring wraps, and a full ring is backpressure, never a loss."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from pktflow.packet import Pool
from pktflow.packet import meta as M
from pktflow.pktgen import Pktgen
from pktflow.ports import PortError, PortTable
from pktflow.ports.afpacket import TX_FRAMES
from pktflow.testbed.net import VethLab, leftovers, receive_frames

pytestmark = pytest.mark.root
TAG = f"zc{os.getpid() % 100000}"
# Steps source port and IP, so every frame differs and order and checksums show.
RANGE = ["range 0 src port start 1000", "range 0 src port inc 1", "range 0 src port min 1000",
         "range 0 src port max 5000", "range 0 src ip start 10.0.0.1",
         "range 0 src ip inc 0.0.0.1", "range 0 src ip min 10.0.0.1",
         "range 0 src ip max 10.0.0.200", "range 0 size start 64", "range 0 size inc 7",
         "range 0 size min 64", "range 0 size max 1518", "enable 0 range"]


@pytest.fixture
def lab():
    with VethLab(TAG, ["a", "b"], [("a", "za0", "b", "zb0")]) as lab:
        yield lab
    assert not any(n.startswith(f"pft-{TAG}-") for n in leftovers()["namespaces"])


@pytest.fixture
def pool():
    return Pool(buffers=8192, name="lend-test")


def _generate(lab, pool, count: int, lend: bool, rx_timeout: float = 60.0):
    """Send `count` range-mode frames from a to b; returns (frames b got, generator stats,
    a's port stats)."""
    a = lab.open_port("a", "packet:za0", pool, 0)
    b = lab.open_port("b", "packet:zb0", pool, 1)
    if not lend:
        a.lends_tx = False  # the capability is a flag: without it the generator copies
    try:
        with Pktgen(PortTable([a]), pool=pool, output=lambda *_: None) as gen:
            for line in RANGE + [f"set 0 count {count}"]:
                gen.execute(line)
            gen.start([0])
            got = []
            deadline = time.monotonic() + rx_timeout
            while len(got) < count and time.monotonic() < deadline:
                got += receive_frames(b, count - len(got), timeout=0.2)
            assert gen.wait_done(5)
            stats = gen.stats()[0]
        return got, stats, a.stats.as_dict()
    finally:
        a.close()
        b.close()


def test_frames_in_place_are_byte_identical_to_the_copying_path(lab, pool):
    count = 3 * TX_FRAMES + 123  # wraps the ring three times
    lent, lent_stats, lent_port = _generate(lab, pool, count, lend=True)
    copied, copied_stats, _ = _generate(lab, pool, count, lend=False)
    assert len(lent) == len(copied) == count
    assert lent == copied
    assert len({f[26:30] + f[34:36] for f in lent}) > 100  # the fields really stepped
    total = sum(map(len, lent))
    assert (lent_stats["tx_packets"], lent_stats["tx_bytes"]) == (count, total)
    assert (lent_port["tx_packets"], lent_port["tx_bytes"]) == (count, total)
    assert lent_port["tx_dropped"] == lent_port["tx_errors"] == 0
    assert (copied_stats["tx_packets"], copied_stats["tx_bytes"]) == (count, total)


def test_lease_wraps_around_the_ring_in_order(lab, pool):
    a = lab.open_port("a", "packet:za0", pool, 0)
    b = lab.open_port("b", "packet:zb0", pool, 1)
    try:
        sent = []
        for round_ in range(3):
            lease = a.lend_tx(700)
            assert lease.n == 700
            for k in range(lease.n):
                s = int(lease.idx[k])
                frame = bytes.fromhex("0200000000bb0200000000aa88b5") + \
                    (round_ * 1000 + k).to_bytes(4, "big") + bytes(42)
                at = lease.meta[s, M.START]
                lease.data[s, at:at + len(frame)] = list(frame)
                lease.meta[s, M.LEN] = len(frame)
                sent.append(frame)
            if round_ == 1:
                # 700..1399 crosses the end of the ring: slots go on from 0.
                assert list(lease.idx[:lease.n][TX_FRAMES - 700 - 1:TX_FRAMES - 700 + 1]) == [
                    TX_FRAMES - 1, 0]
            assert a.commit_tx(lease, lease.n) == (700, 700 * 60)
        assert receive_frames(b, len(sent)) == sent
        assert a.stats.tx_packets == 2100
    finally:
        a.close()
        b.close()


def test_a_refused_frame_is_counted_and_the_rest_still_go_out_in_order(lab, pool):
    a = lab.open_port("a", "packet:za0", pool, 0)
    b = lab.open_port("b", "packet:zb0", pool, 1)
    try:
        lease = a.lend_tx(5)
        frames = []
        for k in range(5):
            s = int(lease.idx[k])
            frame = bytes.fromhex("0200000000bb0200000000aa88b5") + bytes([k]) * 50
            at = lease.meta[s, M.START]
            lease.data[s, at:at + len(frame)] = list(frame)
            lease.meta[s, M.LEN] = len(frame)
            frames.append(frame)
        lease.meta[int(lease.idx[1]), M.LEN] = 1600  # longer than the MTU allows
        assert a.commit_tx(lease, 5) == (4, 4 * 64)
        assert receive_frames(b, 4) == [frames[0]] + frames[2:]
        assert (a.stats.tx_packets, a.stats.tx_errors) == (4, 1)
        # The slot the refused frame left is lent again next: nothing leaks.
        assert a.lend_tx(TX_FRAMES).n == TX_FRAMES
        with pytest.raises(PortError, match="last lease"):
            a.commit_tx(lease, 6)
    finally:
        a.close()
        b.close()


def test_full_ring_is_backpressure_and_nothing_is_lost(lab, pool):
    """With the interface down the kernel takes no frame: the generator fills the ring once,
    then waits (counted in tx_ring_full); once up, every frame arrives, none dropped."""
    a = lab.open_port("a", "packet:za0", pool, 0)
    b = lab.open_port("b", "packet:zb0", pool, 1)
    count = 2 * TX_FRAMES + 10
    try:
        with Pktgen(PortTable([a]), pool=pool, output=lambda *_: None) as gen:
            for line in RANGE + [f"set 0 count {count}"]:
                gen.execute(line)
            subprocess.run(["ip", "-n", lab.ns("a"), "link", "set", "za0", "down"], check=True)
            gen.start([0])
            deadline = time.monotonic() + 5
            while gen.stats()[0]["tx_ring_full"] < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            stats = gen.stats()[0]
            assert stats["tx_ring_full"] >= 3 and stats["sending"]
            assert stats["tx_generated"] == TX_FRAMES  # one ring's worth, then it waited
            subprocess.run(["ip", "-n", lab.ns("a"), "link", "set", "za0", "up"], check=True)
            lab.wait_carrier()
            assert gen.wait_done(10)
            got = []
            deadline = time.monotonic() + 10
            while len(got) < count and time.monotonic() < deadline:
                got += receive_frames(b, count - len(got), timeout=0.2)
            stats = gen.stats()[0]
        assert len(got) == count
        ports = {f[34:36] for f in got}
        assert len(ports) == count  # every one a different frame: none lost, none twice
        assert stats["tx_packets"] == stats["tx_generated"] == count
        assert a.stats.tx_dropped == a.stats.tx_errors == 0
    finally:
        a.close()
        b.close()


def test_ports_without_the_capability_say_so():
    ports = PortTable.from_specs(["0=mem:zc-none"])
    try:
        port = ports[0]
        assert port.lends_tx is False
        with pytest.raises(PortError, match="cannot lend transmit slots"):
            port.lend_tx(1)
    finally:
        ports.close()
