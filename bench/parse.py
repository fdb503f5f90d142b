"""bench/parse: parse L2-L4 and extract the 5-tuple of 64-byte TCP and UDP packets.

pktflow runs its compiled parser over batches (one native call per batch, one thread) and
writes the 5-tuples into arrays. Scapy (`Ether(raw)`) and dpkt (`Ethernet(raw)`) parse the
same frames in the same run and read the same fields; their rates come from a sample.
All three must extract the same 5-tuples, or the benchmark stops.
"""

from __future__ import annotations

import ipaddress
import time

import numpy as np
from numba import njit

from pktflow.packet import Pool, build, parse_batch
from pktflow.packet import meta as M
from pktflow.packet.accessors import acc
from pktflow.packet.parse import parse_packet

BATCH = 256
BATCHES = 16  # distinct batches cycled through, 4096 packets in all
FRAME = 60  # a 64-byte Ethernet frame without its FCS
SECONDS = 2.0
WINDOWS = 4  # timed windows per contender; the best counts (other jobs share the cores)
SCAPY_SAMPLE = 2000
DPKT_SAMPLE = 20000


@njit(cache=True, nogil=True)
def parse_5tuple(data, meta, idx, n, src, dst, sport, dport, proto):
    """Parse each packet and store its IPv4 5-tuple (proto -1 when it has none)."""
    for k in range(n):
        b = idx[k]
        f = parse_packet(data, meta, b)
        if (f & M.F_IPV4) and (f & (M.F_TCP | M.F_UDP)):
            src[k] = acc.ipv4_src_get(data, meta, b)
            dst[k] = acc.ipv4_dst_get(data, meta, b)
            proto[k] = meta[b, M.PROTO]
            # TCP and UDP keep their ports at the same place.
            sport[k] = acc.udp_src_port_get(data, meta, b)
            dport[k] = acc.udp_dst_port_get(data, meta, b)
        else:
            proto[k] = -1
    return n


def make_frames(count: int) -> list[bytes]:
    """Half TCP, half UDP, 64 bytes each, with varying addresses and ports."""
    frames = []
    for i in range(count):
        ip = {"src": f"10.{i >> 8 & 255}.{i & 255}.1", "dst": f"192.168.{i % 7}.{i % 250 + 1}"}
        if i % 2:
            raw = build.frame(ipv4=ip, tcp={"src_port": 1024 + i, "dst_port": 80},
                              payload=bytes(FRAME - 54))
        else:
            raw = build.frame(ipv4=ip, udp={"src_port": 2048 + i, "dst_port": 53},
                              payload=bytes(FRAME - 42))
        assert len(raw) == FRAME
        frames.append(raw)
    return frames


def bench_pktflow(frames: list[bytes]) -> tuple[tuple[float, float], list[tuple]]:
    """(packets per CPU second, per wall second) of the best window, and the 5-tuples."""
    pool = Pool(buffers=len(frames), name="bench-parse")
    batches = [pool.alloc(BATCH) for _ in range(len(frames) // BATCH)]
    for k, batch in enumerate(batches):
        for j in range(BATCH):
            pool.write(int(batch.idx[j]), frames[k * BATCH + j])
    out = [np.zeros(BATCH, dtype=np.int64) for _ in range(5)]
    src, dst, sport, dport, proto = out
    tuples = []
    for batch in batches:  # compile (or load from cache) and collect results to check
        parse_5tuple(pool.data, pool.meta, batch.idx, batch.n, *out)
        tuples += list(zip(src.tolist(), dst.tolist(), sport.tolist(), dport.tolist(),
                           proto.tolist(), strict=True))
    assert parse_batch(pool.data, pool.meta, batches[0].idx, batches[0].n) == 0
    data, meta = pool.data, pool.meta
    idxs = [b.idx for b in batches]
    rates = []
    for _ in range(WINDOWS):
        done = 0
        t0, c0 = time.perf_counter(), time.thread_time()
        deadline = t0 + SECONDS / WINDOWS
        while time.perf_counter() < deadline:
            for idx in idxs:
                done += parse_5tuple(data, meta, idx, BATCH, src, dst, sport, dport, proto)
        rates.append((done / (time.thread_time() - c0), done / (time.perf_counter() - t0)))
    return max(rates), tuples


def _best_rate(parse_one, sample: list[bytes]) -> tuple[tuple[float, float], list[tuple]]:
    """Best of WINDOWS timed passes over slices of the sample (the machine is shared)."""
    tuples = [parse_one(raw) for raw in sample[:4096]]
    step = len(sample) // WINDOWS
    rates = []
    for w in range(WINDOWS):
        part = sample[w * step:(w + 1) * step]
        t0, c0 = time.perf_counter(), time.thread_time()
        for raw in part:
            parse_one(raw)
        cpu, wall = time.thread_time() - c0, time.perf_counter() - t0
        rates.append((len(part) / cpu, len(part) / wall))
    return max(rates), tuples


def bench_scapy(frames: list[bytes]) -> tuple[tuple[float, float], list[tuple]]:
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether

    def parse_one(raw: bytes) -> tuple:
        ip = Ether(raw)[IP]
        l4 = ip.payload
        return (int(ipaddress.IPv4Address(ip.src)), int(ipaddress.IPv4Address(ip.dst)),
                l4.sport, l4.dport, ip.proto)

    return _best_rate(parse_one, frames[:SCAPY_SAMPLE])


def bench_dpkt(frames: list[bytes]) -> tuple[tuple[float, float], list[tuple]]:
    import dpkt

    def parse_one(raw: bytes) -> tuple:
        ip = dpkt.ethernet.Ethernet(raw).data
        l4 = ip.data
        return (int.from_bytes(ip.src, "big"), int.from_bytes(ip.dst, "big"), l4.sport,
                l4.dport, ip.p)

    return _best_rate(parse_one, (frames * (DPKT_SAMPLE // len(frames) + 1))[:DPKT_SAMPLE])


def main() -> None:
    """Print pktflow's, Scapy's and dpkt's parse rates and the ratios."""
    frames = make_frames(BATCH * BATCHES)
    ours, our_tuples = bench_pktflow(frames)
    scapy_rate, scapy_tuples = bench_scapy(frames)
    dpkt_rate, dpkt_tuples = bench_dpkt(frames)
    if scapy_tuples != our_tuples[:len(scapy_tuples)] or \
            dpkt_tuples != our_tuples[:len(dpkt_tuples)]:
        raise RuntimeError("pktflow, Scapy and dpkt disagree on the 5-tuples")
    print(f"packets: {FRAME + 4}-byte TCP and UDP frames, batches of {BATCH}, 1 thread, "
          f"best of {WINDOWS} windows each; rates per second of the thread's CPU time "
          "(per core), wall-clock rates after them")
    print(f"pktflow: {ours[0] / 1e6:.2f} Mpps")
    print(f"scapy: {scapy_rate[0] / 1e6:.4f} Mpps")
    print(f"dpkt: {dpkt_rate[0] / 1e6:.4f} Mpps")
    print(f"pktflow wall: {ours[1] / 1e6:.2f} Mpps")
    print(f"scapy wall: {scapy_rate[1] / 1e6:.4f} Mpps")
    print(f"dpkt wall: {dpkt_rate[1] / 1e6:.4f} Mpps")
    print(f"ratio pktflow/scapy: {ours[0] / scapy_rate[0]:.1f}")
    print(f"ratio pktflow/dpkt: {ours[0] / dpkt_rate[0]:.1f}")

if __name__ == "__main__":
    main()
