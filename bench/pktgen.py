"""Generation rate per core: pktflow's generator against DPDK testpmd's txonly mode.

pktflow: range mode over three fields (source IP, source and destination port), 64-byte
packets, burst 256, on a memory port with no peer (every packet is built, handed to the
port and freed, like a null device), the whole process pinned to one CPU.
Peer, in the same run: `dpdk-testpmd --no-huge --no-pci --vdev=net_null0 -l 0-1 --
--forward-mode=txonly` (one forwarding core), stopped with SIGINT after a few seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

RUN_S = 3.0
SETTLE_S = 0.5


def pktflow_rate() -> tuple[float, float]:
    """(packets per second through the generator, packets per second of the bare kernel)."""
    import numpy as np

    from pktflow.packet import Pool
    from pktflow.pktgen import Pktgen
    from pktflow.pktgen.config import build_template, words_view
    from pktflow.pktgen.kernels import synth_batch
    from pktflow.ports import PortTable

    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})  # threads started from here on inherit it
    try:
        ports = PortTable.from_specs(["0=mem:bench-pktgen-null"])
        gen = Pktgen(ports, pool=Pool(buffers=16384, name="bench"), output=lambda s: None)
        try:
            for line in ("set 0 burst 256", "set 0 pps 1000000000",
                         "range 0 src ip 10.0.0.1 10.0.0.1 10.0.0.254 0.0.0.1",
                         "range 0 src port 1000 1000 2000 1", "range 0 dst port 1 1 1024 1",
                         "enable 0 range"):
                gen.execute(line)
            gen.start([0])
            time.sleep(SETTLE_S)
            n0, t0 = gen.stats()[0]["tx_generated"], time.perf_counter()
            time.sleep(RUN_S)
            n1, t1 = gen.stats()[0]["tx_generated"], time.perf_counter()
            gen.stop([0])
            engine_pps = (n1 - n0) / (t1 - t0)
            # The bare kernel on the same template: the engine's ceiling.
            cfg = gen.configs[0]
            t = build_template(cfg)
            pool = gen.pool
            batch = pool.alloc(256)
            cur = t.fields[:, 0].copy()
            cum = np.zeros(256, dtype=np.int64)
            data64 = words_view(pool.data)
            rounds = 0
            start = time.perf_counter()
            while time.perf_counter() - start < 1.0:
                for _ in range(100):
                    synth_batch(pool.data, data64, pool.meta, batch.idx, 256, t.frame,
                                t.frame64, t.layout, t.payload_sums, t.fields, cur, t.ip6_src,
                                t.ip6_dst, cum)
                rounds += 100
            kernel_pps = rounds * 256 / (time.perf_counter() - start)
            pool.free(batch)
        finally:
            gen.close()
            ports.close()
    finally:
        os.sched_setaffinity(0, set(cpus))
    return engine_pps, kernel_pps


def testpmd_rate() -> float | None:
    """testpmd txonly on net_null: the Tx-pps it reports while running, None if absent."""
    exe = shutil.which("dpdk-testpmd")
    if exe is None:
        return None
    cmd = [exe, "--no-huge", "-m", "1024", "--no-pci", "--vdev=net_null0", "-l", "0-1",
           f"--file-prefix=pktflow-bench-{os.getpid()}", "--", "--forward-mode=txonly",
           "--total-num-mbufs=8192", "--stats-period", "1"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(RUN_S + 1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    rates = [int(m) for m in re.findall(r"Tx-pps:\s+(\d+)", out)]
    rates = [r for r in rates if r > 0]
    if not rates:
        print("testpmd gave no Tx-pps figure; its output ends with:")
        print("\n".join(out.splitlines()[-10:]))
        return None
    return max(rates[-3:])


def main() -> None:
    engine_pps, kernel_pps = pktflow_rate()
    print(f"pktflow pktgen (range over 3 fields, 64 B, 1 core): {engine_pps / 1e6:.2f} Mpps")
    print(f"pktflow synthesis kernel alone (1 core): {kernel_pps / 1e6:.2f} Mpps")
    peer = testpmd_rate()
    if peer is None:
        print("testpmd txonly: not available (install dpdk-dev)")
        return
    print(f"testpmd txonly net_null (1 forwarding core): {peer / 1e6:.2f} Mpps")
    print(f"ratio pktflow/peer: {engine_pps / peer:.2f}")


if __name__ == "__main__":
    main()
