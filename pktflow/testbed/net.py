"""Network namespaces and veth links for tests, benchmarks and the Mininet testbed.

`VethLab` builds named namespaces (`ip netns`) joined by veth pairs created directly inside
them (never in the root namespace) and removes all of it on exit, also after an error.
`import_mininet()` loads Debian's Mininet package into this interpreter without putting the
rest of Debian's dist-packages on the path. `clean()` removes leftovers by pktflow's names.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import ModuleType

# Every namespace, link and Mininet host pktflow creates starts with this prefix, so
# `pktflow testbed clean` can find leftovers without touching anything else.
PREFIX = "pft"
DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"


class TestbedError(RuntimeError):
    """The testbed cannot be built or used; the message says what to do."""


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command (ip, sysctl, ...) and raise TestbedError with its stderr on failure."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise TestbedError(f"{cmd[0]} not found: install iproute2 (Debian package)") from None
    if check and proc.returncode != 0:
        raise TestbedError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def require_root(what: str = "the testbed") -> None:
    if os.geteuid() != 0:
        raise TestbedError(f"{what} creates network namespaces: run it as root (sudo)")


def quiet_namespace(ns: str) -> None:
    """Turn IPv6 off in a namespace so its links carry only the traffic we send (no router
    solicitations or MLD reports arriving in the middle of a test)."""
    run("ip", "netns", "exec", ns, "sysctl", "-q", "-w",
        "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")


@dataclass
class VethLab:
    """Namespaces joined by veth pairs; use as a context manager.

    `VethLab("t1", ["a", "b"], [("a", "a0", "b", "b0")])` makes namespaces pft-t1-a and
    pft-t1-b with a link a0 <-> b0, both ends up, IPv6 off.
    """

    tag: str
    hosts: list[str]
    links: list[tuple[str, str, str, str]]
    mtu: int = 1500
    created: list[str] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"{PREFIX}-{self.tag}-{host}"

    def __enter__(self) -> VethLab:
        require_root()
        try:
            for host in self.hosts:
                name = self.ns(host)
                run("ip", "netns", "add", name)
                self.created.append(name)
                quiet_namespace(name)
                run("ip", "-n", name, "link", "set", "lo", "up")
            for ha, ia, hb, ib in self.links:
                run("ip", "link", "add", ia, "netns", self.ns(ha), "mtu", str(self.mtu),
                    "type", "veth", "peer", "name", ib, "netns", self.ns(hb),
                    "mtu", str(self.mtu))
                run("ip", "-n", self.ns(ha), "link", "set", ia, "up")
                run("ip", "-n", self.ns(hb), "link", "set", ib, "up")
            self.wait_carrier()
        except BaseException:
            self.close()
            raise
        return self

    def wait_carrier(self, timeout: float = 5.0) -> None:
        """Wait until every link end reports carrier (veth needs both ends up)."""
        deadline = time.monotonic() + timeout
        for ha, ia, hb, ib in self.links:
            for host, ifname in ((ha, ia), (hb, ib)):
                while True:
                    out = run("ip", "-n", self.ns(host), "-o", "link", "show", ifname).stdout
                    if "LOWER_UP" in out:
                        break
                    if time.monotonic() > deadline:
                        raise TestbedError(f"{ifname} in {self.ns(host)} has no carrier")
                    time.sleep(0.02)

    def exec(self, host: str, *cmd: str, **kwargs) -> subprocess.Popen:
        """Start a command inside a host's namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.ns(host), *cmd], **kwargs)

    def open_port(self, host: str, spec: str, pool, port_id: int = 0):
        """Create a port from `DRIVER:ARGS` inside a host's namespace and open it on `pool`;
        the port stays bound to that namespace whichever thread uses it later."""
        from pktflow.ports.base import PortTable
        from pktflow.ports.linux import netns

        with netns(self.ns(host)):
            port = next(iter(PortTable.from_specs([f"{port_id}={spec}"])))
        try:
            port.open(pool)
        except BaseException:
            port.close()
            raise
        return port

    def close(self) -> None:
        # Deleting a namespace deletes the veth ends inside it, and with them the peers.
        for name in reversed(self.created):
            run("ip", "netns", "del", name, check=False)
        self.created.clear()

    def __exit__(self, *exc) -> None:
        self.close()


def leftovers() -> dict[str, list]:
    """What pktflow's testbed left behind: named namespaces, root-namespace links and
    Mininet host shells (by pid) whose names carry the pktflow prefix."""
    names = run("ip", "netns", "list", check=False).stdout.split()
    namespaces = [n for n in names if n.startswith(f"{PREFIX}-")]
    links = re.findall(rf"^\d+: ({PREFIX}[\w.-]*)[@:]",
                       run("ip", "-o", "link", "show", check=False).stdout, re.M)
    shells = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.startswith(f"mininet:{PREFIX}".encode()) for a in args):
            shells.append(int(pid))
    return {"namespaces": namespaces, "links": links, "shells": shells}


def clean() -> dict[str, list]:
    """Remove every leftover that `leftovers()` finds, and kill the processes still inside
    its namespaces (an NF a killed `testbed tutorial` started); returns what it removed."""
    found = leftovers()
    inside = []
    for name in found["namespaces"]:
        inside += [int(pid) for pid in
                   run("ip", "netns", "pids", name, check=False).stdout.split()
                   if pid.isdigit() and int(pid) not in found["shells"]]
    if inside:
        found["processes"] = inside
    for pid in found["shells"] + inside:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for name in found["namespaces"]:
        run("ip", "netns", "del", name, check=False)
    for link in found["links"]:
        run("ip", "link", "del", link, check=False)
    return found


def import_mininet() -> ModuleType:
    """Import Mininet: the venv's own if installed, else Debian's package directory alone.

    Debian ships Mininet for /usr/bin/python3 only. Mininet is pure Python and needs only
    the standard library, so we load that one package directory into this interpreter; the
    rest of Debian's dist-packages (its numpy and so on) stays off sys.path.
    """
    if "mininet" in sys.modules:
        return sys.modules["mininet"]
    spec = importlib.util.find_spec("mininet")
    if spec is None:
        spec = importlib.machinery.PathFinder.find_spec("mininet", [DEBIAN_DIST_PACKAGES])
    if spec is None:
        raise TestbedError("Mininet is not installed: apt-get install mininet")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mininet"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["mininet"]
        raise
    return module


def numbered_frames(count: int, tag: int = 0, size: int = 128) -> list[bytes]:
    """Distinct test frames (local experimental ethertype 0x88b5, so no stack answers them)
    carrying a tag and a sequence number; lengths vary around `size`."""
    head = bytes.fromhex("0200000000aa0200000000bb88b5")
    pattern = bytes(range(256)) * ((size + 512) // 256 + 1)
    return [head + bytes([tag]) + i.to_bytes(4, "big")
            + pattern[i & 255:(i & 255) + size - 19 + i % 7] for i in range(count)]


def send_frames(port, frames: list[bytes], chunk: int = 256) -> int:
    """Send `frames` through an open port in batches of `chunk`; returns how many it sent."""
    from pktflow.packet.pool import Batch

    pool, sent = port.pool, 0
    for at in range(0, len(frames), chunk):
        batch = Batch(pool, chunk)
        part = frames[at:at + chunk]
        if pool.alloc_into(batch, len(part)) != len(part):
            pool.free(batch)
            raise TestbedError("pool exhausted while building test frames")
        for b, frame in zip(batch.idx[:batch.n], part, strict=True):
            pool.write(int(b), frame)
        sent += port.send(batch)
    return sent


def receive_frames(port, count: int, timeout: float = 5.0) -> list[bytes]:
    """Poll an open port until `count` frames arrived or `timeout` passed; their bytes."""
    from pktflow.packet.pool import Batch

    pool, out = port.pool, []
    deadline = time.monotonic() + timeout
    batch = Batch(pool, 256)
    while len(out) < count and time.monotonic() < deadline:
        if port.recv(batch, 256) == 0:
            time.sleep(0.001)
            continue
        out.extend(batch.frames())
        pool.free(batch)
    return out
