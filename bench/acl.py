"""ACL classification: pktflow's compiled first-match tables against DPDK's rte_acl.

Random ClassBench-like IPv4 tables (prefixes, protocols, port ranges, a default rule at
the end) of 1, 100 and 1,000 rules classify the same 64-byte TCP/UDP traffic in pktflow
(compiled batch kernel over parsed packets, batches of 256, one core) and in
`dpdk-test-acl` (Debian dpdk-dev; same rules and 5-tuples in its ClassBench format, bursts
of 256, one lcore). Both results are checked to agree packet by packet.

The headline pktflow rate reads every 5-tuple from its packet buffer, as a network
function must. rte_acl here classifies a compact array of 5-tuples that the test has
prepared, so pktflow's rate on the same kind of array (`l3_classify_ipv4_tuples`) is
printed too, and both ratios. Also printed: load time of 10,000 rules and the delay until
a watched file's edit is in use.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from pktflow.acl import L3Rule, L3Rules, l3_classify_batch, l3_classify_ipv4_tuples, l3_match
from pktflow.packet import Pool, parse_batch
from pktflow.packet.addr import CIDR, IPv4Addr
from pktflow.packet.build import frame

PACKETS = 16384
BATCH = 256
MEASURE_SECONDS = 1.5  # per measurement, split into ROUNDS rounds; the best one counts
ROUNDS = 3
SIZES = (1, 100, 1000)
WELL_KNOWN = [20, 21, 22, 23, 25, 53, 80, 110, 123, 143, 161, 179, 443, 993, 3306, 5060, 8080]
TCP, UDP = 6, 17


def random_rules(n: int, rnd: random.Random) -> list[L3Rule]:
    """ClassBench-like rules: clustered prefixes, mostly TCP/UDP, well-known or ranged
    destination ports; the last rule of a table of more than one is a catch-all."""
    sites = [rnd.getrandbits(32) for _ in range(max(4, n // 8))]

    def prefix() -> CIDR | None:
        length = rnd.choices([0, 8, 16, 20, 24, 28, 32], [5, 5, 15, 10, 35, 10, 20])[0]
        if length == 0:
            return None
        addr = rnd.choice(sites) ^ rnd.getrandbits(8)
        mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
        return CIDR(4, addr & mask, length)

    def ports(dst: bool) -> tuple[int, int] | None:
        kind = rnd.choices(["any", "exact", "range"], [30, 50, 20] if dst else [85, 5, 10])[0]
        if kind == "any":
            return None
        if kind == "exact":
            p = rnd.choice(WELL_KNOWN)
            return p, p
        lo = rnd.choice([1024, 6000, 10000, 32768, rnd.randrange(1, 60000)])
        return lo, min(65535, lo + rnd.choice([63, 255, 1023, 31767]))

    rules = []
    for line in range(1, n + 1):
        proto = rnd.choices([TCP, UDP, None], [60, 30, 10])[0]
        rules.append(L3Rule(prefix(), prefix(), proto, ports(False), ports(True),
                            rnd.randrange(4), line))
    if n > 1:
        rules[-1] = L3Rule(None, None, None, None, None, 0, n)
    return rules


def random_traffic(rules: list[L3Rule], n: int, rnd: random.Random) -> np.ndarray:
    """5-tuples (src, dst, proto, sport, dport): 80% drawn inside a random rule."""
    tuples = np.empty((n, 5), dtype=np.int64)

    def inside(r: tuple[int, int] | None, bits: int) -> int:
        return rnd.getrandbits(bits) if r is None else rnd.randint(*r)

    for k in range(n):
        r = rnd.choice(rules) if rnd.random() < 0.8 else None
        if r is None:
            tuples[k] = (rnd.getrandbits(32), rnd.getrandbits(32), rnd.choice([TCP, UDP]),
                         rnd.getrandbits(16), rnd.getrandbits(16))
            continue
        src = r.src.network | rnd.getrandbits(32 - r.src.prefix) if r.src else rnd.getrandbits(32)
        dst = r.dst.network | rnd.getrandbits(32 - r.dst.prefix) if r.dst else rnd.getrandbits(32)
        proto = r.proto if r.proto is not None else rnd.choice([TCP, UDP])
        tuples[k] = (src, dst, proto, inside(r.src_ports, 16), inside(r.dst_ports, 16))
    return tuples


def traffic_pool(tuples: np.ndarray) -> tuple[Pool, np.ndarray]:
    """64-byte frames (60 bytes + FCS) for the 5-tuples, written and parsed in a pool."""
    templates = {
        TCP: np.frombuffer(frame(ipv4={"src": "0.0.0.0"}, tcp={}, payload=bytes(6)), np.uint8),
        UDP: np.frombuffer(frame(ipv4={"src": "0.0.0.0"}, udp={}, payload=bytes(18)), np.uint8),
    }
    n = len(tuples)
    pool = Pool(buffers=n, name="bench-acl")
    idx = pool.alloc(n).idx
    h = pool.headroom
    for proto, template in templates.items():
        rows = idx[tuples[:, 2] == proto]
        pool.data[rows, h:h + len(template)] = template
        pool.meta[rows, 0] = h
        pool.meta[rows, 1] = len(template)
    sel = tuples[:, 2]
    for col, off, size in ((0, 26, 4), (1, 30, 4), (3, 34, 2), (4, 36, 2)):
        for i in range(size):
            pool.data[idx, h + off + i] = (tuples[:, col] >> (8 * (size - 1 - i))) & 255
    assert set(np.unique(sel)) <= set(templates)
    parse_batch(pool.data, pool.meta, idx, n)
    return pool, idx


def _best_rate(classify, chunks: list, sizes: list[int]) -> tuple[float, float]:
    """Packets per second of `classify(chunk)` over all chunks, best of ROUNDS rounds, by
    the wall clock and per CPU-second of this thread."""
    for c in chunks[:2]:  # compile and warm the caches
        classify(c)
    best_wall = best_cpu = 0.0
    for _ in range(ROUNDS):
        done, started, cpu = 0, time.perf_counter(), time.thread_time()
        while time.perf_counter() - started < MEASURE_SECONDS / ROUNDS:
            for c, size in zip(chunks, sizes, strict=True):
                classify(c)
                done += size
        best_wall = max(best_wall, done / (time.perf_counter() - started))
        best_cpu = max(best_cpu, done / max(time.thread_time() - cpu, 1e-9))
    return best_wall, best_cpu


def pktflow_rate(table: L3Rules, pool: Pool, idx: np.ndarray) -> tuple[float, float]:
    """Compiled batch classification of parsed packets on one core (wall, per CPU-second)."""
    chunks = [idx[i:i + BATCH] for i in range(0, len(idx), BATCH)]
    out = np.empty(BATCH, dtype=np.int32)
    data, meta = pool.data, pool.meta

    def classify(c: np.ndarray) -> None:
        state = table.kernel_state()  # once per batch, as the flow engine does
        l3_classify_batch(state, data, meta, c, len(c), out)
    return _best_rate(classify, chunks, [len(c) for c in chunks])


def tuple_columns(tuples: np.ndarray) -> np.ndarray:
    """The traffic's 5-tuples as l3_classify_ipv4_tuples takes them: uint32 columns."""
    return np.ascontiguousarray(tuples.T.astype(np.uint32))


def pktflow_tuple_rate(table: L3Rules, columns: np.ndarray) -> tuple[float, float]:
    """Compiled classification of a prepared 5-tuple array, as rte_acl is measured here."""
    chunks = [np.ascontiguousarray(columns[:, i:i + BATCH])
              for i in range(0, columns.shape[1], BATCH)]
    out = np.empty(BATCH, dtype=np.int32)

    def classify(c: np.ndarray) -> None:
        l3_classify_ipv4_tuples(table.kernel_state(), c, c.shape[1], out)
    return _best_rate(classify, chunks, [c.shape[1] for c in chunks])


def pktflow_matches(table: L3Rules, pool: Pool, idx: np.ndarray) -> list[int]:
    state = table.kernel_state()
    return [int(l3_match(state, pool.data, pool.meta, b)) for b in idx]


def classbench_rule(r: L3Rule) -> str:
    def net(c: CIDR | None) -> str:
        return "0.0.0.0/0" if c is None else f"{IPv4Addr(c.network)}/{c.prefix}"

    def rng(p: tuple[int, int] | None) -> str:
        lo, hi = p or (0, 65535)
        return f"{lo} : {hi}"

    proto = "0/0" if r.proto is None else f"{r.proto}/0xff"
    return f"@{net(r.src)} {net(r.dst)} {rng(r.src_ports)} {rng(r.dst_ports)} {proto}"


DPDK_PREFIX = f"pktflow-acl-{os.getpid()}"  # EAL's run folder /var/run/dpdk/<prefix>


def run_test_acl(rules_file: Path, trace_file: Path, iterations: int, verbose: int,
                 ntraces: int) -> str:
    cmd = ["dpdk-test-acl", "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry", "-l",
           "0", f"--file-prefix={DPDK_PREFIX}", "--log-level=lib.eal:error", "--",
           f"--rulesf={rules_file}", f"--tracef={trace_file}", f"--tracenum={ntraces}",
           f"--tracestep={BATCH}", f"--iter={iterations}", f"--verbose={verbose}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"dpdk-test-acl failed ({proc.returncode}): {proc.stderr[-400:]}")
    return proc.stdout


def peer_rate(rules_file: Path, trace_file: Path) -> float:
    """rte_acl's packets per second (best round), with iterations for about the same time."""
    iterations, best, rounds = 20, 0.0, 0
    while rounds < ROUNDS:
        out = run_test_acl(rules_file, trace_file, iterations, 0, PACKETS)
        m = re.search(r"\(([\d.]+) sec\).*?([\d.]+) pkt/sec", out)
        if m is None:
            raise RuntimeError(f"no rate in dpdk-test-acl output: {out[-300:]}")
        seconds, rate = float(m.group(1)), float(m.group(2))
        if seconds >= 0.5 * MEASURE_SECONDS / ROUNDS or iterations >= 10**6:
            best, rounds = max(best, rate), rounds + 1
        else:
            iterations = int(iterations * MEASURE_SECONDS / ROUNDS / max(seconds, 1e-4)) + 1
    return best


def peer_matches(rules_file: Path, trace_file: Path, n: int) -> list[int]:
    out = run_test_acl(rules_file, trace_file, 1, 2, n)
    found = re.findall(r"ipv4_5tuple: (\d+), category: 0, result: (\d+)", out)
    return [-1 if int(r) == 0xFFFFFFFF else int(r) for _, r in found]


def write_traces(path: Path, tuples: np.ndarray) -> None:
    path.write_text("".join(f"{s} {d} {sp} {dp} {p}\n" for s, d, p, sp, dp in tuples.tolist()))


def bench_size(size: int, rnd: random.Random, workdir: Path, have_peer: bool) -> None:
    rules = random_rules(size, rnd)
    table = L3Rules(rules, f"random-{size}")
    tuples = random_traffic(rules, PACKETS, rnd)
    pool, idx = traffic_pool(tuples)
    columns = tuple_columns(tuples)
    by_packets = classify_all(table, pool, idx)
    by_tuples = np.empty(len(tuples), dtype=np.int32)
    l3_classify_ipv4_tuples(table.kernel_state(), columns, len(tuples), by_tuples)
    if not np.array_equal(by_packets, by_tuples):
        raise RuntimeError(f"{size} rules: packet and 5-tuple classification disagree")
    rate, cpu_rate = pktflow_rate(table, pool, idx)
    tuple_rate, tuple_cpu_rate = pktflow_tuple_rate(table, columns)
    megabytes = sum(a.nbytes for a in table.kernel_state()) / 2**20
    print(f"pktflow {size} rules: {rate / 1e6:.2f} Mpps")
    print(f"pktflow {size} rules per CPU-second: {cpu_rate / 1e6:.2f} Mpps")
    print(f"pktflow {size} rules from a 5-tuple array: {tuple_rate / 1e6:.2f} Mpps "
          f"({tuple_cpu_rate / 1e6:.2f} per CPU-second)")
    print(f"pktflow {size} rules table size: {megabytes:.2f} MiB", flush=True)
    if not have_peer:
        return
    rules_file = workdir / f"acl{size}.rules"
    rules_file.write_text("".join(classbench_rule(r) + "\n" for r in rules))
    # dpdk-test-acl writes past its trace array when the file has more lines than
    # --tracenum, so every trace file holds exactly as many lines as it is told.
    trace_file, check_file, check = workdir / "acl.trace", workdir / "check.trace", 2048
    write_traces(trace_file, tuples)
    write_traces(check_file, tuples[:check])
    ours = pktflow_matches(table, pool, idx[:check])
    theirs = peer_matches(rules_file, check_file, check)
    agree = sum(a == b for a, b in zip(ours, theirs, strict=False))
    print(f"agreement with rte_acl {size} rules: {agree}/{check} packets")
    peer = peer_rate(rules_file, trace_file)
    print(f"rte_acl {size} rules: {peer / 1e6:.2f} Mpps")
    print(f"ratio pktflow/rte_acl {size} rules: {rate / peer:.2f}")
    print(f"ratio pktflow 5-tuple array/rte_acl {size} rules: {tuple_rate / peer:.2f}",
          flush=True)


def classify_all(table: L3Rules, pool: Pool, idx: np.ndarray) -> np.ndarray:
    out = np.empty(len(idx), dtype=np.int32)
    l3_classify_batch(table.kernel_state(), pool.data, pool.meta, idx, len(idx), out)
    return out


def load_time(n: int, rnd: random.Random, workdir: Path) -> None:
    path = workdir / f"load{n}.conf"
    path.write_text("".join(str(r) + "\n" for r in random_rules(n, rnd)))
    started = time.perf_counter()
    table = L3Rules.load(path)
    assert len(table) == n
    print(f"load time {n} rules: {1000 * (time.perf_counter() - started):.0f} ms")


def reload_delay(workdir: Path) -> None:
    path = workdir / "watched.conf"
    path.write_text("ANY ANY ANY ANY ANY 1\n")
    with L3Rules.load(path).watch() as table:
        time.sleep(0.3)
        tmp = workdir / "watched.tmp"
        tmp.write_text("ANY ANY ANY ANY ANY 2\n")
        started = time.perf_counter()
        os.replace(tmp, path)
        while table.version == 1 and time.perf_counter() - started < 5:
            time.sleep(0.005)
        delay = time.perf_counter() - started
    print(f"reload delay (watched file, 100 ms poll): {1000 * delay:.0f} ms")


def main() -> None:
    rnd = random.Random(2024)
    have_peer = shutil.which("dpdk-test-acl") is not None
    if not have_peer:
        print("rte_acl: dpdk-test-acl not found (Debian package dpdk-dev); pktflow only")
    print(f"traffic: {PACKETS} IPv4 TCP/UDP 64-byte packets, batches of {BATCH}, one core, "
          f"best of {ROUNDS} rounds")
    print("load average: {:.1f} {:.1f} {:.1f} (other work on the machine lowers both "
          "sides' wall-clock rates)".format(*os.getloadavg()))
    try:
        with tempfile.TemporaryDirectory(prefix="pktflow-bench-acl-") as tmp:
            workdir = Path(tmp)
            for size in SIZES:
                bench_size(size, rnd, workdir, have_peer)
            load_time(1000, rnd, workdir)
            load_time(10000, rnd, workdir)
            reload_delay(workdir)
    finally:
        shutil.rmtree(Path("/var/run/dpdk") / DPDK_PREFIX, ignore_errors=True)


if __name__ == "__main__":
    main()
