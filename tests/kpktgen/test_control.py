"""The controller against a real pktgen file interface on a veth inside namespaces this
test creates: pktflow's engine mounted with `serve --dir` on a temp dir, and the kernel's
own /proc/net/pktgen when this kernel has one. Frames are counted on the peer's
interface counters, independently of what pktgen reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pktflow.kpktgen.control import NO_PKTGEN, KpktgenError, Pktgen
from pktflow.ports.linux import netns
from pktflow.testbed.net import VethLab

pytestmark = pytest.mark.root
PEER_MAC = "02:00:00:00:0b:01"


def _kernel_has_pktgen(ns: str) -> bool:
    with netns(ns):
        return Path("/proc/net/pktgen/pgctrl").exists()


@pytest.fixture(scope="module")
def lab():
    with VethLab(f"kpc{os.getpid() % 10000}", ["a", "b"], [("a", "a0", "b", "b0")]) as lab:
        subprocess.run(["ip", "-n", lab.ns("b"), "link", "set", "b0", "address", PEER_MAC],
                       check=True)
        yield lab


def _rx(lab: VethLab) -> int:
    out = subprocess.run(["ip", "-n", lab.ns("b"), "-s", "-j", "link", "show", "b0"],
                         capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


@pytest.fixture(scope="module", params=["engine", "kernel"])
def pg(request, lab, tmp_path_factory):
    """A Pktgen on namespace a's pktgen: the engine's mount, or the kernel's /proc; one
    per module (each test begins with a reset of its own)."""
    if request.param == "kernel":
        if not _kernel_has_pktgen(lab.ns("a")):
            pytest.skip(NO_PKTGEN)
        with netns(lab.ns("a")):
            pg = Pktgen()
            pg.reset()
            yield pg
            pg.reset()
        return
    tmp_path = tmp_path_factory.mktemp("engine")
    mount = tmp_path / "pktgen"
    mount.mkdir()
    log = tmp_path / "serve.log"
    # nsenter joins only the network namespace, so the mount stays visible to this test.
    with open(log, "w") as out:
        proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{lab.ns('a')}", sys.executable,
                                 "-m", "pktflow", "kpktgen", "serve", "--dir", str(mount)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (mount / "pgctrl").exists():
            assert proc.poll() is None, f"serve exited: {log.read_text()[-800:]}"
            assert time.monotonic() < deadline, f"no mount: {log.read_text()[-800:]}"
            time.sleep(0.05)
        yield Pktgen(mount)
        assert proc.poll() is None, f"the engine died: {log.read_text()[-800:]}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _setup(pg: Pktgen, count: int, **extra):
    pg.reset()
    t0 = pg.threads[0]
    dev = t0.add_device("a0")
    assert dev.path.exists() and "a0" in t0.stopped
    answers = dev.set(count=count, pkt_size=60, dst="10.0.0.2", dst_mac=PEER_MAC,
                      flags=["UDPSRC_RND", "NO_TIMESTAMP"], udp_src_min=9, udp_src_max=109,
                      **extra)
    return dev, answers


def test_configure_run_and_typed_result(pg, lab):
    assert pg.threads and pg.threads[0].name == "kpktgend_0"
    dev, answers = _setup(pg, 500)
    # pktgen's own wording for each command taken
    assert answers[:4] == ["OK: count=500", "OK: pkt_size=60", "OK: dst_min=10.0.0.2",
                           f"OK: dstmac {PEER_MAC}"]
    before = dev.result()
    assert before.params["count"] == "500" and before.params["dst_min"] == "10.0.0.2"
    assert "UDPSRC_RND" in before.flags and not before.finished
    rx0 = _rx(lab)
    pg.start()  # returns once the device has sent its count
    r = dev.result()
    assert r.ok and r.finished, r.text
    assert (r.packets, r.pkt_size, r.errors) == (500, 60, 0)
    assert r.pps > 0 and r.usec > 0 and r.bps == r.pps * 8 * 60
    assert r.text.startswith("OK: ") and "pps" in r.text and "Mb/sec" in r.text
    assert r.sofar == 500
    deadline = time.monotonic() + 5
    while _rx(lab) - rx0 < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rx(lab) - rx0 == 500
    snap = pg.snapshot()
    assert snap["devices"]["a0"]["packets"] == 500


def test_refused_writes_name_file_line_and_result(pg):
    dev, _ = _setup(pg, 10)
    with pytest.raises(KpktgenError) as e:
        dev.write("pkt_sizee 60")
    assert e.value.path == dev.path and e.value.line == "pkt_sizee 60"
    assert e.value.result == 'No such parameter "pkt_sizee"'
    assert str(dev.path) in str(e.value) and "Invalid argument" in str(e.value)
    dev.set(vlan_id=5)
    with pytest.raises(KpktgenError, match=r"vlan_p 9.*Result: ERROR: vlan_p must be 0-7"):
        dev.set(vlan_p=9)
    with pytest.raises(KpktgenError, match=r"Result: Flag -:NOPE:- unknown"):
        dev.write("flag NOPE")
    with pytest.raises(KpktgenError, match=r"kpktgend_0.*add_device nosuch0.*"
                                           r"ERROR: can not add device nosuch0"):
        pg.thread(0).add_device("nosuch0")
    with pytest.raises(KpktgenError, match="pgctrl.*bogus.*Invalid argument"):
        pg.ctrl("bogus")
    with pytest.raises(ValueError, match="not a pktgen device command"):
        dev.set(pkt_sz=60)
    # the interface still answers after every refusal
    assert dev.set(count=20) == ["OK: count=20"]


def test_stop_ends_an_endless_run_and_reset_removes_devices(pg, lab):
    dev, _ = _setup(pg, 0, ratep=20000)  # 0: until stopped
    run = pg.start_in_background()
    deadline = time.monotonic() + 10
    while dev.result().sofar < 100:
        assert time.monotonic() < deadline, dev.read()
        time.sleep(0.02)
    assert pg.running() == ["a0"]
    run.stop()
    assert run.wait(10)
    r = dev.result()
    assert r.finished and r.packets >= 100, r.text
    pg.reset()
    assert pg.devices == [] and pg.threads[0].stopped == []


def test_cli_run_show_and_config_errors(pg, lab, tmp_path):
    if pg.root == Path("/proc/net/pktgen"):
        pytest.skip("the CLI runs in another process, outside this test's namespace")
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[[devices]]\nname = "a0"\ncount = 300\npkt_size = 60\n'
                   f'dst_mac = "{PEER_MAC}"\nflags = ["IPSRC_RND"]\nsrc_min = "10.0.0.1"\n'
                   f'src_max = "10.0.0.9"\n')
    rx0 = _rx(lab)
    cli = [sys.executable, "-m", "pktflow", "kpktgen"]
    out = subprocess.run([*cli, "run", str(cfg), "--dir", str(pg.root), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["devices"]["a0"]
    assert result["packets"] == 300 and result["finished"] and not result["errors"]
    assert _rx(lab) - rx0 == 300
    show = json.loads(subprocess.run([*cli, "show", "--dir", str(pg.root), "--json"],
                                     capture_output=True, text=True, timeout=30).stdout)
    assert show["threads"]["kpktgend_0"]["stopped"] == ["a0"]
    assert show["devices"]["a0"]["packets"] == 300
    cfg.write_text('[[devices]]\nname = "a0"\nvlan_id = 3\nvlan_p = 8\n')
    bad = subprocess.run([*cli, "run", str(cfg), "--dir", str(pg.root)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert f"{cfg}: devices[0] (a0)" in bad.stderr and "vlan_p 8" in bad.stderr
    assert "ERROR: vlan_p must be 0-7" in bad.stderr
    # Ctrl-C during an endless run: pktgen stops, the results are printed, exit 130
    cfg.write_text(f'[[devices]]\nname = "a0"\ncount = 0\nratep = 20000\npkt_size = 60\n'
                   f'dst_mac = "{PEER_MAC}"\n')
    pg.reset()

    def sending() -> bool:
        try:
            return pg.device("a0").result().sofar > 100
        except KpktgenError:  # not added yet
            return False

    run = subprocess.Popen([*cli, "run", str(cfg), "--dir", str(pg.root)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not sending():
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert "a0: Result: OK: " in out and pg.running() == []
    assert pg.device("a0").result().finished
