"""Generation rate per core: pktflow's generator against DPDK testpmd's txonly mode.

pktflow: range mode over three fields (source IP, source and destination port), 64-byte
packets, burst 256, on a memory port with no peer (every packet is built, handed to the
port and freed, like a null device), the whole process pinned to one CPU. Counted as
testpmd counts: packets handed to the port per second.
Peer, in the same run: `dpdk-testpmd --no-huge --no-pci --vdev=net_null0 -l 0-1 --
--forward-mode=txonly` (one forwarding core on the same CPU), stopped with SIGINT.
The two alternate for a few rounds and each keeps its best round, because other jobs
share the cores. Two parts of pktflow's cost are printed alone: the synthesis kernel, and
the pool plus memory port path (allocate, send to no peer, free) without synthesis.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

RUN_S = 2.0
SETTLE_S = 0.3
ROUNDS = 3
BURST = 256
RANGE_SETUP = ("set 0 burst 256", "set 0 pps 1000000000",
               "range 0 src ip 10.0.0.1 10.0.0.1 10.0.0.254 0.0.0.1",
               "range 0 src port 1000 1000 2000 1", "range 0 dst port 1 1 1024 1",
               "range 0 dst ip inc 0.0.0.0", "enable 0 range")


class PinnedCPU:
    """Run the block (and threads started in it) on the last CPU of this process."""

    def __enter__(self) -> None:
        self.cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {self.cpus[-1]})

    def __exit__(self, *exc: object) -> None:
        os.sched_setaffinity(0, set(self.cpus))


def engine_rate() -> float:
    """Packets per second the generator hands to a memory port with no peer."""
    from pktflow.packet import Pool
    from pktflow.pktgen import Pktgen
    from pktflow.ports import PortTable

    with PinnedCPU():
        ports = PortTable.from_specs(["0=mem:bench-pktgen-null"])
        gen = Pktgen(ports, pool=Pool(buffers=16384, name="bench"), output=lambda s: None)
        try:
            for line in RANGE_SETUP:
                gen.execute(line)
            gen.start([0])
            time.sleep(SETTLE_S)
            n0, t0 = gen.stats()[0]["tx_generated"], time.perf_counter()
            time.sleep(RUN_S)
            n1, t1 = gen.stats()[0]["tx_generated"], time.perf_counter()
            gen.stop([0])
            if gen.errors():
                raise RuntimeError(f"generator error: {gen.errors()}")
        finally:
            gen.close()
            ports.close()
    return (n1 - n0) / (t1 - t0)


def _timed_rounds(step, per_call: int, seconds: float = 0.5) -> float:
    """Calls of `step` per second times `per_call`, best of three windows."""
    best = 0.0
    for _ in range(3):
        calls = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(50):
                step()
            calls += 50
        best = max(best, calls * per_call / (time.perf_counter() - start))
    return best


def part_rates() -> tuple[float, float]:
    """(packets/s of the synthesis kernel alone, packets/s of allocate + memory port send
    to no peer + free without synthesis), both in rounds of 1024 on one CPU."""
    import numpy as np

    from pktflow.packet import Batch, Pool
    from pktflow.pktgen import Pktgen
    from pktflow.pktgen.config import build_template, words_view
    from pktflow.pktgen.kernels import synth_batch
    from pktflow.ports import PortTable

    with PinnedCPU():
        ports = PortTable.from_specs(["0=mem:bench-pktgen-parts"])
        pool = Pool(buffers=16384, name="bench-parts")
        gen = Pktgen(ports, pool=pool, output=lambda s: None)
        try:
            for line in RANGE_SETUP:
                gen.execute(line)
            t = build_template(gen.configs[0])
        finally:
            gen.close()
        port = ports[0]
        n = 1024
        batch = pool.alloc(n)
        cur = t.fields[:, 0].copy()
        cum = np.zeros(n, dtype=np.int64)
        words = words_view(pool.data)

        def synth() -> None:
            synth_batch(pool.data, words, pool.meta, batch.idx, n, t.frame, t.frame64,
                        t.layout, t.payload_sums, t.fields, t.offsets, cur, cum)

        kernel_pps = _timed_rounds(synth, n)
        pool.free(batch)
        big = Batch(pool, n)
        chunks = [Batch(pool, 1) for _ in range(n // BURST)]
        for j, chunk in enumerate(chunks):
            chunk.idx = big.idx[j * BURST:(j + 1) * BURST]

        def alloc_send() -> None:
            pool.alloc_into(big, n)
            for chunk in chunks:
                chunk.n = BURST
                port.send(chunk)
            big.n = 0

        port_pps = _timed_rounds(alloc_send, n)
        ports.close()
    return kernel_pps, port_pps


DPDK_PREFIX = f"pktflow-pktgen-{os.getpid()}"  # EAL's run folder /var/run/dpdk/<prefix>


def testpmd_rate(exe: str) -> tuple[float | None, str]:
    """testpmd txonly on net_null: (the best Tx-pps it reported while running, or None;
    the tail of its output, to show when it gave no figure)."""
    cmd = [exe, "--no-huge", "-m", "1024", "--no-pci", "--vdev=net_null0", "-l", "0-1",
           f"--file-prefix={DPDK_PREFIX}", "--", "--forward-mode=txonly",
           "--total-num-mbufs=8192", "--stats-period", "1"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(RUN_S + 2.5)  # EAL start-up takes a while on a busy machine
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    finally:
        shutil.rmtree(f"/var/run/dpdk/{DPDK_PREFIX}", ignore_errors=True)
    rates = [int(m) for m in re.findall(r"Tx-pps:\s+(\d+)", out)]
    rates = [r for r in rates if r > 0]
    return (max(rates) if rates else None), "\n".join(out.splitlines()[-10:])


def main() -> None:
    exe = shutil.which("dpdk-testpmd")
    engine, peer = [], []
    tail = ""
    for _ in range(ROUNDS):
        engine.append(engine_rate())
        if exe is not None:
            rate, tail = testpmd_rate(exe)
            if rate is not None:
                peer.append(rate)
    kernel_pps, port_pps = part_rates()
    best = max(engine)
    print(f"pktflow pktgen (range over 3 fields, 64 B, 1 core): {best / 1e6:.2f} Mpps")
    print(f"pktflow synthesis kernel alone (1 core): {kernel_pps / 1e6:.2f} Mpps")
    print(f"pktflow pool + memory port send, no synthesis (1 core): {port_pps / 1e6:.2f} Mpps")
    if exe is None:
        print("testpmd txonly: not available (install dpdk-dev)")
        return
    if not peer:
        print(f"testpmd gave no Tx-pps figure; its output ends with:\n{tail}")
        return
    print(f"testpmd txonly net_null (1 forwarding core): {max(peer) / 1e6:.2f} Mpps")
    print(f"ratio pktflow/testpmd: {best / max(peer):.2f}")


if __name__ == "__main__":
    main()
