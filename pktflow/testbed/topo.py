"""Testbed topologies built through Mininet: hosts in network namespaces joined by direct
veth links (no switch), torn down on exit, on failure and on SIGINT/SIGTERM/SIGHUP.

`Testbed.tutorial()` is the tutorial's two-host topology (generator port 0 to target
port 0, port 1 to port 1); `Testbed.fan_in(n)` gives n generator hosts, each with one link
to a sink host. Each host's namespace is also named for `ip netns` (`pft-HOST`), so a user
can `ip netns exec pft-gen ...` into it while the testbed is up.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from pktflow.testbed.net import PREFIX, TestbedError, import_mininet, require_root, run


@dataclass(frozen=True)
class LinkSpec:
    """A veth link: host_a's interface port_a to host_b's interface port_b."""

    host_a: str
    port_a: int
    host_b: str
    port_b: int


def intf_name(host: str, port: int) -> str:
    """The interface name of a host's port (Mininet's HOST-ethN convention)."""
    return f"{PREFIX}{host}-eth{port}"


class Testbed:
    """Mininet hosts joined by direct veth links; use as a context manager."""

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, hosts: list[str], links: list[LinkSpec], mtu: int = 1500) -> None:
        """`mtu`: of every link end (above 1500 when frames grow on the way, e.g. a
        tunnel header added by the NF)."""
        if not 68 <= mtu <= 65535:
            raise TestbedError(f"mtu must be 68..65535, got {mtu}")
        for h in hosts:
            if len(intf_name(h, 9)) > 15:
                raise TestbedError(f'host name "{h}" is too long for interface names')
        self.hosts = hosts
        self.links = links
        self.mtu = mtu
        self.net = None
        self.nodes: dict = {}
        self.setup_seconds = 0.0
        self.memory_kib = 0
        self._old_handlers: dict[int, object] = {}

    @classmethod
    def tutorial(cls, mtu: int = 1500) -> Testbed:
        """Generator host `gen` and target host `tgt`, port 0 to 0 and 1 to 1."""
        return cls(["gen", "tgt"], [LinkSpec("gen", 0, "tgt", 0), LinkSpec("gen", 1, "tgt", 1)],
                   mtu)

    @classmethod
    def fan_in(cls, generators: int) -> Testbed:
        """Hosts g1..gN, each with port 0 linked to port i-1 of host `sink`."""
        if not 1 <= generators <= 10:
            raise TestbedError(f"generators must be 1..10, got {generators}")
        gens = [f"g{i}" for i in range(1, generators + 1)]
        return cls(gens + ["sink"], [LinkSpec(g, 0, "sink", i) for i, g in enumerate(gens)])

    # ---- life cycle -----------------------------------------------------------------
    def __enter__(self) -> Testbed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        require_root()
        import_mininet()
        from mininet.log import setLogLevel
        from mininet.net import Mininet

        setLogLevel("warning")
        self._catch_signals()
        t0 = time.monotonic()
        avail0 = _mem_available_kib()
        try:
            self.net = Mininet(build=False, controller=None, autoSetMacs=False)
            for h in self.hosts:
                node = self.net.addHost(PREFIX + h, ip=None)
                self.nodes[h] = node
                # No IPv6 in test hosts: their links then carry only the traffic we send.
                node.cmd("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 "
                         "net.ipv6.conf.default.disable_ipv6=1")
                run("ip", "netns", "attach", self.ns_name(h), str(node.pid))
            for link in self.links:
                self.net.addLink(self.nodes[link.host_a], self.nodes[link.host_b],
                                 intfName1=intf_name(link.host_a, link.port_a),
                                 intfName2=intf_name(link.host_b, link.port_b))
                if self.mtu != 1500:
                    for h, port in ((link.host_a, link.port_a), (link.host_b, link.port_b)):
                        run("ip", "-n", self.ns_name(h), "link", "set", intf_name(h, port),
                            "mtu", str(self.mtu))
            for h in self.hosts:
                self.nodes[h].cmd("ip link set lo up")
            self._wait_carrier()
        except BaseException:
            self.stop()
            raise
        self.setup_seconds = time.monotonic() - t0
        self.memory_kib = max(0, avail0 - _mem_available_kib())

    def stop(self) -> None:
        """Kill the hosts' processes and shells, delete links and namespace names."""
        try:
            if self.net is not None:
                net, self.net = self.net, None
                for node in self.nodes.values():
                    with contextlib.suppress(Exception):
                        node.cmd("kill -9 $(jobs -p) 2>/dev/null")
                with contextlib.suppress(Exception):
                    net.stop()
            for h in self.hosts:
                run("ip", "netns", "del", self.ns_name(h), check=False)
            self.nodes = {}
        finally:
            self._restore_signals()

    def _wait_carrier(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for link in self.links:
            for h, port in ((link.host_a, link.port_a), (link.host_b, link.port_b)):
                name = intf_name(h, port)
                while "LOWER_UP" not in run("ip", "-n", self.ns_name(h), "-o", "link", "show",
                                            name).stdout:
                    if time.monotonic() > deadline:
                        raise TestbedError(f"{name} has no carrier")
                    time.sleep(0.02)

    def _catch_signals(self) -> None:
        """Make SIGTERM and SIGHUP unwind like Ctrl-C, so `finally` tears everything down."""
        if threading.current_thread() is not threading.main_thread():
            return

        def interrupt(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, interrupt)

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers = {}

    # ---- using hosts ----------------------------------------------------------------
    def ns_name(self, host: str) -> str:
        """The `ip netns` name of a host's namespace."""
        return f"{PREFIX}-{host}"

    def ns_path(self, host: str) -> str:
        """A path for `pktflow.ports.linux.netns()`: the host shell's namespace."""
        return f"/proc/{self.nodes[host].pid}/ns/net"

    def intf(self, host: str, port: int) -> str:
        return intf_name(host, port)

    def popen(self, host: str, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start a process inside a host's namespace (it dies with the testbed)."""
        return self.nodes[host].popen(argv, **kwargs)

    def summary(self) -> str:
        """Hosts, links, set-up time and memory, as printed by `pktflow testbed`."""
        lines = [f"testbed up in {self.setup_seconds:.2f} s: {len(self.hosts)} hosts "
                 f"(network namespaces, no VMs), {len(self.links)} veth links; memory used "
                 f"{self.memory_kib / 1024:.1f} MiB (host shells "
                 f"{self.shells_rss_kib() / 1024:.1f} MiB RSS)"]
        for link in self.links:
            a_name = intf_name(link.host_a, link.port_a)
            lines.append(f"  {link.host_a} port {link.port_a} ({a_name})"
                         f" <-> {link.host_b} port {link.port_b} "
                         f"({intf_name(link.host_b, link.port_b)})")
        lines.append("  enter a host: ip netns exec " + " | ".join(self.ns_name(h)
                                                                  for h in self.hosts) + " CMD")
        return "\n".join(lines)

    def shells_rss_kib(self) -> int:
        total = 0
        for node in self.nodes.values():
            with contextlib.suppress(OSError), open(f"/proc/{node.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total


def _mem_available_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def python_argv(*args: str) -> list[str]:
    """argv running pktflow with this interpreter and environment inside a host."""
    import sys

    return [sys.executable, "-m", "pktflow", *args]

