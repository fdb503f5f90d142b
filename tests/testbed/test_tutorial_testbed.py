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
        if len(args) > 1 and (b"examples/tutorial/step" in args[1]
                              or args[1].endswith(b"examples/nat/nat.py")):
            found.append(int(pid))
    return found


def _tutorial_leftovers() -> dict[str, list]:
    """What the tutorial testbed (hosts gen and tgt) left; other pft- namespaces belong
    to tests running at the same time on this machine."""
    found = leftovers()
    mine = ("pft-gen", "pft-tgt", "pftgen-", "pfttgt-")
    shells = [pid for pid in found["shells"]
              if any(a.startswith((b"mininet:pftgen", b"mininet:pfttgt")) for a in _args(pid))]
    return {"namespaces": [n for n in found["namespaces"] if n.startswith(mine)],
            "links": [n for n in found["links"] if n.startswith(mine)], "shells": shells}


def _args(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _assert_nothing_left(programs_before: set[int]) -> None:
    assert not any(_tutorial_leftovers().values()), f"left behind: {_tutorial_leftovers()}"
    assert _nf_processes() == [], "an NF process outlived the testbed"
    # A namespace is destroyed (and its interfaces' XDP programs freed) shortly after
    # its last reference goes, so give the kernel a moment.
    deadline = time.monotonic() + 5
    while set(loaded_programs()) - programs_before and time.monotonic() < deadline:
        time.sleep(0.1)
    # Programs other tests on this machine loaded before this one started are theirs.
    assert set(loaded_programs()) <= programs_before, "pktflow's XDP program is still loaded"


@pytest.fixture(autouse=True)
def clean_slate():
    assert not any(_tutorial_leftovers().values()), \
        "leftovers from an earlier run (or the testbed is in use): pktflow testbed clean"
    programs = set(loaded_programs())
    yield
    _assert_nothing_left(programs)


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
        assert "pft-tgt" in _tutorial_leftovers()["namespaces"]
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


def test_step_11_scales_without_kernel_drops():
    """The CPU-heavy handler and the generator share the machine's cores: the offer stays
    within the NF's receive ring, so every packet comes back and the scheduler still
    clones the handler's segment."""
    done = subprocess.run([sys.executable, "-m", "pktflow", "testbed", "tutorial", "step11",
                           "--json"], env=ENV, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (step,) = json.loads(done.stdout)["steps"]
    assert step["passed"] and step["step"] == 11
    rows = step["phases"][0]["ports"]
    sent = rows[0]["tx_packets"]
    assert sent % 4 == 0 and 0 < sent <= 8192
    assert [r["rx_packets"] for r in rows] == [sent // 2, sent // 4]
    assert step["peak_clones"] >= 2
    clones = next(c for c in step["checks"] if c["name"] == "vector handler clones")
    assert clones["passed"]
    assert not any("dropped" in note for note in step["notes"]), step["notes"]
    offered = next(n for n in step["notes"] if n.startswith("offered"))
    assert f"offered {sent} packets at 60000 pps = 7.296% of 10 Gbit/s" in offered


def test_nat_passes_on_the_testbed():
    """Two generator ports (clients on the private side, server on the public side) and
    the NAT in its own process on the target host."""
    done = subprocess.run([sys.executable, "-m", "pktflow", "testbed", "tutorial", "nat",
                           "--packets", "2000", "--json"], env=ENV, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["steps"] == [] and doc["passed"]
    nat = doc["nat"]
    assert nat["passed"] and nat["packets"] == 2000
    assert [(p["tx_packets"], p["rx_packets"]) for p in nat["ports"]] == [(2000, 2000)] * 2
    checks = {c["name"]: c["ok"] for c in nat["checks"]}
    assert all(checks.values()) and len(checks) == 11
    assert any(name.startswith("11 clients mapped") for name in checks)
    # 2000 each way, 11 mapping probes and 8 ARP/echo/UDP/ICMP probes: nothing else.
    assert "4019 in, 4019 ended" in next(c["detail"] for c in nat["checks"]
                                         if c["name"].startswith("NF accounting"))


def test_unknown_step_word_is_refused():
    done = subprocess.run([sys.executable, "-m", "pktflow", "testbed", "tutorial", "nat",
                           "step12"], env=ENV, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and 'unknown step "step12"' in done.stderr
