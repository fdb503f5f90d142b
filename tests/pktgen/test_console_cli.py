"""The console through a pseudo-terminal, and the non-interactive command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pyte

ROOT = Path(__file__).resolve().parents[2]
ROWS, COLS = 50, 140


def _env() -> dict[str, str]:
    env = dict(os.environ, TERM="xterm", PYTHONPATH=str(ROOT))
    cache = ROOT / ".venv" / "cache"
    env.setdefault("PKTFLOW_CACHE_DIR", str(cache))
    env.setdefault("NUMBA_CACHE_DIR", str(cache / "numba"))
    return env


class Screen:
    """A VT100 screen fed from a pexpect child: what a user would see."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)

    def pump(self) -> None:
        while True:
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.05))
            except (pexpect.TIMEOUT, pexpect.EOF):
                return

    def wait_for(self, predicate, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            lines = self.screen.display
            if predicate(lines):
                return lines
        raise AssertionError("screen never showed it:\n" + "\n".join(self.screen.display))


def _row(lines: list[str], label: str) -> list[str]:
    for line in lines:
        if line.startswith(label):
            return line[len(label):].split()
    return []


def test_console_load_start_stop_quit(tmp_path):
    script = tmp_path / "step.pg"
    script.write_text("set 0 rate 0.5\nset 0 size 128\nbogus command\n")
    child = pexpect.spawn(sys.executable, ["-m", "pktflow", "pktgen", "--port", "0=mem:c",
                                           "--port", "1=mem:c"],
                          env=_env(), dimensions=(ROWS, COLS), cwd=str(ROOT))
    try:
        screen = Screen(child)
        screen.wait_for(lambda lines: any("Pktgen:/>" in line for line in lines))
        child.send(f"load {script}\r")
        lines = screen.wait_for(lambda ls: any("step.pg:3" in line for line in ls))
        assert any("unknown command" in line for line in lines)
        screen.wait_for(lambda ls: _row(ls, "Pkt Size/Tx Burst")[:1] == ["128"])
        child.send("start 0\r")
        # The page refreshes by itself: Tx packets of port 0 and Rx of port 1 grow.
        lines = screen.wait_for(lambda ls: _row(ls, "      Tx Pkts")[:1] not in ([], ["0"])
                                and _row(ls, "Total Rx Pkts")[1:2] not in ([], ["0"]))
        assert _row(lines, "Port:Flags")[0].endswith("/TX")
        child.send("stop 0\r")
        lines = screen.wait_for(lambda ls: not _row(ls, "Port:Flags")[0].endswith("/TX"))
        first = _row(lines, "      Tx Pkts")[0]
        time.sleep(1.5)
        lines = screen.wait_for(lambda ls: True)
        assert _row(lines, "      Tx Pkts")[0] == first  # stopped means stopped
        assert _row(lines, "Rx Sizes 64")[1] == "0"
        assert _row(lines, "         65-127")[1] == "0"
        assert _row(lines, "         128-255")[1] != "0"  # 124-byte frames + FCS
        child.send("page range\r")
        screen.wait_for(lambda ls: any(line.startswith("dst.ip") for line in ls))
        child.send("quit\r")
        child.expect(pexpect.EOF, timeout=10)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def _cli(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pktflow", "pktgen", *args], input=stdin,
                          capture_output=True, text=True, env=_env(), cwd=str(ROOT),
                          timeout=timeout)


def test_cli_count_json():
    run = _cli("--port", "0=mem:x", "--port", "1=mem:x", "--count", "5000", "--json")
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout)
    assert stats["0"]["tx_generated"] == stats["1"]["tx_generated"] == 5000
    assert stats["0"]["rx_packets"] + stats["0"]["rx_dropped"] == stats["1"]["tx_packets"]


def test_cli_script_errors_name_the_line_and_run_for(tmp_path):
    script = tmp_path / "s.pg"
    script.write_text("set 0 pps 1000\nset 0 size huge\nstart 0\n")
    run = _cli("--port", "0=mem:y", "--port", "1=mem:y", "-f", str(script), "--run-for", "0.5",
               "--json")
    assert run.returncode == 0, run.stderr
    assert f"{script}:2: size" in run.stdout + run.stderr
    stats = json.loads(run.stdout[run.stdout.index("{"):])
    assert 200 < stats["0"]["tx_generated"] < 1000
    assert stats["1"]["tx_generated"] == 0  # the script started port 0 only


def test_cli_reads_commands_from_stdin():
    run = _cli("--port", "0=mem:z", "--port", "1=mem:z",
               stdin="set 0 count 100\nstart 0\nnonsense\ndelay 300\npage main\n")
    assert run.returncode == 0, run.stderr
    assert "<stdin>:3: unknown command" in run.stderr
    assert "Total Rx Pkts" in run.stdout


def test_cli_bad_port_spec():
    run = _cli("--port", "0=nothing")
    assert run.returncode == 2 and "bad port spec" in run.stderr


def test_console_shows_engine_warnings_in_its_message_lines(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    capture = tmp_path / "cut.pcap"
    wrpcap(str(capture), [Ether() / IP() / UDP() for _ in range(3)])
    with open(capture, "ab") as f:
        f.write(bytes(16 + 5))  # a record header and 5 bytes: cut short
    child = pexpect.spawn(sys.executable, ["-m", "pktflow", "pktgen", "--port", "0=mem:w",
                                           "--port", "1=mem:w", "--pcap", f"0={capture}"],
                          env=_env(), dimensions=(ROWS, COLS), cwd=str(ROOT))
    try:
        screen = Screen(child)
        screen.wait_for(lambda lines: any("Pktgen:/>" in line for line in lines))
        child.send("enable 0 pcap\r")
        child.send("start 0\r")
        lines = screen.wait_for(lambda ls: any(line.startswith("warning: port 0:")
                                               and "cut.pcap" in line for line in ls))
        assert any("port 0:" in line and "truncated record" in line and not
                   line.startswith("warning") for line in lines)  # the page's note
        child.send("quit\r")
        child.expect(pexpect.EOF, timeout=10)
    finally:
        child.close(force=True)
