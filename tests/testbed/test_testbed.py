"""The Mininet testbed: tutorial links wired port to port, three generator hosts at once,
the two-terminal shell, and teardown on exit, Ctrl-C, SIGTERM and after a kill (clean)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pktflow.packet import Pool
from pktflow.testbed.multigen import overlap_seconds, run_fan_in
from pktflow.testbed.net import leftovers, numbered_frames, receive_frames, send_frames
from pktflow.testbed.topo import Testbed

pytestmark = pytest.mark.root
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(autouse=True)
def nothing_left_behind():
    assert not any(leftovers().values()), "leftovers from an earlier run: pktflow testbed clean"
    yield
    assert not any(leftovers().values()), f"the test left {leftovers()}"


def _open(tb: Testbed, host: str, port: int, pool: Pool):
    from pktflow.ports.afpacket import PacketPort
    from pktflow.ports.linux import netns

    with netns(tb.ns_path(host)):
        p = PacketPort(port, tb.intf(host, port))
    p.open(pool)
    return p


def test_tutorial_topology_wires_port_to_port():
    pool = Pool(4096)
    with Testbed.tutorial() as tb:
        assert "testbed up in" in tb.summary() and "MiB" in tb.summary()
        ports = {(h, i): _open(tb, h, i, pool) for h in ("gen", "tgt") for i in (0, 1)}
        try:
            for i in (0, 1):
                frames = numbered_frames(50, tag=i)
                assert send_frames(ports["gen", i], frames) == 50
                assert receive_frames(ports["tgt", i], 50) == frames
                assert receive_frames(ports["tgt", 1 - i], 1, timeout=0.2) == []
        finally:
            for p in ports.values():
                p.close()
    # the fixture asserts that no namespace, link or host shell remains


def test_three_generator_hosts_deliver_at_the_same_time():
    results = run_fan_in(generators=3, count=4000, pps=4000)
    for r in results:
        assert r.exit_code == 0, r.stderr
        assert r.tx_packets == 4000
        assert r.rx_at_sink > 0, f"{r.host} delivered nothing"
        assert r.rx_at_sink + r.dropped_at_sink == 4000  # every frame is accounted for
    # Each sends for about a second; had any waited for another, they would not overlap.
    assert overlap_seconds(results) > 0.2


def _start_up_command() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "pktflow", "testbed", "up"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(20):
        line = proc.stdout.readline()
        if line.startswith("ready") or not line:
            break
    assert line.startswith("ready"), proc.stderr.read() if proc.poll() is not None else line
    assert len(leftovers()["shells"]) == 2 and len(leftovers()["namespaces"]) == 2
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_tears_everything_down(sig):
    proc = _start_up_command()
    try:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "testbed torn down" in out


def test_clean_removes_what_a_killed_run_left():
    proc = _start_up_command()
    proc.kill()
    proc.wait(10)
    assert leftovers()["namespaces"], "a killed run should leave its namespaces behind"
    out = subprocess.run([sys.executable, "-m", "pktflow", "testbed", "clean"], env=ENV,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "removed namespaces: pft-gen, pft-tgt" in out.stdout
    deadline = time.monotonic() + 5
    while any(leftovers().values()) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_shell_runs_the_nf_on_the_target_and_the_generator_on_gen(tmp_path):
    program = tmp_path / "fwd.py"
    program.write_text("def build(nf):\n    nf.sender(nf.receiver(0), 0)\n")
    script = tmp_path / "gen.pg"
    script.write_text("set 0 count 1000\nset 0 pps 5000\nsleep 4\nstart 0\nsleep 2\n")
    nf = f"pktflow flow run {program} --port 0={{port0}} --port 1={{port1}} --duration 30"
    out = subprocess.run([sys.executable, "-m", "pktflow", "testbed", "shell", "--driver",
                          "packet", "--nf", nf, "-f", str(script), "--json"], env=ENV,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    stats = json.loads(out.stdout[out.stdout.index("{"):out.stdout.rindex("}") + 1])
    assert stats["0"]["tx_packets"] == 1000
    assert stats["0"]["rx_packets"] == 1000  # the NF on the target sent every frame back
    assert stats["1"]["rx_packets"] == 0
