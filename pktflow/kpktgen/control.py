"""A typed controller for the kernel packet generator's file interface.

`Pktgen(root)` speaks the /proc/net/pktgen protocol (pgctrl, kpktgend_N thread files,
IFACE@N device files) to whatever serves it: the kernel, or pktflow's own engine mounted
with `pktflow kpktgen serve`. Each command is one write(2), as the kernel parses one
command per write; after each write the file's `Result:` line says whether pktgen took it,
and a refusal becomes a `KpktgenError` naming the file, the line and pktgen's own words.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pktflow.kpktgen import params as vocab

DEFAULT_ROOT = Path("/proc/net/pktgen")
NO_PKTGEN = "this kernel has no pktgen (CONFIG_NET_PKTGEN)"
THREAD_PREFIX = "kpktgend_"


class KpktgenError(RuntimeError):
    """pktgen refused a command (or its files are missing); says which file, which line and
    what pktgen answered, in its own words."""

    def __init__(self, path: Path | str, line: str | None, result: str | None,
                 os_error: str | None = None) -> None:
        """`result` None: the file has no Result line (pgctrl)."""
        self.path = Path(path)
        self.line = line
        self.result = result or ""
        self.os_error = os_error
        where = f'{self.path}: writing "{line}"' if line is not None else f"{self.path}"
        parts = [os_error] if os_error else []
        if result is not None and (result or line is not None):
            parts.append(f"Result: {result}" if result else "no Result line")
        why = "; ".join(parts)
        super().__init__(f"{where}: {why}")


def _refused(before: str, after: str) -> bool:
    """Whether the Result line after a successful write(2) reports a refusal. A few
    commands (imix_weights, rate 0) leave the line as it was; the kernel's refusals start
    with ERROR, `No such parameter`, `Flag -:NAME:- unknown` or `xmit_mode -:NAME:-`."""
    if after.startswith("OK"):
        return False
    return after != before or after.startswith(("ERROR", "No such parameter", "Flag -:",
                                                "xmit_mode -:"))


def _write(path: Path, line: str) -> None:
    """One command, one write(2), as `echo CMD > FILE` does."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


# ---- results ----------------------------------------------------------------------------

@dataclass
class Result:
    """A device file read back: the kernel's `Result:` text (kept word for word), the
    figures of a finished run parsed from it, and the Params and Current sections."""

    text: str  # after "Result: ": "Idle", "Starting", "OK: count=100", "OK: 123(c..." ...
    ok: bool  # the last command or run ended well (text starts with "OK")
    finished: bool = False  # text is a run's summary (the usec/pps figures below are set)
    usec: int = 0  # run time, of which busy (c) and idle (d)
    usec_busy: int = 0
    usec_idle: int = 0
    packets: int = 0  # sent
    pkt_size: int = 0
    frags: int = 0
    pps: int = 0
    mbps: int = 0  # the kernel's Mb/sec (10^6 bit/s, rounded down)
    bps: int = 0
    errors: int = 0
    params: dict[str, str] = field(default_factory=dict)  # Params section, label: value
    current: dict[str, str] = field(default_factory=dict)  # Current section, label: value
    flags: list[str] = field(default_factory=list)

    @property
    def sofar(self) -> int:
        """Packets sent so far (Current: pkts-sofar), also while running."""
        return int(self.current.get("pkts-sofar", 0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, text: str) -> Result:
        """Parse a device file's full text (as `cat /proc/net/pktgen/IFACE` prints it)."""
        report = vocab.parse_device_text(text)
        r = cls(report.result, report.result.startswith("OK"), params=dict(report.params),
                current=dict(report.current), flags=list(report.flags))
        figures = report.figures
        if figures is not None:
            r.finished = True
            for name, value in asdict(figures).items():
                setattr(r, name, value)
        return r


# ---- the files --------------------------------------------------------------------------

def check_command(name: str) -> None:
    """Refuse a name that is not one of pktgen's device commands (before any write)."""
    if name not in vocab.COMMANDS:
        raise ValueError(f'"{name}" is not a pktgen device command (known: '
                         f'{", ".join(vocab.COMMANDS)}, flags)')


def check_flag(name: str) -> None:
    """Refuse a flag pktgen does not know (`!NAME` clears a flag)."""
    bare = name.removeprefix("!")
    if bare not in vocab.FLAG_NAMES and bare != "FLOW_RND":
        raise ValueError(f'"{name}" is not a pktgen flag (known: {", ".join(vocab.FLAG_NAMES)}'
                         ", FLOW_RND; prefix ! to clear)")


def _command_lines(params: Mapping[str, Any]) -> list[str]:
    """Commands for `Device.set`: a keyword per command of the kernel's vocabulary; `flags`
    takes a list (each written as `flag NAME`, `!NAME` to clear), `mpls` a list of labels;
    True becomes 1. Unknown names are refused before anything is written."""
    lines = []
    for name, value in params.items():
        if name in ("flags", "flag"):
            values = [value] if isinstance(value, str) else list(value)
            for f in values:
                check_flag(f)
            lines += [f"flag {f}" for f in values]
            continue
        check_command(name)
        if isinstance(value, bool):
            value = int(value)
        elif name == "mpls" and isinstance(value, list | tuple):
            value = ",".join(f"{v:08x}" if isinstance(v, int) else str(v) for v in value)
        elif isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        lines.append(f"{name} {value}".rstrip())
    return lines


@dataclass
class Device:
    """One device file, IFACE or IFACE@N: its parameters, its state and its result."""

    root: Path
    name: str

    @property
    def path(self) -> Path:
        return self.root / self.name

    @property
    def ifname(self) -> str:
        """The interface it sends on (the name before @)."""
        return self.name.split("@", 1)[0]

    def read(self) -> str:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            raise KpktgenError(self.path, None, "",
                               "no such device file (was it added to a thread?)") from None

    def result_text(self) -> str:
        """The text after `Result: ` (several lines after a run or an unknown flag)."""
        return vocab.parse_device_text(self.read()).result

    def write(self, line: str) -> str:
        """Write one command; returns pktgen's Result text, raises KpktgenError on refusal."""
        before = self.result_text()
        try:
            _write(self.path, line)
        except OSError as e:
            raise KpktgenError(self.path, line, self.result_text(),
                               os.strerror(e.errno or errno.EIO)) from None
        after = self.result_text()
        if _refused(before, after):
            raise KpktgenError(self.path, line, after)
        return after

    def set(self, **params: Any) -> list[str]:
        """Set parameters, e.g. `set(count=1000, pkt_size=60, dst="10.0.0.2",
        dst_mac="02:00:00:00:00:02", flags=["UDPSRC_RND"])`, in the order given; returns
        pktgen's Result text for each command."""
        return [self.write(line) for line in _command_lines(params)]

    def result(self) -> Result:
        return Result.parse(self.read())


@dataclass
class Thread:
    """A kpktgend_N file: one generator thread (a CPU) and the devices it owns."""

    root: Path
    index: int

    @property
    def name(self) -> str:
        return f"{THREAD_PREFIX}{self.index}"

    @property
    def path(self) -> Path:
        return self.root / self.name

    def read(self) -> str:
        return self.path.read_text()

    def report(self) -> vocab.ThreadReport:
        return vocab.parse_thread_text(self.read())

    @property
    def running(self) -> list[str]:
        return list(self.report().running)

    @property
    def stopped(self) -> list[str]:
        return list(self.report().stopped)

    @property
    def devices(self) -> list[Device]:
        return [Device(self.root, n) for n in self.running + self.stopped]

    @property
    def result(self) -> str:
        return self.report().result

    def write(self, line: str) -> str:
        """Write one thread command; returns the Result text, raises KpktgenError."""
        try:
            _write(self.path, line)
        except FileNotFoundError:
            raise KpktgenError(self.path, line, None, f"no thread {self.name}") from None
        except OSError as e:
            raise KpktgenError(self.path, line, self.result,
                               os.strerror(e.errno or errno.EIO)) from None
        result = self.result
        if result.startswith("ERROR"):
            raise KpktgenError(self.path, line, result)
        return result

    def add_device(self, name: str) -> Device:
        """Bind interface `name` (IFACE, or IFACE@N for a second device file on the same
        interface) to this thread; its device file appears."""
        self.write(f"add_device {name}")
        return Device(self.root, name)

    def remove_all(self) -> None:
        """Remove every device of this thread (rem_device_all)."""
        self.write("rem_device_all")


class Pktgen:
    """The pktgen directory: `/proc/net/pktgen`, or an engine's mount given as `root`."""

    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        if not (self.root / "pgctrl").exists():
            hint = (f"{NO_PKTGEN}: modprobe pktgen, or serve pktflow's engine there "
                    "(`pktflow kpktgen serve --proc -- COMMAND`)"
                    if self.root == DEFAULT_ROOT else
                    "no pktgen here: mount pktflow's engine (`pktflow kpktgen serve --dir "
                    f"{self.root}`) or give the right --dir")
            raise KpktgenError(self.root / "pgctrl", None, "", hint)

    def __repr__(self) -> str:
        return f"Pktgen({str(self.root)!r})"

    @property
    def version(self) -> str:
        """pgctrl's text (the kernel prints its pktgen version)."""
        return (self.root / "pgctrl").read_text().strip()

    @property
    def threads(self) -> list[Thread]:
        found = [int(p.name[len(THREAD_PREFIX):]) for p in self.root.iterdir()
                 if p.name.startswith(THREAD_PREFIX) and p.name[len(THREAD_PREFIX):].isdigit()]
        return [Thread(self.root, i) for i in sorted(found)]

    def thread(self, index: int) -> Thread:
        t = Thread(self.root, index)
        if not t.path.exists():
            have = ", ".join(x.name for x in self.threads) or "none"
            raise KpktgenError(t.path, None, "", f"no thread {t.name} (threads: {have})")
        return t

    @property
    def devices(self) -> list[Device]:
        """Every device file, whichever thread owns it."""
        return [Device(self.root, p.name) for p in sorted(self.root.iterdir())
                if p.name != "pgctrl" and not p.name.startswith(THREAD_PREFIX)]

    def device(self, name: str) -> Device:
        return Device(self.root, name)

    def ctrl(self, command: str) -> None:
        """Write `start`, `stop` or `reset` to pgctrl. The kernel's `start` returns when
        every device has finished (or on a signal); pgctrl has no Result line, so a refusal
        is the write's error."""
        path = self.root / "pgctrl"
        try:
            _write(path, command)
        except OSError as e:
            raise KpktgenError(path, command, None, os.strerror(e.errno or errno.EIO)
                               + " (pgctrl takes start, stop or reset)") from None

    def start(self) -> None:
        """Run every configured device; returns when all have finished."""
        self.ctrl("start")
        self.wait()

    def stop(self) -> None:
        self.ctrl("stop")

    def reset(self) -> None:
        """Stop and remove every device of every thread."""
        self.ctrl("reset")

    def running(self) -> list[str]:
        return [n for t in self.threads for n in t.running]

    def wait(self, timeout: float | None = None, poll: float = 0.05) -> bool:
        """Wait until no device runs; False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(poll)
        return True

    def start_in_background(self) -> Run:
        """Start in a thread of this process (the start write blocks while devices run), so
        the caller can watch rates and stop it."""
        return Run(self)

    def results(self) -> dict[str, Result]:
        return {d.name: d.result() for d in self.devices}

    def snapshot(self) -> dict[str, Any]:
        """Threads, their devices and every device's result, as plain data (`show --json`)."""
        return {"root": str(self.root),
                "threads": {t.name: {"running": t.running, "stopped": t.stopped,
                                     "result": t.result} for t in self.threads},
                "devices": {n: r.to_dict() for n, r in self.results().items()}}

    def configure(self, threads: Mapping[int, Mapping[str, Mapping[str, Any]]],
                  reset: bool = True) -> list[Device]:
        """Reset (unless told not to), then per thread index add each device and set its
        parameters: `{0: {"veth0": {"count": 100, "dst": "10.0.0.2"}}}`."""
        if reset:
            self.reset()
        devices = []
        for index, devs in threads.items():
            thread = self.thread(index)
            if reset:
                thread.remove_all()
            for name, params in devs.items():
                dev = thread.add_device(name)
                dev.set(**params)
                devices.append(dev)
        return devices


class Run:
    """A `start` written by a child process (the write blocks while devices run); `stop()`
    ends it as Ctrl-C ends the kernel's sample scripts: a signal to the writer, on which
    pktgen stops every device and keeps their results. (A second writer's `stop` to pgctrl
    works on the kernel's procfs, but a FUSE server gets writes to one file one at a time.)
    """

    def __init__(self, pg: Pktgen) -> None:
        self.pg = pg
        self.started = time.monotonic()
        path = pg.root / "pgctrl"
        # sh's echo is one write(2), as the kernel's scripts do it.
        self._writer = subprocess.Popen(["sh", "-c", 'echo start > "$1"', "sh", str(path)],
                                        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
        self._stopped = False

    @property
    def done(self) -> bool:
        return self._writer.poll() is not None and not self.pg.running()

    def stop(self) -> None:
        """End the run now; the devices keep what they sent in their results."""
        self._stopped = True
        if self._writer.poll() is None:
            self._writer.send_signal(signal.SIGINT)
            try:
                self._writer.wait(5)
            except subprocess.TimeoutExpired:
                self._writer.kill()
                self._writer.wait()
        self.pg.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to end (False if `timeout` passed); raises KpktgenError if
        pgctrl refused the start."""
        try:
            code = self._writer.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        if code != 0 and not self._stopped:
            err = self._writer.stderr.read().decode(errors="replace").strip() \
                if self._writer.stderr else ""
            raise KpktgenError(self.pg.root / "pgctrl", "start", None,
                               err.rsplit(": ", 1)[-1] or f"writer exited with {code}")
        return self.pg.wait(None if timeout is None else
                            max(0.0, timeout - (time.monotonic() - self.started)))


def rates(before: Mapping[str, Result], after: Mapping[str, Result], seconds: float,
          ) -> dict[str, float]:
    """Packets per second per device between two readings of their Current sections."""
    return {n: (after[n].sofar - before[n].sofar) / seconds if n in before and seconds > 0
            else 0.0 for n in after}

