"""A three-namespace lab for fault injection and soak runs: generator g, NF n, sink s.

    g:g0 <-> n:n0   NF port 0 (receives)
    n:n1 <-> s:s0   NF port 1 (sends)

The NF's ports are made inside n (AF_PACKET or AF_XDP); the generator and the sink are
AF_PACKET ports of this process, driven by threads that count what they send and get.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import numpy as np

from pktflow.packet import Pool
from pktflow.packet import meta as M
from pktflow.packet.pool import Batch
from pktflow.ports.base import PortTable
from pktflow.ports.linux import netns
from pktflow.testbed.net import VethLab, leftovers

LINKS = [("g", "g0", "n", "n0"), ("n", "n1", "s", "s0")]
TAG = 0x5A  # marks the frames Traffic sends


def make_lab(prefix: str = "rl") -> VethLab:
    """Namespaces pft-<prefix><pid>-{g,n,s} (a tag no other helper or run uses)."""
    return VethLab(f"{prefix}{os.getpid() % 100000}", ["g", "n", "s"], LINKS)


def nf_ports(lab: VethLab, driver: str) -> PortTable:
    """NF ports 0 (n0) and 1 (n1), made in namespace n, not opened yet."""
    with netns(lab.ns("n")):
        return PortTable.from_specs([f"0={driver}:n0", f"1={driver}:n1"])


def ip(lab: VethLab, host: str, *args: str, check: bool = True) -> str:
    return subprocess.run(["ip", "-n", lab.ns(host), *args], capture_output=True, text=True,
                          check=check, timeout=30).stdout


def xdp_programs(lab: VethLab) -> list[str]:
    """Interfaces of the lab that still carry an XDP program."""
    found = []
    for host in lab.hosts:
        out = ip(lab, host, "-d", "-o", "link", "show", check=False)
        found += [f"{lab.ns(host)}:{line.split(':')[1].strip().split('@')[0]}"
                  for line in out.splitlines()
                  if "prog/xdp" in line or "xdp" in line.split("link/")[0]]
    return found


def lab_leftovers(lab: VethLab) -> list[str]:
    """Namespaces of this lab that still exist (call after the lab closed)."""
    return [n for n in leftovers()["namespaces"] if n.startswith(f"pft-{lab.tag}-")]


class Traffic:
    """A generator thread sending numbered frames on g0 at about `pps` (0: as fast as it
    can) and a sink thread counting on s0 the frames it sent and any others."""

    def __init__(self, lab: VethLab, pps: float = 20000, size: int = 128) -> None:
        self.pool = Pool(buffers=16384, name="reliability-peers")
        self.gen = lab.open_port("g", "packet:g0", self.pool, 0)
        self.sink = lab.open_port("s", "packet:s0", self.pool, 1)
        # Same-size frames (local ethertype 0x88b5, tag byte 14, sequence number after it),
        # copied into buffers a batch at a time, so the generator outruns the NF.
        head = bytes.fromhex("0200000000aa0200000000bb88b5") + bytes([TAG])
        self.frames = np.array([np.frombuffer((head + i.to_bytes(4, "big") + bytes(range(256))
                                               * 8)[:size], dtype=np.uint8)
                                for i in range(1024)])
        self.size = size
        self.pps = pps
        self.sent = 0
        self.send_failed = 0
        self.received = 0
        self.unknown = 0
        self._stop_send = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._recv, daemon=True)]

    def start(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def _send(self) -> None:
        chunk, at, pool = 256, 0, self.pool
        h, size = pool.headroom, self.size
        started = time.monotonic()
        while not self._stop_send.is_set():
            batch = Batch(pool, chunk)
            n = pool.alloc_into(batch, chunk)
            rows = batch.idx[:n]
            pool.data[rows, h:h + size] = self.frames[(at + np.arange(n)) % len(self.frames)]
            pool.meta[rows, M.LEN] = size
            try:
                n = self.gen.send(batch)
            except Exception:  # noqa: BLE001  (a link going down under the generator)
                pool.free(batch)
                n = 0
            self.sent += n
            self.send_failed += chunk - n
            at += chunk
            if self.pps:
                ahead = (self.sent + self.send_failed) / self.pps - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            elif n == 0:
                time.sleep(0.001)

    def _recv(self) -> None:
        batch = Batch(self.pool, 256)
        data, meta = self.pool.data, self.pool.meta
        while not self._stop.is_set():
            batch.n = 0
            try:
                got = self.sink.recv(batch, 256)
            except Exception:  # noqa: BLE001
                got = 0
            if not got:
                time.sleep(0.0005)
                continue
            rows = batch.idx[:got]
            ours = (meta[rows, M.LEN] == self.size) & (
                data[rows, meta[rows, M.START] + 14] == TAG)
            mine = int(ours.sum())
            self.received += mine
            self.unknown += got - mine
            self.pool.free(batch)

    def wait_received(self, more_than: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.received <= more_than:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self, settle: float = 0.5) -> None:
        """Stop sending, let the NF's last frames reach the sink, stop receiving."""
        self._stop_send.set()
        self._threads[0].join(5)
        time.sleep(settle)
        self._stop.set()
        self._threads[1].join(5)

    def close(self) -> None:
        self._stop_send.set()
        self._stop.set()
        for t in self._threads:
            if t.ident is not None:
                t.join(5)
        self.gen.close()
        self.sink.close()
