"""AF_PACKET ports on veth pairs inside namespaces the tests create: exact frames both
ways, VLAN tags, fanout, kernel drop counters, MAC and link state, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pktflow.packet import Batch, Pool
from pktflow.packet import meta as M
from pktflow.ports import PortError, PortSpecError, PortTable
from pktflow.ports.afpacket import PacketPort
from pktflow.ports.linux import netns
from pktflow.testbed.net import (
    VethLab,
    leftovers,
    numbered_frames,
    receive_frames,
    send_frames,
)

pytestmark = pytest.mark.root


@pytest.fixture
def lab():
    with VethLab(f"ap{os.getpid() % 100000}", ["a", "b"], [("a", "pa0", "b", "pb0")]) as lab:
        yield lab
    assert not any(n.startswith(f"pft-ap{os.getpid() % 100000}-") for n in
                   leftovers()["namespaces"]), "a test namespace was left behind"


@pytest.fixture
def big_pool():
    return Pool(buffers=16384, name="afpacket-test")


def test_exact_frames_both_ways_with_counters(lab, big_pool):
    a = lab.open_port("a", "packet:pa0", big_pool, 0)
    b = lab.open_port("b", "packet:pb0", big_pool, 1)
    try:
        ab, ba = numbered_frames(700, 1), numbered_frames(300, 2, size=1400)
        assert send_frames(a, ab) == 700
        got = receive_frames(b, 700)
        assert got == ab
        assert send_frames(b, ba) == 300
        assert receive_frames(a, 300) == ba
        ab_bytes, ba_bytes = sum(map(len, ab)), sum(map(len, ba))
        assert (a.stats.tx_packets, a.stats.tx_bytes, b.stats.rx_packets, b.stats.rx_bytes) == (
            700, ab_bytes, 700, ab_bytes)
        assert (b.stats.tx_packets, a.stats.rx_packets, a.stats.rx_bytes) == (
            300, 300, ba_bytes)
        # Our own transmissions never come back to us as received frames.
        assert receive_frames(a, 1, timeout=0.1) == []
    finally:
        a.close()
        b.close()


def test_queued_tells_the_scheduler_what_waits_in_the_ring(lab, big_pool):
    """`queued` counts received frames recv() has not taken yet, so the flow scheduler can
    clone a receiving segment that falls behind on a real interface."""
    a = lab.open_port("a", "packet:pa0", big_pool, 0)
    b = lab.open_port("b", "packet:pb0", big_pool, 1)
    try:
        assert b.queued == 0 and b.queue_capacity > 0
        assert send_frames(a, numbered_frames(900, 3)) == 900
        deadline = time.monotonic() + 2
        while b.queued < 900 and time.monotonic() < deadline:
            time.sleep(0.01)  # a block goes to user space when full or after 1 ms
        assert b.queued == 900
        batch = Batch(big_pool, 256)
        assert b.recv(batch, 100) == 100
        assert b.queued == 800
        big_pool.free(batch)
        assert len(receive_frames(b, 800)) == 800
        assert b.queued == 0
    finally:
        a.close()
        b.close()


def test_received_metadata_port_and_timestamp(lab, big_pool):
    a = lab.open_port("a", "packet:pa0", big_pool, 0)
    b = lab.open_port("b", "packet:pb0", big_pool, 7)
    try:
        send_frames(a, numbered_frames(10))
        batch = Batch(big_pool, 64)
        deadline = time.monotonic() + 3
        while batch.n < 10 and time.monotonic() < deadline:
            b.recv(batch, 64 - batch.n)
        assert batch.n == 10
        rows = big_pool.meta[batch.idx[:10]]
        assert set(rows[:, M.PORT]) == {7}
        assert (rows[:, M.START] == big_pool.headroom).all()
        assert (big_pool.ts[batch.idx[:10]] > 1_600_000_000 * 10**9).all()
        big_pool.free(batch)
    finally:
        a.close()
        b.close()


def test_vlan_tag_survives_the_kernel(lab, big_pool):
    a = lab.open_port("a", "packet:pa0", big_pool, 0)
    b = lab.open_port("b", "packet:pb0", big_pool, 1)
    try:
        tagged = [bytes.fromhex("0200000000aa0200000000bb8100a00588b5") + bytes(range(60)),
                  bytes.fromhex("0200000000aa0200000000bb88a8000781000064") + b"\x88\xb5"
                  + bytes(50)]
        send_frames(a, tagged)
        assert receive_frames(b, 2) == tagged
    finally:
        a.close()
        b.close()


def test_fanout_spreads_one_interface_over_two_ports(lab, big_pool):
    a = lab.open_port("a", "packet:pa0", big_pool, 0)
    w1 = lab.open_port("b", "packet:pb0,fanout=7,fanout_mode=lb", big_pool, 1)
    w2 = lab.open_port("b", "packet:pb0,fanout=7,fanout_mode=lb", big_pool, 2)
    try:
        frames = numbered_frames(400)
        send_frames(a, frames)
        got1 = receive_frames(w1, 400, timeout=0.5)
        got2 = receive_frames(w2, 400 - len(got1), timeout=1.0)
        assert got1 and got2, "fanout left one worker idle"
        assert sorted(got1 + got2) == sorted(frames)
        with pytest.raises(PortError, match="fanout group 7"):
            with netns(lab.ns("b")):
                PacketPort(3, "pb0,fanout=7,fanout_mode=hash")
    finally:
        for p in (a, w1, w2):
            p.close()


def test_kernel_drops_land_in_rx_dropped(lab, big_pool):
    a = lab.open_port("a", "packet:pa0", big_pool, 0)
    b = lab.open_port("b", "packet:pb0", big_pool, 1)
    try:
        # 24000 frames of 1000 bytes overflow the 16 MiB receive ring while nobody reads.
        frames = numbered_frames(24000, size=1000)
        assert send_frames(a, frames) == 24000
        got = receive_frames(b, 24000, timeout=1.0)
        b.refresh_kernel_stats()
        assert 0 < len(got) < 24000
        assert b.stats.rx_dropped > 0
        assert len(got) + b.stats.rx_dropped == 24000
        # What did arrive is intact and in order.
        arrived = set(got)
        assert got == [f for f in frames if f in arrived]
    finally:
        a.close()
        b.close()


def test_mac_and_link_state_match_the_kernel(lab, big_pool):
    b = lab.open_port("b", "packet:pb0", big_pool, 1)
    try:
        out = subprocess.run(["ip", "-n", lab.ns("b"), "-o", "link", "show", "pb0"],
                             capture_output=True, text=True, check=True).stdout
        assert f"link/ether {b.mac} " in out
        assert b.link_up
        subprocess.run(["ip", "-n", lab.ns("a"), "link", "set", "pa0", "down"], check=True)
        deadline = time.monotonic() + 3  # the kernel reports carrier changes lazily
        while b.link_up and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not b.link_up  # carrier gone with the peer
    finally:
        b.close()


def test_port_table_and_errors(lab):
    with netns(lab.ns("a")):
        table = PortTable.from_specs(["0=packet:pa0"])
        try:
            assert isinstance(table[0], PacketPort) and table[0].name == "packet:pa0"
        finally:
            table.close()
        with pytest.raises(PortError, match=r"interface veth9 not found: create it or pick "
                                            r"one of: lo, pa0"):
            PacketPort(0, "veth9")
    with pytest.raises(PortSpecError, match='unknown option "ring=4"'):
        PacketPort(0, "pa0,ring=4")
    with pytest.raises(PortSpecError, match="fanout expects int"):
        PacketPort(0, "pa0,fanout=x")
    with pytest.raises(PortSpecError, match="fanout_mode must be one of"):
        PacketPort(0, "pa0,fanout=1,fanout_mode=random")


def test_unprivileged_user_is_told_to_use_sudo(lab):
    code = ("from pktflow.ports.afpacket import PacketPort\n"
            "try:\n    PacketPort(0, 'pa0')\nexcept Exception as e:\n    print(e)\n")
    out = subprocess.run(["ip", "netns", "exec", lab.ns("a"), "setpriv", "--reuid=65534",
                          "--regid=65534", "--clear-groups", "--inh-caps=-all",
                          "--bounding-set=-all", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NUMBA_CACHE_DIR": "/tmp/pktflow-nobody-numba",
                              "PKTFLOW_CACHE_DIR": "/tmp/pktflow-nobody"})
    assert "AF_PACKET needs root or CAP_NET_RAW" in out.stdout, out.stderr[-2000:]
    assert "run with sudo" in out.stdout


@pytest.mark.parametrize(("mtu", "driver", "says"), [
    (9000, "packet", "1920-byte frames, the interface MTU needs 9018"),
    (3000, "xdp", "1920-byte frames, the interface MTU needs 3018"),
    (9000, "xdp", "MTU 9000 is above what XDP supports"),
])
def test_jumbo_mtu_is_refused_with_the_numbers(mtu, driver, says):
    """A jumbo-MTU link on a pool of 1920-byte frames would truncate frames silently; the
    port refuses to open and says which numbers disagree (and veth's XDP limit, which
    comes first for AF_XDP)."""
    tag = f"mt{os.getpid() % 100000}"
    with VethLab(tag, ["a", "b"], [("a", "ma0", "b", "mb0")], mtu=mtu) as lab:
        with pytest.raises(PortError) as err:
            lab.open_port("a", f"{driver}:ma0", Pool(buffers=64, name="small"))
    assert str(err.value).startswith(f"{driver}:ma0: ")
    assert says in str(err.value)
