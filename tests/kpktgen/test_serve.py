"""The served files: writes the kernel refuses fail the same way and leave the engine
serving; reads go on while `start` blocks; SIGINT ends a run with its results; SIGTERM
leaves no mount behind."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pktflow.kpktgen.params import parse_device_text, parse_result, parse_thread_text

pytestmark = pytest.mark.root

GEN_IF, PEER_IF = "kpw0", "kpw1"


def write(path: Path, data: bytes | str) -> None:
    """One write(2), as `echo cmd > file` does."""
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def refused(path: Path, data: str | bytes) -> int:
    with pytest.raises(OSError) as e:
        write(path, data)
    return e.value.errno


def wait_for(cond, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def mount_points(mountinfo: Path) -> set[str]:
    return {line.split()[4] for line in mountinfo.read_text().splitlines()}


@pytest.fixture
def lab():
    from pktflow.testbed.net import VethLab

    with VethLab("kpw", ["g", "p"], [("g", GEN_IF, "p", PEER_IF)]) as lab:
        yield lab


@pytest.fixture
def served(lab, tmp_path):
    """The engine served at a directory of this mount namespace, in the lab's network
    namespace (nsenter --net keeps our mounts visible to the test); SIGTERM at the end
    must leave no mount and no directory behind."""
    d = tmp_path / "pktgen"
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{lab.ns('g')}", sys.executable,
                             "-m", "pktflow", "kpktgen", "serve", "--dir", str(d),
                             "--threads", "2", "--socket", "packet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # generous: on a cold Numba cache the engine compiles its kernels before mounting
        wait_for(lambda: (d / "pgctrl").exists() or proc.poll() is not None,
                 timeout=180, what="the engine's files")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        yield d, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            # SIGTERM: the engine stops, unmounts, removes the directory it made, exits 0
            assert proc.wait(15) == 0
            assert not d.exists()
        assert not os.path.ismount(d)
        assert str(d) not in Path("/proc/self/mountinfo").read_text()


def test_bad_writes_give_the_kernels_errors_and_the_engine_keeps_serving(served):
    d, proc = served
    assert (d / "pgctrl").read_text().startswith("Packet Generator for packet performance")
    assert sorted(os.listdir(d)) == ["kpktgend_0", "kpktgend_1", "pgctrl"]
    t0 = d / "kpktgend_0"
    assert refused(t0, "add_device nope0\n") == errno.ENODEV
    assert parse_thread_text(t0.read_text()).result == "ERROR: can not add device nope0"
    assert refused(t0, "frobnicate\n") == errno.EINVAL
    write(t0, f"add_device {GEN_IF}\n")
    assert parse_thread_text(t0.read_text()) .stopped == (GEN_IF,)
    assert refused(d / "kpktgend_1", f"add_device {GEN_IF}\n") == errno.EBUSY
    dev = d / GEN_IF
    assert refused(dev, "bogus 1\n") == errno.EINVAL
    assert parse_device_text(dev.read_text()).result == 'No such parameter "bogus"'
    assert refused(dev, "dst_mac 02:00:zz:00:00:01\n") == errno.EINVAL
    write(dev, "flag NOPE\n")  # accepted by write(), refused in the Result line
    assert parse_device_text(dev.read_text()).result.startswith("Flag -:NOPE:- unknown")
    # veth cannot share an skb: the kernel answers ENOTSUPP, which FUSE carries as EOPNOTSUPP
    assert refused(dev, "clone_skb 10\n") == errno.EOPNOTSUPP
    write(dev, "vlan_p 9\n")
    assert parse_device_text(dev.read_text()).result == "ERROR: vlan_p must be 0-7"
    assert refused(d / "pgctrl", "bogus\n") == errno.EINVAL
    assert refused(dev, b"\xff\x00" * 3000) == errno.EINVAL
    assert refused(d / "nosuchfile", "count 1\n") == errno.ENOENT
    # still serving: a real run after all that
    for line in ("count 10", "pkt_size 64", "dst 10.0.0.2", "dst_mac 02:00:00:00:00:09"):
        write(dev, line + "\n")
    write(d / "pgctrl", "start\n")
    r = parse_device_text(dev.read_text()).figures
    assert r is not None and r.packets == 10 and r.pkt_size == 64
    assert proc.poll() is None


def test_reads_go_on_while_start_blocks_and_stop_ends_the_run(served):
    d, proc = served
    write(d / "kpktgend_1", f"add_device {GEN_IF}@1\n")
    dev = d / f"{GEN_IF}@1"
    for line in ("count 0", "delay 1000000", "dst 10.0.0.2", "dst_mac 02:00:00:00:00:09"):
        write(dev, line + "\n")
    done = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            write(d / "pgctrl", "start\n")  # blocks until stopped (count 0 = forever)
        except BaseException as e:  # noqa: BLE001
            failed.append(e)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    wait_for(lambda: int(parse_device_text(dev.read_text()).current["pkts-sofar"]) >= 5,
             what="packets counted while start blocks")
    assert parse_thread_text((d / "kpktgend_1").read_text()).running == (f"{GEN_IF}@1",)
    assert not done.is_set()
    write(d / "pgctrl", "stop\n")
    assert done.wait(10) and not failed
    rep = parse_device_text(dev.read_text())
    assert rep.figures is not None and rep.figures.packets >= 5
    assert rep.figures.usec_idle > 0  # 1 ms apart: most of the run is pacing
    write(d / "pgctrl", "reset\n")
    assert sorted(os.listdir(d)) == ["kpktgend_0", "kpktgend_1", "pgctrl"]


def test_proc_serve_sigint_ends_the_run_with_results_then_exits_clean(lab, tmp_path):
    """`serve --proc -- COMMAND`: /proc/net/pktgen exists for the command, /proc/net/dev
    still reads; SIGINT stops the blocked start (the command prints its result), and
    nothing of the private mounts is left afterwards."""
    script = tmp_path / "run.sh"
    script.write_text(f"""set -e
P=/proc/net/pktgen
grep -q {GEN_IF} /proc/net/dev
echo "add_device {GEN_IF}" > $P/kpktgend_0
echo "count 0" > $P/{GEN_IF}
echo "delay 1000000" > $P/{GEN_IF}
echo "dst_mac 02:00:00:00:00:09" > $P/{GEN_IF}
touch {tmp_path}/ready
echo start > $P/pgctrl
cat $P/{GEN_IF}
""")
    proc = lab.exec("g", sys.executable, "-m", "pktflow", "kpktgen", "serve", "--proc",
                    "--socket", "packet", "--", "bash", "-c", "trap true INT; . " + str(script),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    start_new_session=True)
    try:
        wait_for(lambda: (tmp_path / "ready").exists() or proc.poll() is not None,
                 timeout=180, what="the command to start the run")
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        # the stand-in and the FUSE mount live in serve's mount namespace only
        theirs = mount_points(Path(f"/proc/{proc.pid}/mountinfo"))
        assert "/proc/net" in theirs
        stand_ins = {m for m in theirs
                     if m.startswith("/run/pktflow-kpktgen-") and m.endswith("/net/pktgen")}
        assert len(stand_ins) == 1
        ours = mount_points(Path("/proc/self/mountinfo"))
        assert "/proc/net" not in ours
        assert not any(m.startswith("/run/pktflow-kpktgen-") for m in ours)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:  # the test failed midway: let serve clean up, then insist
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err[-2000:]
    r = parse_result(out)
    assert r is not None and r.packets > 0, out
    base = Path(stand_ins.pop()).parent.parent
    assert not base.exists()  # the stand-in's directory went with its mounts
    assert not os.path.exists("/proc/net/pktgen")
