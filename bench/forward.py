"""bench/forward: receive -> rewrite both MACs -> send on memory ports, one worker core,
against dpdk-testpmd's mac forwarding on null ports, counted the same way (packets
forwarded per second per forwarding core).

Feeding: the NF's ports 0 and 1 are the two ends of one memory wire, so every packet the
NF sends on port 1 arrives again on its port 0. The wire is prefilled once with 64-byte
frames; after that no extra thread or Python loop feeds it, so the source costs nothing
beyond the NF's own receive and send, as testpmd's null ports cost it nothing.

Each rate is given twice: per wall-clock second, and per second of CPU time of the
forwarding thread (pktflow's worker, testpmd's forwarding lcore). On a machine shared with
other work the wall-clock figure depends on how much of the core each run happened to get;
the CPU-time figure is the cost of forwarding itself, so its ratio is the comparable one.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import threading
import time
from pathlib import Path

from pktflow.flow import FlowConfig, System
from pktflow.packet.build import frame
from pktflow.ports.base import PortTable

RUN_SECONDS = 3.0
PREFILL_BATCHES = 8
PEER_MAC = "02:00:00:00:00:99"


def rewrite_macs(pkt, ctx):
    """NFF-Go tutorial step 2: destination = the peer, source = our port."""
    pkt.eth.dst = ctx[0]
    pkt.eth.src = ctx[1]


def _frame64() -> bytes:
    raw = frame(eth={"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"},
                ipv4={"src": "10.0.0.1", "dst": "10.0.0.2"}, udp={})
    return raw + bytes(64 - len(raw))


def thread_cpu_ns(pid: int, tid: int) -> int:
    """CPU time a thread has run, in ns (the kernel's schedstat)."""
    return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])


def pktflow_rate(mode: str, batch: int, seconds: float, wire: str) -> tuple[float, float]:
    """Forwarded packets per wall-clock second and per CPU second of the worker thread,
    of the flow graph on one pinned core."""
    import numpy as np

    nf = System(FlowConfig(cores=1, batch_size=batch, ring_size=max(16384, batch)),
                PortTable.from_specs([f"0=mem:{wire},ring=65536", f"1=mem:{wire},ring=65536"]))
    ctx = np.array([int.from_bytes(bytes.fromhex(PEER_MAC.replace(":", "")), "big"),
                    int(nf.port_mac(1))], dtype=np.int64)
    f = nf.receiver(0)
    nf.handler(f, rewrite_macs, ctx, mode=mode)
    nf.sender(f, 1)
    pool = nf.pool
    raw = _frame64()
    prefill = pool.alloc(PREFILL_BATCHES * batch)
    for k in range(prefill.n):
        pool.write(int(prefill.idx[k]), raw)
    nf.ports[1].send(prefill)  # arrives on port 0
    nf.start()
    time.sleep(0.5)  # warm-up: compiled kernels loaded, caches hot
    pid = os.getpid()
    workers = [t.native_id for t in threading.enumerate()
               if t.name.startswith("pktflow-") and t.name != "pktflow-scheduler"]
    cpu0 = sum(thread_cpu_ns(pid, tid) for tid in workers)
    before = nf.ports[1].stats.tx_packets
    t0 = time.perf_counter()
    time.sleep(seconds)
    sent = nf.ports[1].stats.tx_packets - before
    elapsed = time.perf_counter() - t0
    cpu = (sum(thread_cpu_ns(pid, tid) for tid in workers) - cpu0) / 1e9
    nf.close()
    return sent / elapsed, sent / max(cpu, 1e-9)


def python_loop_rate(count: int = 200_000) -> float:
    """A plain Python per-packet loop doing the same rewrite on bytes objects."""
    raw = _frame64()
    packets = [raw] * 1024
    dst = bytes.fromhex(PEER_MAC.replace(":", ""))
    src = bytes.fromhex("020000000042")
    done = 0
    t0 = time.perf_counter()
    while done < count:
        packets = [dst + src + p[12:] for p in packets]
        done += len(packets)
    return done / (time.perf_counter() - t0)


class _Console:
    """testpmd in interactive mode: commands on stdin, its output collected."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.out = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            self.out += chunk

    def wait_for(self, text: str, after: int, timeout: float) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            at = self.out.find(text.encode(), after)
            if at >= 0:
                return at + len(text)
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        tail = self.out[-400:].decode(errors="replace")
        raise RuntimeError(f"testpmd: no {text!r} within {timeout} s; last output:\n{tail}")

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()


def _forwarding_threads(pid: int) -> list[int]:
    """testpmd's forwarding lcore threads (named rte-worker-N or lcore-worker-N)."""
    tids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = (task / "comm").read_text().strip()
        if "worker" in name and ("rte" in name or "lcore" in name):
            tids.append(int(task.name))
    return tids


DPDK_PREFIX = f"pktflow-forward-{os.getpid()}"  # EAL's run folder /var/run/dpdk/<prefix>


def testpmd_rate(seconds: float) -> tuple[float, float] | None:
    """Packets testpmd forwards per wall-clock second and per CPU second of its one
    forwarding core (null ports)."""
    exe = shutil.which("dpdk-testpmd")
    if exe is None:
        print("testpmd: dpdk-testpmd not found (Debian package dpdk)")
        return None
    argv = [exe, "--no-huge", "--no-pci", "--vdev=net_null0", "--vdev=net_null1", "-l", "0-1",
            "-m", "1024", f"--file-prefix={DPDK_PREFIX}", "--log-level=error", "--", "-i",
            "--forward-mode=mac",
            "--total-num-mbufs=65536"]
    console = _Console(argv)
    try:
        pos = console.wait_for("testpmd> ", 0, 120)  # EAL and mempool set-up take a while
        pid = console.proc.pid
        workers = _forwarding_threads(pid)
        if not workers:
            raise RuntimeError("testpmd: no forwarding lcore thread found in /proc")
        console.send("start")
        cpu0 = sum(thread_cpu_ns(pid, tid) for tid in workers)
        t0 = time.perf_counter()
        pos = console.wait_for("testpmd> ", pos, 10)
        time.sleep(seconds)
        console.send("stop")
        pos = console.wait_for("testpmd> ", pos, 20)
        elapsed = time.perf_counter() - t0
        cpu = (sum(thread_cpu_ns(pid, tid) for tid in workers) - cpu0) / 1e9
        console.send("quit")
        console.proc.wait(timeout=30)
    finally:
        if console.proc.poll() is None:
            console.proc.kill()
            console.proc.wait()
        shutil.rmtree(f"/var/run/dpdk/{DPDK_PREFIX}", ignore_errors=True)
    text = console.out.decode(errors="replace")
    block = text[text.rfind("Accumulated forward statistics"):]
    match = re.search(r"TX-packets:\s+(\d+)", block)
    if match is None:
        raise RuntimeError("testpmd: no accumulated statistics in its output")
    forwarded = int(match.group(1))
    return forwarded / elapsed, forwarded / max(cpu, 1e-9)


def main() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    worker_cpu = cpus[-1]
    os.sched_setaffinity(0, {worker_cpu})  # one core for the whole NF process
    try:
        rate, rate_cpu = pktflow_rate("compiled", 256, RUN_SECONDS, "bench_fwd_a")
        print(f"pktflow (compiled, batch 256, 1 core): {rate / 1e6:.2f} Mpps")
        print(f"pktflow (compiled, batch 256) per CPU second: {rate_cpu / 1e6:.2f} Mpps")
        big, big_cpu = pktflow_rate("compiled", 2048, RUN_SECONDS, "bench_fwd_b")
        print(f"pktflow (compiled, batch 2048, 1 core): {big / 1e6:.2f} Mpps")
        print(f"pktflow (compiled, batch 2048) per CPU second: {big_cpu / 1e6:.2f} Mpps")
        interp, _ = pktflow_rate("interpreted", 256, 1.5, "bench_fwd_c")
        print(f"pktflow interpreted (batch 256, 1 core): {interp / 1e6:.3f} Mpps")
        loop = python_loop_rate()
        print(f"plain Python per-packet loop: {loop / 1e6:.3f} Mpps")
    finally:
        os.sched_setaffinity(0, set(cpus))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pktflow peak RSS: {peak_rss_mb:.0f} MB")
    peer = testpmd_rate(RUN_SECONDS)
    if peer:
        wall, cpu = peer
        print(f"testpmd (mac forwarding, null ports, 1 forwarding core): {wall / 1e6:.2f} Mpps")
        print(f"testpmd per CPU second: {cpu / 1e6:.2f} Mpps")
        print(f"ratio pktflow/testpmd (batch 256, per CPU second): {rate_cpu / cpu:.2f}")
        print(f"ratio pktflow/testpmd (batch 2048, per CPU second): {big_cpu / cpu:.2f}")
        print(f"ratio pktflow/testpmd (batch 256, wall clock): {rate / wall:.2f}")
        print(f"ratio pktflow/testpmd (batch 2048, wall clock): {big / wall:.2f}")


if __name__ == "__main__":
    main()
