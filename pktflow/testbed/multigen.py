"""Several generators at once: one `pktflow pktgen` per Mininet host, all started together,
each in its own namespace, none waiting for another; a sink host counts what each delivers.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pktflow.packet.pool import Batch, Pool
from pktflow.ports.base import PortTable
from pktflow.ports.linux import netns
from pktflow.testbed.topo import Testbed, python_argv


@dataclass
class GeneratorResult:
    """What one generator host reported sending and what the sink saw from it."""

    host: str
    tx_packets: int
    rx_at_sink: int
    dropped_at_sink: int  # kernel drops on the sink's receive ring
    first_ns: int  # arrival time of its first and last frame at the sink
    last_ns: int
    exit_code: int
    stderr: str


def run_fan_in(generators: int = 3, count: int = 20000, pps: int = 10000,
               driver: str = "packet", timeout: float = 60.0) -> list[GeneratorResult]:
    """Build the fan-in testbed, start every generator at once (each sends `count` frames
    at `pps`), count arrivals per sink port, tear down; one result per generator."""
    with Testbed.fan_in(generators) as tb, tempfile.TemporaryDirectory() as tmp:
        gens = tb.hosts[:-1]
        pool = Pool(buffers=8192, name="sink")
        with netns(tb.ns_path("sink")):
            sink = PortTable.from_specs(
                [f"{i}=packet:{tb.intf('sink', i)}" for i in range(generators)])
        try:
            for port in sink:
                port.open(pool)
            script = Path(tmp) / "rate.pg"
            script.write_text(f"set 0 pps {pps}\n")
            procs = [tb.popen(g, python_argv("pktgen", "--port", f"0={driver}:{tb.intf(g, 0)}",
                                             "--count", str(count), "-f", str(script), "--json"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for g in gens]
            counts, first, last = _count_until_done(sink, pool, procs, timeout)
            outputs = [p.communicate(timeout=10) for p in procs]
            for port in sink:
                port.refresh_kernel_stats()
            drops = [sink[i].stats.rx_dropped for i in range(generators)]
        finally:
            sink.close()
        results = []
        for i, (g, proc, (out, err)) in enumerate(zip(gens, procs, outputs, strict=True)):
            try:
                tx = json.loads(out)["0"]["tx_packets"]
            except (ValueError, KeyError):
                tx = -1
            results.append(GeneratorResult(g, tx, counts[i], drops[i], first[i], last[i],
                                           proc.returncode, err[-2000:]))
        return results


def _count_until_done(sink: PortTable, pool: Pool, procs, timeout: float):
    n = len(sink)
    counts, first, last = [0] * n, [0] * n, [0] * n
    batch = Batch(pool, 256)
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        busy = False
        for port in sink:
            got = port.recv(batch, 256)
            if got:
                busy = True
                ts = pool.ts[batch.idx[:got]]
                i = port.id
                first[i] = first[i] or int(ts.min())
                last[i] = max(last[i], int(ts.max()))
                counts[i] += got
                pool.free(batch)
        if busy:
            quiet_since = None
        elif all(p.poll() is not None for p in procs):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 0.3:
                break
        else:
            time.sleep(0.0005)
    for p in procs:
        if p.poll() is None:
            p.kill()
    return counts, first, last


def overlap_seconds(results: list[GeneratorResult]) -> float:
    """How long every generator was delivering at the same time (0 if they took turns)."""
    start = max(r.first_ns for r in results)
    end = min(r.last_ns for r in results)
    return max(0, end - start) / 1e9


def format_results(results: list[GeneratorResult]) -> str:
    lines = [f"{'host':<6} {'sent':>9} {'at sink':>9} {'dropped':>8} {'window s':>11}"]
    t0 = min((r.first_ns for r in results if r.first_ns), default=0)
    for r in results:
        window = f"{(r.first_ns - t0) / 1e9:.2f}-{(r.last_ns - t0) / 1e9:.2f}" \
            if r.first_ns else "-"
        lines.append(f"{r.host:<6} {r.tx_packets:>9} {r.rx_at_sink:>9} {r.dropped_at_sink:>8} "
                     f"{window:>11}")
    lines.append(f"all generators delivering at once for {overlap_seconds(results):.2f} s")
    return "\n".join(lines)
