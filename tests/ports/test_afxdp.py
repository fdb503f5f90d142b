"""AF_XDP ports (and auto:) on veth pairs inside namespaces the tests create: exact frames
both ways, more frames than the rings hold, the XDP program's life cycle (detached on
close and when the process is killed), fallbacks and clear errors."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from pktflow.packet import Pool
from pktflow.ports import PortError, PortSpecError
from pktflow.ports.afpacket import PacketPort
from pktflow.ports.afxdp import XdpPort
from pktflow.ports.bpf import BpfError, XskRedirect
from pktflow.ports.linux import Interface, netns
from pktflow.testbed.net import VethLab, leftovers, numbered_frames, receive_frames, send_frames

pytestmark = pytest.mark.root


@pytest.fixture
def lab():
    tag = f"ax{os.getpid() % 100000}"
    with VethLab(tag, ["a", "b"], [("a", "xa0", "b", "xb0")]) as lab:
        yield lab
    assert not any(n.startswith(f"pft-{tag}-") for n in leftovers()["namespaces"])


@pytest.fixture
def big_pool():
    return Pool(buffers=16384, name="afxdp-test")


def xdp_attached(lab: VethLab, host: str, ifname: str) -> bool:
    out = subprocess.run(["ip", "-n", lab.ns(host), "-d", "link", "show", ifname],
                         capture_output=True, text=True, check=True).stdout
    return "prog/xdp" in out


def test_xdp_to_packet_and_back_exact(lab, big_pool):
    x = lab.open_port("a", "xdp:xa0", big_pool, 0)
    p = lab.open_port("b", "packet:xb0", big_pool, 1)
    try:
        assert xdp_attached(lab, "a", "xa0")
        assert x.zerocopy is False  # veth has no zero-copy support
        out, back = numbered_frames(500, 1), numbered_frames(500, 2, size=1400)
        assert send_frames(x, out) == 500
        assert receive_frames(p, 500) == out
        assert send_frames(p, back) == 500
        assert receive_frames(x, 500) == back
        assert (x.stats.tx_packets, x.stats.rx_packets) == (500, 500)
        assert x.stats.rx_bytes == sum(map(len, back))
        assert x.stats.tx_bytes == sum(map(len, out))
    finally:
        x.close()
        p.close()
    assert not xdp_attached(lab, "a", "xa0"), "closing the port left the XDP program"


def test_xdp_on_both_ends_more_frames_than_the_rings(lab, big_pool):
    a = lab.open_port("a", "xdp:xa0,mode=copy", big_pool, 0)
    b = lab.open_port("b", "xdp:xb0", big_pool, 1)
    try:
        # 6000 frames > 2048 UMEM frames per direction: send in steps the receiver drains,
        # so completions recycle transmit frames and the fill ring keeps receiving.
        frames = numbered_frames(6000, 3)
        got = []
        for at in range(0, 6000, 1000):
            assert send_frames(a, frames[at:at + 1000]) == 1000
            got += receive_frames(b, 1000)
        assert got == frames
        assert b.stats.rx_packets == 6000 and b.stats.rx_dropped == 0
    finally:
        a.close()
        b.close()
    assert not xdp_attached(lab, "a", "xa0") and not xdp_attached(lab, "b", "xb0")


def test_a_reader_that_starts_late_loses_no_burst(lab, big_pool):
    """The receive ring holds a whole tutorial burst (6600 frames) while its reader is
    busy elsewhere, as a generator is while it sends; with 2048 entries it lost 4552."""
    from pktflow.ports.afxdp import RX_RING_SIZE

    a = lab.open_port("a", "xdp:xa0", big_pool, 0)
    b = lab.open_port("b", "xdp:xb0", big_pool, 1)
    try:
        frames = numbered_frames(6600, 4, size=1400)
        sent = 0
        for at in range(0, 6600, 1100):  # steps the veth peer's 256-entry queue absorbs
            sent += send_frames(a, frames[at:at + 1100])
            time.sleep(0.02)
        assert sent == 6600 and RX_RING_SIZE >= 6600
        deadline = time.monotonic() + 2
        while b.queued < 6600 and time.monotonic() < deadline:
            time.sleep(0.01)  # the veth peer's NAPI may still be moving the last frames
        assert b.queued == 6600  # what the flow scheduler sees waiting
        got = receive_frames(b, 6600)  # the first read of b
        assert b.queued == 0
        b.refresh_kernel_stats()
        assert (len(got), b.stats.rx_dropped) == (6600, 0)
        assert got == frames
    finally:
        a.close()
        b.close()


def test_ring_overflow_shows_as_kernel_drops_while_running(lab, big_pool):
    """Frames beyond the receive ring are dropped by the kernel and counted in rx_dropped
    while the port runs (not only when it closes), so a step's report can name them."""
    from pktflow.ports.afxdp import RX_RING_SIZE

    a = lab.open_port("a", "xdp:xa0", big_pool, 0)
    b = lab.open_port("b", "xdp:xb0", big_pool, 1)
    try:
        total = RX_RING_SIZE + 1800
        frames = numbered_frames(total, 5, size=200)
        for at in range(0, total, 1000):
            send_frames(a, frames[at:at + 1000])
            time.sleep(0.02)
        got = receive_frames(b, total, timeout=1.5)  # polls a few thousand times
        assert len(got) == RX_RING_SIZE and got == frames[:RX_RING_SIZE]
        assert b.stats.rx_packets + b.stats.rx_dropped == total
    finally:
        a.close()
        b.close()


def test_killed_process_leaves_no_xdp_program(lab):
    code = ("import sys, time\nfrom pktflow.ports.afxdp import XdpPort\n"
            "port = XdpPort(0, 'xb0')\nprint('ready', flush=True)\ntime.sleep(60)\n")
    proc = lab.exec("b", sys.executable, "-c", code, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert xdp_attached(lab, "b", "xb0")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    deadline = time.monotonic() + 3
    while xdp_attached(lab, "b", "xb0") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not xdp_attached(lab, "b", "xb0"), "the kernel kept the killed NF's program"


def test_busy_interface_error_and_auto_fallback(lab, big_pool, caplog):
    with netns(lab.ns("b")):
        iface = Interface("xb0")
    other = XskRedirect(iface)  # someone else's XDP program
    try:
        with pytest.raises(BpfError, match=r"xb0 already has an XDP program"):
            XskRedirect(iface)
        with netns(lab.ns("b")), pytest.raises(PortError, match="ip link set dev xb0 xdp off"):
            XdpPort(0, "xb0")
        caplog.set_level(logging.WARNING, logger="pktflow.ports")
        port = lab.open_port("b", "auto:xb0", big_pool, 1)
        try:
            assert isinstance(port, PacketPort)
            assert "falling back to AF_PACKET" in caplog.text
        finally:
            port.close()
    finally:
        other.close()
        iface.close()
    port = lab.open_port("b", "auto:xb0", big_pool, 1)
    try:
        assert isinstance(port, XdpPort)
    finally:
        port.close()


def test_zerocopy_request_falls_back_with_a_log_line(lab, big_pool, caplog):
    caplog.set_level(logging.INFO, logger="pktflow.ports")
    port = lab.open_port("a", "xdp:xa0,mode=zerocopy", big_pool, 0)
    try:
        assert port.zerocopy is False
        assert "zero-copy not supported by xa0, falling back to copy mode" in caplog.text
    finally:
        port.close()


def test_errors_name_what_to_do(lab):
    with netns(lab.ns("a")):
        with pytest.raises(PortError, match="interface xb0 not found: create it or pick one "
                                            "of: lo, xa0"):
            XdpPort(0, "xb0")
        with pytest.raises(PortError, match="interface nope0 not found"):
            lab.open_port("a", "auto:nope0", Pool(64))
        with pytest.raises(PortError, match="queue 3: Invalid argument .that queue does not"):
            XdpPort(0, "xa0,queue=3")
        assert not xdp_attached(lab, "a", "xa0"), "a failed open left the program behind"
    with pytest.raises(PortSpecError, match="mode must be one of auto, copy, zerocopy"):
        XdpPort(0, "xa0,mode=fast")
    with pytest.raises(PortSpecError, match='unknown option "fanout=1"'):
        XdpPort(0, "xa0,fanout=1")
