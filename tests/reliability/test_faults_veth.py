"""Faults injected into an NF forwarding on veth links in namespaces these tests create
(AF_PACKET and AF_XDP): a link taken down and up under traffic, an interface deleted, the
generator process killed, SIGTERM/SIGINT at seeded random moments. The NF keeps running
or exits with a clear message, its counters add up, and nothing is left behind: no
namespace, link or XDP program."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pktflow.flow import FlowConfig, System
from tests.reliability.veth import Traffic, ip, lab_leftovers, make_lab, nf_ports, xdp_programs

pytestmark = pytest.mark.root
DRIVERS = ["packet", "xdp"]
ROOT = Path(__file__).resolve().parents[2]


def forwarder(lab, driver: str) -> System:
    nf = System(FlowConfig(cores=1, pool_size=16384), nf_ports(lab, driver))
    f = nf.receiver(0)
    nf.sender(f, 1)
    return nf


def conserved(nf: System) -> dict:
    check = nf.check_conservation()
    assert check["exact"] and check["balanced"], check
    return check


def assert_clean(lab) -> None:
    assert not lab_leftovers(lab), lab_leftovers(lab)


@pytest.mark.parametrize("driver", DRIVERS)
def test_links_down_and_up_under_traffic(driver):
    """Egress link down, up; ingress link down, up, while traffic flows: the NF runs on,
    forwards again once the links are back, counts what it could not send as tx-error."""
    with make_lab() as lab:
        nf = forwarder(lab, driver)
        traffic = Traffic(lab, pps=20000)
        try:
            nf.start()
            traffic.start()
            assert traffic.wait_received(500), "no traffic before the faults"
            for host, ifname in (("n", "n1"), ("n", "n0")):
                ip(lab, host, "link", "set", ifname, "down")
                time.sleep(0.5)
                assert nf.running
                ip(lab, host, "link", "set", ifname, "up")
                lab.wait_carrier()
                before = traffic.received
                assert traffic.wait_received(before + 500), f"no traffic after {ifname} up"
            traffic.stop()
            final = nf.stop()
            if driver == "xdp":
                assert xdp_programs(lab), "the NF's XDP programs vanished while it ran"
        finally:
            traffic.close()
            nf.close()
        conserved(nf)
        assert not xdp_programs(lab), "XDP programs left after the NF closed"
        sent = final["conservation"]["ended"]["sent"]
        assert traffic.unknown == 0
        assert 0 < traffic.received <= sent
    assert_clean(lab)


@pytest.mark.parametrize("driver", DRIVERS)
def test_interfaces_deleted_under_the_nf(driver):
    """The NF's egress interface is deleted under traffic, then its ingress: the NF keeps
    running, counts what it could not send, stops and closes without an error."""
    with make_lab() as lab:
        nf = forwarder(lab, driver)
        traffic = Traffic(lab, pps=20000)
        try:
            nf.start()
            traffic.start()
            assert traffic.wait_received(500)
            ip(lab, "n", "link", "del", "n1")  # takes s0 with it
            time.sleep(0.7)
            assert nf.running
            ip(lab, "n", "link", "del", "n0")
            time.sleep(0.5)
            assert nf.running
            traffic.stop(settle=0.1)
            final = nf.stop()
        finally:
            traffic.close()
            nf.close()
        conserved(nf)
        assert "n0" not in ip(lab, "n", "link", "show")
        assert final["conservation"]["total_entered"] >= traffic.received
        assert not xdp_programs(lab)
    assert_clean(lab)


GENERATOR = """
import sys, time
from pktflow.packet import Pool
from pktflow.ports.base import PortTable
from pktflow.testbed.net import numbered_frames, send_frames
port = next(iter(PortTable.from_specs(["0=xdp:g0"])))
port.open(Pool(buffers=8192, name="killed-gen"))
frames = numbered_frames(256, tag=7)
print("sending", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    send_frames(port, frames)
    time.sleep(0.002)
"""


def test_generator_process_killed_leaves_the_nf_running_and_no_xdp_program():
    """A generator process sending through AF_XDP is killed with SIGKILL mid-run: the NF
    runs on and forwards the next sender's traffic, the killed process's XDP program is
    gone with it, and the counters add up."""
    with make_lab() as lab:
        nf = forwarder(lab, "xdp")
        traffic = Traffic(lab, pps=0)
        gen = lab.exec("g", sys.executable, "-c", GENERATOR, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            nf.start()
            assert gen.stdout.readline().strip() == "sending", gen.stderr.read()
            deadline = time.monotonic() + 15
            while nf.check_conservation()["total_entered"] < 1000:
                assert time.monotonic() < deadline, "the generator's packets did not reach the NF"
                time.sleep(0.05)
            assert any(x.endswith(":g0") for x in xdp_programs(lab))
            gen.kill()
            gen.wait(10)
            deadline = time.monotonic() + 5
            while any(x.endswith(":g0") for x in xdp_programs(lab)):
                assert time.monotonic() < deadline, "the killed generator's XDP program stayed"
                time.sleep(0.1)
            assert nf.running
            traffic.start()  # a new sender on the same link: the NF still forwards
            assert traffic.wait_received(200)
            traffic.stop()
            nf.stop()
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait(10)
            traffic.close()
            nf.close()
        conserved(nf)
        assert not xdp_programs(lab)
    assert_clean(lab)


NF_PROGRAM = '''
def build(nf):
    """Forward port 0 to port 1."""
    f = nf.receiver(0)
    nf.sender(f, 1)
'''


@pytest.mark.parametrize("seed", [1, 5, 7])  # AF_PACKET TERM, AF_XDP INT, AF_XDP TERM
def test_sigterm_and_sigint_at_random_moments(tmp_path, seed):
    """`pktflow flow run` forwarding on AF_XDP or AF_PACKET gets SIGTERM or SIGINT at a
    seeded random moment under traffic: it stops, drains, prints its final counters
    (balanced) and exits 0; its XDP programs go with it."""
    rng = random.Random(seed)
    driver = rng.choice(DRIVERS)
    sig = rng.choice([signal.SIGTERM, signal.SIGINT])
    delay = rng.uniform(0.0, 1.5)
    program = tmp_path / "forward.py"
    program.write_text(NF_PROGRAM)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with make_lab() as lab:
        traffic = Traffic(lab, pps=20000)
        proc = lab.exec("n", sys.executable, "-m", "pktflow", "flow", "run", str(program),
                        "--port", f"0={driver}:n0", "--port", f"1={driver}:n1",
                        "--cores", "1", "--pool", "8192", "--duration", "120",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            traffic.start()
            assert traffic.wait_received(100, timeout=60), "the NF did not start forwarding"
            time.sleep(delay)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
            traffic.close()
        what = f"{driver}, {sig.name} after {delay:.2f} s"
        assert proc.returncode == 0, (what, err[-2000:])
        assert "Traceback" not in err, (what, err[-2000:])
        assert "conservation: entered" in out and "(balanced)" in out, (what, out)
        assert not xdp_programs(lab), what
    assert_clean(lab)
