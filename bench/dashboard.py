"""bench/dashboard: what 100 open dashboard pages cost a forwarding NF, and whether the
server leaks memory over many connects and disconnects.

The NF forwards port 0 -> port 1 on one memory wire (port 1's packets arrive again on port
0, prefilled once, as in bench/forward) on one pinned core, with its statistics server
on loopback. The clients are another process: 100 raw sockets on `/events`, each reading
every snapshot the server pushes (2 per second). Phases alternate 0 and 100 clients
six times so drift on a shared machine falls on both sides (medians count); the figures
are forwarded packets per second of wall clock and per CPU second of the worker, and the
CPU the NF process spends beside its worker (the server's cost). The clients run on the
other cores: on a 2-core machine shared with other work their own CPU still takes some
of the NF core's share of the machine, so the wall-clock ratio is the pessimistic one.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from pktflow.flow import FlowConfig, System
from pktflow.packet.build import frame
from pktflow.ports.base import PortTable

CLIENTS = 100
PHASE_SECONDS = 2.0
ROUNDS = 6  # alternations of 0 and CLIENTS clients; the median of each side counts
LEAK_ROUNDS = 10
BATCH = 256
PREFILL_BATCHES = 8


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def thread_cpu_ns(tid: int) -> int:
    return int(Path(f"/proc/{os.getpid()}/task/{tid}/schedstat").read_text().split()[0])


# The client process: plain Python with the standard library only (importing pktflow would
# burn CPU the NF then lacks on a small machine). argv: host port count seconds; with
# seconds 0 it stays until every stream got one snapshot. Prints "ready" once connected,
# then the events received in all and by the slowest stream.
CLIENT = """
import selectors, socket, sys, time
host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sel = selectors.DefaultSelector()
got = {}
for _ in range(count):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"GET /events HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    got[s] = 0
print("ready", flush=True)
deadline = time.monotonic() + (seconds or 10.0)
while time.monotonic() < deadline and (seconds or not all(got.values())):
    for key, _ in sel.select(timeout=0.2):
        data = key.fileobj.recv(65536)
        if not data:
            sel.unregister(key.fileobj)
            continue
        got[key.fileobj] += data.count(b"\\nid: ") + data.startswith(b"id: ")
print(sum(got.values()), min(got.values()), flush=True)
"""


class Clients:
    """`count` event-stream clients in a process of their own, on `cpus`."""

    def __init__(self, address: tuple[str, int], count: int, seconds: float,
                 cpus: set[int]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT, address[0], str(address[1]), str(count),
             str(seconds)], stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus))
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the client process could not connect")

    def result(self) -> tuple[int, int]:
        """(events received in all, by the stream that got fewest) once it ended."""
        out, _ = self.proc.communicate(timeout=60)
        total, least = map(int, out.split())
        return total, least


def forwarding_nf(wire: str) -> System:
    nf = System(FlowConfig(cores=1, batch_size=BATCH, stats=("127.0.0.1", 0)),
                PortTable.from_specs([f"0=mem:{wire},ring=65536", f"1=mem:{wire},ring=65536"]))
    nf.sender(nf.receiver(0), 1)
    raw = frame(eth={"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"},
                ipv4={"src": "10.0.0.1", "dst": "10.0.0.2"}, udp={})
    raw += bytes(64 - len(raw))
    prefill = nf.pool.alloc(PREFILL_BATCHES * BATCH)
    for k in range(prefill.n):
        nf.pool.write(int(prefill.idx[k]), raw)
    nf.ports[1].send(prefill)  # arrives on port 0
    nf.start()
    return nf


def phase(nf: System, workers: list[int], seconds: float) -> tuple[float, float]:
    """Forwarded packets per wall second and per worker CPU second over `seconds`."""
    cpu0 = sum(thread_cpu_ns(t) for t in workers)
    before = nf.ports[1].stats.tx_packets
    t0 = time.perf_counter()
    time.sleep(seconds)
    sent = nf.ports[1].stats.tx_packets - before
    wall = time.perf_counter() - t0
    cpu = (sum(thread_cpu_ns(t) for t in workers) - cpu0) / 1e9
    return sent / wall, sent / max(cpu, 1e-9)


def children_cpu() -> float:
    """CPU seconds of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_ns() -> int:
    """CPU time of every thread of this process, in ns."""
    return sum(thread_cpu_ns(int(task.name))
               for task in Path(f"/proc/{os.getpid()}/task").iterdir()
               if (task / "schedstat").exists())


def main() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})  # the NF (and its server) on one core
    client_cpus = set(cpus[:-1]) or {cpus[-1]}
    nf = forwarding_nf(f"bench_dash_{os.getpid()}")
    try:
        address = nf.stats_address
        assert address is not None
        time.sleep(0.5)
        workers = [t.native_id for t in threading.enumerate()
                   if t.name.startswith("pktflow-") and t.name not in
                   ("pktflow-scheduler", "pktflow-stats", "pktflow-dashboard")]
        rates: dict[int, list[tuple[float, float]]] = {0: [], CLIENTS: []}
        events = 0
        server_share: list[float] = []
        client_share: list[float] = []
        for n in (0, CLIENTS) * ROUNDS:
            if n == 0:
                rates[0].append(phase(nf, workers, PHASE_SECONDS))
                continue
            clients = Clients(address, n, PHASE_SECONDS + 1.5, client_cpus)
            time.sleep(1.0)  # streaming, and the client process idle but for reading
            others0 = process_cpu_ns() - sum(thread_cpu_ns(t) for t in workers)
            t0 = time.perf_counter()
            rates[n].append(phase(nf, workers, PHASE_SECONDS))
            others = process_cpu_ns() - sum(thread_cpu_ns(t) for t in workers) - others0
            server_share.append(others / 1e9 / (time.perf_counter() - t0))
            before_children = children_cpu()
            total, least = clients.result()
            client_share.append((children_cpu() - before_children) / (PHASE_SECONDS + 2.5))
            events += total
            if least == 0:
                raise RuntimeError("a client received no snapshot: the server did not serve")
        base = statistics.median(r[0] for r in rates[0])
        base_cpu = statistics.median(r[1] for r in rates[0])
        loaded = statistics.median(r[0] for r in rates[CLIENTS])
        loaded_cpu = statistics.median(r[1] for r in rates[CLIENTS])
        print(f"NF forwarding, 0 dashboard clients: {base / 1e6:.3f} Mpps")
        print(f"NF forwarding, {CLIENTS} dashboard clients: {loaded / 1e6:.3f} Mpps "
              f"({events} snapshots pushed)")
        print(f"ratio {CLIENTS} clients/0 clients: {loaded / base:.3f}")
        print(f"CPU of the NF process beside its worker, {CLIENTS} clients: "
              f"{100 * sum(server_share) / len(server_share):.1f} % of a core")
        print(f"CPU of the client process ({CLIENTS} streams): "
              f"{100 * statistics.median(client_share):.1f} % of a core")
        print("phases, Mpps: 0 clients " + " ".join(f"{r[0] / 1e6:.2f}" for r in rates[0])
              + f"; {CLIENTS} clients " + " ".join(f"{r[0] / 1e6:.2f}" for r in rates[CLIENTS]))
        print(f"NF forwarding per worker CPU second, 0 clients: {base_cpu / 1e6:.3f} Mpps")
        print(f"NF forwarding per worker CPU second, {CLIENTS} clients: "
              f"{loaded_cpu / 1e6:.3f} Mpps")
        print(f"ratio per CPU second {CLIENTS} clients/0 clients: {loaded_cpu / base_cpu:.3f}")
        # Leak check: one warm-up round, then LEAK_ROUNDS rounds of 100 connects, one
        # snapshot each, disconnects.
        def round_trip() -> None:
            if Clients(address, CLIENTS, 0, client_cpus).result()[1] == 0:
                raise RuntimeError("a client received no snapshot")

        round_trip()
        time.sleep(0.5)
        before = rss_kib()
        for _ in range(LEAK_ROUNDS):
            round_trip()
        time.sleep(1.0)  # handler threads wind down
        after = rss_kib()
        print(f"server RSS after warm-up: {before / 1024:.1f} MiB")
        print(f"server RSS after {LEAK_ROUNDS * CLIENTS} more connects/disconnects: "
              f"{after / 1024:.1f} MiB")
        print(f"ratio RSS after/before: {after / before:.3f}")
        print(f"threads left in the NF process: {threading.active_count()}")
    finally:
        nf.close()
        os.sched_setaffinity(0, cpus)


if __name__ == "__main__":
    main()
