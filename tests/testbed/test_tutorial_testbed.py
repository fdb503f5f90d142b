"""`pktflow testbed tutorial`: the tutorial steps with the NF in its own process on the
target host and the generator on the generator host, judged like `pktflow tutorial`;
nothing (namespace, link, host shell, NF process, XDP program) is left afterwards, also
after Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pktflow.ports.bpf import loaded_programs
from pktflow.testbed.net import leftovers
from pktflow.tutorial.runner import EXAMPLES

pytestmark = pytest.mark.root
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _nf_processes() -> list[int]:
    """Tutorial step programs running anywhere (the testbed's NFs)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if len(args) > 1 and b"examples/tutorial/step" in args[1]:
            found.append(int(pid))
    return found


def _assert_nothing_left() -> None:
    assert not any(leftovers().values()), f"left behind: {leftovers()}"
    assert _nf_processes() == [], "an NF process outlived the testbed"
    # A namespace is destroyed (and its interfaces' XDP programs freed) shortly after
    # its last reference goes, so give the kernel a moment.
    deadline = time.monotonic() + 5
    while loaded_programs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert loaded_programs() == [], "pktflow's XDP program is still loaded"


@pytest.fixture(autouse=True)
def clean_slate():
    assert not any(leftovers().values()), "leftovers from an earlier run: pktflow testbed clean"
    yield
    _assert_nothing_left()


def test_steps_2_to_8_pass_on_the_testbed():
    """AF_XDP where the kernel allows it (auto): both hosts' ports on the veth links."""
    steps = [f"step{n:02d}" for n in range(2, 9)]
    done = subprocess.run([sys.executable, "-m", "pktflow", "testbed", "tutorial", *steps,
                           "--driver", "auto", "--json"], env=ENV, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(done.stdout)
    results = {s["step"]: s for s in doc["steps"]}
    assert sorted(results) == list(range(2, 9)) and doc["passed"]
    back = {n: [[p["rx_packets"] for p in phase["ports"]] for phase in r["phases"]]
            for n, r in results.items()}
    # 6600 packets per phase, a whole number of every step's period: exact counts.
    assert back[2] == [[6600, 0]]
    assert back[3] == [[3300, 3300]]
    assert back[4] == [[6000, 600]]
    assert back[5] == [[4950, 1650]]
    assert back[6] == [[4950, 0]]
    assert back[7] == [[4950, 0], [3300, 0]]  # the reject rule widened to /31 on the target
    assert back[8] == [[3300, 1650], [1650, 3300]]
    for n in (7, 8):
        reload = next(c for c in results[n]["checks"] if c["name"].startswith("reload"))
        assert reload["passed"] and "version 1 -> 2" in reload["measured"]
    for r in results.values():
        counters = next(c for c in r["checks"] if c["name"] == "NF counters add up")
        assert counters["passed"]  # read from the NF process's own final summary
        lost = next(c for c in r["checks"] if c["name"] == "no packet lost inside the NF")
        assert lost["passed"] and lost["measured"] == "none"
        assert not any("dropped" in note for note in r["notes"]), r["notes"]
    assert "testbed up in" in done.stderr  # the summary goes to stderr with --json


def test_ctrl_c_stops_the_nf_and_tears_the_testbed_down():
    proc = subprocess.Popen([sys.executable, "-m", "pktflow", "testbed", "tutorial", "step07",
                             "--packets", "2000000"], env=ENV, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _nf_processes() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert _nf_processes(), "the NF never started on the target host"
        assert "pft-tgt" in leftovers()["namespaces"]
        time.sleep(3)  # let traffic run
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: NF stopped, testbed torn down" in err


def test_a_step_whose_nf_fails_is_reported_and_cleaned_up(tmp_path):
    examples = tmp_path / "tutorial"
    shutil.copytree(EXAMPLES, examples)
    step = examples / "step02.py"
    step.write_text(step.read_text().replace("nf.sender(first_flow, 0)",
                                             "nf.sender(first_flow, 7)"))
    done = subprocess.run([sys.executable, "-m", "pktflow", "testbed", "tutorial", "step02",
                           "--dir", str(examples)], env=ENV, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=200)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "step02: receive 0 -> rewrite MACs -> send 0  FAIL" in done.stdout
    # The NF's own error, from the target host, names what is wrong.
    assert "the NF on the target host exited with 2" in done.stdout
    assert "port 7" in done.stdout
    assert "testbed torn down" in done.stdout


def test_shell_runs_a_chosen_step_on_the_target(tmp_path):
    script = tmp_path / "gen.pg"
    script.write_text("set 0 count 600\nsleep 5\nstart 0\nsleep 2\n")
    done = subprocess.run([sys.executable, "-m", "pktflow", "testbed", "shell", "--step",
                           "step03", "--driver", "packet", "-f", str(script), "--json"],
                          env=ENV, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "examples/tutorial/step03.py --port 0=packet:pfttgt-eth0" in done.stdout
    out = done.stdout
    stats = json.loads(out[out.index("{"):out.rindex("}") + 1])
    # Step 3 on the target partitions 300/300 back to the generator's two ports.
    assert stats["0"]["tx_packets"] == 600
    assert (stats["0"]["rx_packets"], stats["1"]["rx_packets"]) == (300, 300)
