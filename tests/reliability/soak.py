"""`make soak` (python -m tests.reliability.soak): an NF forwarding between two veth links
at its highest loss-free rate for SOAK_SECONDS (default 600), sampling memory and counters.

First a short search finds the highest offered rate that arrives whole (every frame the
generator sent reaches the sink, no drop anywhere); then the soak runs at that rate and
prints RSS at start, end and peak, whether the counters are conserved, and unexplained
drops (frames neither delivered nor counted by any port or NF counter; must be 0).
Settings: SOAK_SECONDS, SOAK_DRIVER (xdp or packet), SOAK_SAMPLE (seconds between
samples), SOAK_SEARCH (seconds per search step), SOAK_FACTOR (run at this share of the
rate found, default 1). Needs root (namespaces, AF_XDP).
"""

from __future__ import annotations

import os
import sys
import time

from pktflow.flow import FlowConfig, System
from tests.reliability.veth import Traffic, lab_leftovers, make_lab, nf_ports


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def counters(nf: System, traffic: Traffic) -> dict[str, int]:
    """What each stage saw: generator sent, NF in/out (ports), drops, sink received."""
    s = nf.stats()
    p0, p1 = s["ports"]["0"], s["ports"]["1"]
    nf_drops = sum(v for n in s["nodes"] for v in n["dropped"].values())
    return {
        "gen_sent": traffic.gen.stats.tx_packets,
        "nf_rx": p0["rx_packets"], "nf_rx_dropped": p0["rx_dropped"],
        "nf_tx": p1["tx_packets"], "nf_drops": nf_drops,
        "sink_rx": traffic.received, "sink_rx_dropped": traffic.sink.stats.rx_dropped,
    }


def unexplained(c: dict[str, int]) -> int:
    """Frames lost without any counter saying so, on either wire."""
    wire1 = c["gen_sent"] - c["nf_rx"] - c["nf_rx_dropped"]
    wire2 = c["nf_tx"] - c["sink_rx"] - c["sink_rx_dropped"]
    return wire1 + wire2


def trial(lab, driver: str, pps: float, seconds: float) -> tuple[bool, float, dict]:
    """Offer `pps` for `seconds`; (loss-free, achieved pps, counters)."""
    nf = forwarder(lab, driver)
    traffic = Traffic(lab, pps=pps)
    try:
        nf.start()
        traffic.start()
        time.sleep(seconds)
        traffic.stop(settle=0.5)
        nf.stop()
        c = counters(nf, traffic)
    finally:
        traffic.close()
        nf.close()
    lossless = c["sink_rx"] == c["gen_sent"] and c["gen_sent"] > 0
    return lossless, c["gen_sent"] / seconds, c


def forwarder(lab, driver: str) -> System:
    nf = System(FlowConfig(cores=1, pool_size=32768), nf_ports(lab, driver))
    f = nf.receiver(0)
    nf.sender(f, 1)
    return nf


def search(lab, driver: str, step_seconds: float) -> float:
    """Highest loss-free offered rate: doubling from 10k pps, then bisecting (bounded)."""
    lo, hi = 0.0, None
    pps = 10000.0
    for _ in range(10):
        ok, achieved, c = trial(lab, driver, pps, step_seconds)
        print(f"search: offered {pps:.0f} pps, achieved {achieved:.0f}, "
              f"{'loss-free' if ok else 'loss'} (sent {c['gen_sent']}, got {c['sink_rx']})",
              flush=True)
        if ok:
            lo = max(lo, min(pps, achieved))
            if achieved < 0.9 * pps:  # the generator itself tops out here
                break
        else:
            hi = pps
        if hi is None:
            pps *= 2
        elif hi - lo < 0.1 * hi:
            break
        else:
            pps = (lo + hi) / 2
    return lo


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", 600))
    driver = os.environ.get("SOAK_DRIVER", "xdp")
    sample = float(os.environ.get("SOAK_SAMPLE", 5))
    step = float(os.environ.get("SOAK_SEARCH", 3))
    factor = float(os.environ.get("SOAK_FACTOR", 1))
    if os.geteuid() != 0:
        print("soak: needs root (network namespaces, AF_PACKET/AF_XDP)", file=sys.stderr)
        return 2
    with make_lab("sk") as lab:
        rate = search(lab, driver, step) * factor
        if rate <= 0:
            print("soak: no loss-free rate found", file=sys.stderr)
            return 1
        print(f"soak: {driver}, {rate:.0f} pps for {seconds:.0f} s", flush=True)
        nf = forwarder(lab, driver)
        traffic = Traffic(lab, pps=rate)
        rss = []
        try:
            nf.start()
            traffic.start()
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                time.sleep(min(sample, max(0.0, seconds - (time.monotonic() - started))))
                rss.append(rss_mb())
                c = counters(nf, traffic)
                print(f"  t={time.monotonic() - started:6.0f}s rss={rss[-1]:.1f} MB "
                      + " ".join(f"{k}={v}" for k, v in c.items()), flush=True)
            traffic.stop(settle=1.0)
            nf.stop()
            c = counters(nf, traffic)
            check = nf.check_conservation()
        finally:
            traffic.close()
            nf.close()
    took = time.monotonic() - started
    lost = unexplained(c)
    print(f"rate: {rate:.0f} pps offered, {c['gen_sent'] / took:.0f} pps achieved")
    print(f"packets: sent {c['gen_sent']}, NF forwarded {c['nf_tx']}, sink got {c['sink_rx']}")
    print(f"rss: start {rss[0]:.1f} MB, end {rss[-1]:.1f} MB, max {max(rss):.1f} MB")
    print(f"counters conserved: {check['exact'] and check['balanced']}")
    print(f"counted drops: NF {c['nf_drops']}, NF rx ring {c['nf_rx_dropped']}, "
          f"sink rx ring {c['sink_rx_dropped']}")
    print(f"unexplained drops: {lost}")
    print(f"leftover namespaces: {len(lab_leftovers(lab))}")
    ok = lost == 0 and check["balanced"] and not lab_leftovers(lab)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
