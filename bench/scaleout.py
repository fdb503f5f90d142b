"""Scale-out on the testbed: N pktflow NF processes on N namespace hosts behind a Linux
ECMP router (L4 hash over 256 UDP flows) carry N times one instance's load (N = 1, 2).

Each instance is made the bottleneck: it does WORK xorshift rounds per packet (a stand-in
for an NF's per-packet cost) and is pinned to a core of its own (taskset), and the
generator offers more than two instances can carry. What each instance carried is what
the sink host received from it (kernel interface counters) over a measured window.
On a 2-core machine the generator and the router's forwarding share the cores with the
two instances, so N=2 cannot quite reach 2x; the figures say how close it comes.
"""

from __future__ import annotations

import os

FLOWS = 256
WORK = 60_000  # rounds per packet: about 0.1 ms of CPU, so one instance carries ~8 kpps
OFFERED_PPS = 24_000  # about 3x what one instance carries: more than two carry
SECONDS = 4.0
WARMUP = 1.5


def main() -> None:
    if os.geteuid() != 0:
        print("scaleout: skipped (needs root for namespaces and AF_PACKET)")
        return
    from pktflow.testbed.scaleout import ScaleOut

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores)")
    print(f"scaleout: ECMP router (fib_multipath_hash_policy=1) over N NF hosts, {FLOWS} "
          f"UDP flows, 64 B frames offered at {OFFERED_PPS} pps, {WORK} rounds of work per "
          f"packet in each NF, NF i pinned to core i")
    carried = {}
    for n in (1, 2):
        with ScaleOut(n, work=WORK, tag=f"sob{n}") as so:
            load = so.measure(FLOWS, OFFERED_PPS, SECONDS, WARMUP)
        carried[n] = load
        print(f"scaleout N={n} offered: {load.offered_pps:.0f} pps")
        print(f"scaleout N={n} carried: {load.carried_pps:.0f} pps")
        for i, (pps, share) in enumerate(zip(load.per_instance_pps, load.shares,
                                             strict=True), 1):
            cores = load.cores_used[i - 1]
            print(f"scaleout N={n} instance {i} (core {so.cores[i - 1]}): {pps:.0f} pps "
                  f"carried of {load.arrived_pps[i - 1]:.0f} pps that reached it ({share:.1%} "
                  f"of the spread frames; the rest overflowed its receive ring), "
                  f"{cores:.2f} cores used, {pps / max(cores, 1e-9):.0f} pps per core")
    one, two = carried[1], carried[2]
    print(f"ratio carried N=2/N=1: {two.carried_pps / one.carried_pps:.2f}")
    print(f"ratio per-instance N=2/N=1: "
          f"{min(two.per_instance_pps) / one.per_instance_pps[0]:.2f} (slower instance)")
    print(f"ratio NF cores used N=2/N=1: {sum(two.cores_used) / sum(one.cores_used):.2f}")
    per_core = [ld.carried_pps / max(sum(ld.cores_used), 1e-9) for ld in (one, two)]
    print(f"ratio carried per NF core N=2/N=1: {per_core[1] / per_core[0]:.2f} "
          f"(1.00: each instance is CPU-bound and the spreader adds none)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
