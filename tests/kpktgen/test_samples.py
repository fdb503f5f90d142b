"""Conformance: the Linux kernel's own samples/pktgen scripts, unmodified, against the engine.

Every script runs through `pktflow kpktgen serve --proc -- SCRIPT` inside a test namespace
(`ip netns exec`), with `-i` on a veth whose peer sits in a second namespace. A tcpdump on
the peer captures what arrives; each script gets its own destination subnet, so one
capture checks them all against what their parameters asked: count, frame size, address
and port ranges, flows and threads.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pktflow.kpktgen.params import PKTGEN_MAGIC, parse_result

pytestmark = pytest.mark.root

TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
MEMBER_DIR = "linux-source-6.12/samples/pktgen"
SCRIPTS = ("functions.sh", "parameters.sh", "pktgen_sample01_simple.sh",
           "pktgen_sample02_multiqueue.sh", "pktgen_sample03_burst_single_flow.sh",
           "pktgen_sample04_many_flows.sh", "pktgen_sample05_flow_per_thread.sh",
           "pktgen_bench_xmit_mode_queue_xmit.sh")
DST_MAC = "02:00:00:00:00:09"
GEN_IF, PEER_IF = "kpg0", "kpp0"

# name -> (script, arguments); the destination subnet tells the runs apart in the capture
RUNS = {
    "s01": ("pktgen_sample01_simple.sh", ["-n", "1000", "-s", "100", "-d", "198.18.1.0/29",
                                          "-p", "1000-1010"]),
    "s02": ("pktgen_sample02_multiqueue.sh", ["-t", "2", "-n", "500", "-d", "198.18.2.1"]),
    # veth cannot share one skb between sends: the kernel refuses `burst 32` (ENOTSUPP)
    "s03_burst": ("pktgen_sample03_burst_single_flow.sh", ["-n", "1000", "-d", "198.18.3.2"]),
    "s03": ("pktgen_sample03_burst_single_flow.sh", ["-b", "0", "-n", "1000",
                                                     "-d", "198.18.3.1"]),
    "s04": ("pktgen_sample04_many_flows.sh", ["-n", "1000", "-d", "198.18.4.0/24"]),
    "s05": ("pktgen_sample05_flow_per_thread.sh", ["-t", "2", "-b", "0", "-n", "500",
                                                   "-d", "198.18.5.1"]),
    "s01_v6": ("pktgen_sample01_simple.sh", ["-6", "-n", "100", "-d", "fd00::9",
                                             "-p", "2000"]),
    "queue_xmit": ("pktgen_bench_xmit_mode_queue_xmit.sh", ["-n", "1000",
                                                            "-d", "198.18.6.1"]),
}


def _ip(a: str) -> int:
    return struct.unpack("!I", bytes(int(x) for x in a.split(".")))[0]


def _cached_samples() -> Path:
    """samples/pktgen from Debian's linux-source-6.12, extracted once into the cache."""
    if not TARBALL.exists():
        pytest.skip(f"{TARBALL} is missing: install Debian's linux-source-6.12 (make test "
                    "does, in its Debian step)")
    st = TARBALL.stat()
    cache = Path(os.environ.get("PKTFLOW_CACHE_DIR", "/tmp")) / \
        f"kernel-samples-pktgen-{st.st_size}-{int(st.st_mtime)}"
    if all((cache / s).exists() for s in SCRIPTS):
        return cache
    tmp = cache.with_name(cache.name + f".{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    members = [f"{MEMBER_DIR}/{s}" for s in SCRIPTS]
    # tar stops reading once it found every named member (xz still costs seconds)
    subprocess.run(["tar", "-xJf", str(TARBALL), "-C", str(tmp), "--occurrence=1", *members],
                   check=True, timeout=300)
    shutil.rmtree(cache, ignore_errors=True)
    (tmp / MEMBER_DIR).rename(cache)
    shutil.rmtree(tmp, ignore_errors=True)
    return cache


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    src = _cached_samples()
    dst = tmp_path_factory.mktemp("pktgen-samples")
    for s in SCRIPTS:
        shutil.copy2(src / s, dst / s)
    return dst


def pcap_frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert len(data) >= 24, "tcpdump wrote no pcap header"
    out, o = [], 24
    while o + 16 <= len(data):
        incl = struct.unpack_from("<I", data, o + 8)[0]
        out.append(data[o + 16:o + 16 + incl])
        o += 16 + incl
    return out


def ip_checksum_ok(f: bytes, l3: int = 14) -> bool:
    words = struct.unpack("!10H", f[l3:l3 + 20])
    s = sum(words)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def start_capture(lab, host: str, ifname: str, path: Path) -> subprocess.Popen:
    # --immediate-mode: without it libpcap hands packets over per ring block (up to a
    # second late), and a short run's frames would still sit in the ring at the end. No
    # filter (its vlan/mpls keywords shift offsets): the lab's namespaces are quiet, and
    # readers keep the ethertypes they expect.
    cap = lab.exec(host, "tcpdump", "-i", ifname, "-w", str(path), "-U", "-n", "-s", "256",
                   "--immediate-mode", stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    line = cap.stderr.readline().decode()  # "listening on ..." once it captures
    assert "listening" in line, line
    return cap


def stop_capture(cap: subprocess.Popen) -> None:
    time.sleep(0.5)
    cap.terminate()
    cap.communicate(timeout=10)


def serve_cmd(lab, host: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", lab.ns(host), sys.executable, "-m", "pktflow", "kpktgen",
            "serve", "--proc", "--", *command]


@pytest.fixture(scope="module")
def runs(samples, tmp_path_factory):
    """Run every script of RUNS once, in one engine, while the peer captures."""
    from pktflow.testbed.net import VethLab

    out = tmp_path_factory.mktemp("runs")
    batch = ["set +e"]
    for name, (script, args) in RUNS.items():
        argv = " ".join([f"./{script}", "-i", GEN_IF, "-m", DST_MAC, *args])
        batch.append(f"{argv} >{out}/{name}.out 2>{out}/{name}.err; echo $? >{out}/{name}.rc")
    with VethLab("kpt", ["g", "p"], [("g", GEN_IF, "p", PEER_IF)]) as lab:
        cap = start_capture(lab, "p", PEER_IF, out / "peer.pcap")
        try:
            r = subprocess.run(serve_cmd(lab, "g", "bash", "-c", "\n".join(batch)),
                               cwd=samples, capture_output=True, text=True, timeout=240)
        finally:
            stop_capture(cap)
        assert r.returncode == 0, r.stderr[-2000:]
        frames = pcap_frames(out / "peer.pcap")
    result = {}
    for name in RUNS:
        result[name] = {"rc": int((out / f"{name}.rc").read_text()),
                        "out": (out / f"{name}.out").read_text(),
                        "err": (out / f"{name}.err").read_text()}
    by_net: dict[int | str, list[bytes]] = {}
    for f in frames:
        if f[12:14] == b"\x08\x00":
            by_net.setdefault(f[32], []).append(f)  # third octet of the destination
        elif f[12:14] == b"\x86\xdd":
            by_net.setdefault("v6", []).append(f)
    return result, by_net


def fields(f: bytes) -> dict:
    return {"len": len(f), "dmac": f[0:6].hex(":"), "src": f[26:30], "dst": f[30:34],
            "sport": struct.unpack("!H", f[34:36])[0], "dport": struct.unpack("!H", f[36:38])[0],
            "ttl": f[22], "udp_csum": f[40:42], "magic": struct.unpack("!I", f[42:46])[0],
            "seq": struct.unpack("!I", f[46:50])[0]}


def ok(res: dict, name: str) -> None:
    r = res[name]
    assert r["rc"] == 0, f"{name}: exit {r['rc']}\n{r['out'][-1500:]}\n{r['err'][-1500:]}"


def test_sample01_simple(runs):
    res, by_net = runs
    ok(res, "s01")
    frames = [fields(f) for f in by_net.get(1, [])]
    assert len(frames) == 1000
    assert {f["len"] for f in frames} == {100}  # pkt_size is the frame without the FCS
    assert {f["dmac"] for f in frames} == {DST_MAC}
    dsts = Counter(f["dst"][3] for f in frames)
    assert set(dsts) == set(range(8))  # 198.18.1.0/29, every address in turn
    assert {f["dport"] for f in frames} <= set(range(1000, 1010))  # random, max excluded
    assert len({f["dport"] for f in frames}) > 5
    assert {f["sport"] for f in frames} <= set(range(9, 109))
    assert {f["magic"] for f in frames} == {PKTGEN_MAGIC} and {f["ttl"] for f in frames} == {32}
    assert [f["seq"] for f in frames] == list(range(1, 1001))
    assert {f["udp_csum"] for f in frames} == {b"\0\0"}  # no UDPCSUM flag: zero, as the kernel
    assert all(ip_checksum_ok(f) for f in by_net[1])
    r = parse_result(res["s01"]["out"])
    assert r is not None and r.packets == 1000 and r.pkt_size == 100 and r.errors == 0
    assert "Result device: kpg0" in res["s01"]["out"]


def test_sample02_multiqueue_two_threads(runs):
    res, by_net = runs
    ok(res, "s02")
    frames = [fields(f) for f in by_net.get(2, [])]
    assert len(frames) == 1000
    assert {f["len"] for f in frames} == {60}  # the scripts' default size
    # two devices kpg0@0 and kpg0@1, each numbering its own 500 packets
    assert Counter(f["seq"] for f in frames) == Counter({s: 2 for s in range(1, 501)})
    assert res["s02"]["out"].count("Result: OK:") == 2


def test_sample03_burst_refused_on_veth_like_the_kernel(runs):
    res, by_net = runs
    r = res["s03_burst"]
    assert r["rc"] != 0
    assert 'Write error' in r["err"] and "burst 32" in r["err"]
    assert 2 not in {f[33] for f in by_net.get(3, [])}  # nothing sent to 198.18.3.2


def test_sample03_single_flow(runs):
    res, by_net = runs
    ok(res, "s03")
    frames = [fields(f) for f in by_net.get(3, [])]
    assert len(frames) == 1000
    flows = {(f["src"], f["dst"], f["sport"], f["dport"]) for f in frames}
    assert len(flows) == 1 and frames[0]["dst"] == bytes([198, 18, 3, 1])
    assert (frames[0]["sport"], frames[0]["dport"]) == (9, 9)  # the kernel's defaults


def test_sample04_many_flows(runs):
    res, by_net = runs
    ok(res, "s04")
    frames = [fields(f) for f in by_net.get(4, [])]
    assert len(frames) == 1000
    lo, hi = _ip("198.18.0.0"), _ip("198.19.255.255")
    srcs = [struct.unpack("!I", f["src"])[0] for f in frames]
    assert all(lo <= s < hi for s in srcs) and len(set(srcs)) > 900  # IPSRC_RND over /15
    # FLOW_SEQ, flowlen 10: each flow keeps its destination for 10 packets, then the next
    dsts = [f["dst"][3] for f in frames]
    assert dsts == [1 + i // 10 for i in range(1000)]
    assert all(ip_checksum_ok(f) for f in by_net[4])
    out = res["s04"]["out"]
    assert parse_result(out).packets == 1000


def test_sample05_flow_per_thread(runs):
    res, by_net = runs
    ok(res, "s05")
    frames = [fields(f) for f in by_net.get(5, [])]
    assert len(frames) == 1000
    assert Counter(f["src"] for f in frames) == {bytes([198, 18, 1, 1]): 500,
                                                 bytes([198, 18, 2, 1]): 500}


def test_sample01_ipv6(runs):
    res, by_net = runs
    ok(res, "s01_v6")
    frames = by_net.get("v6", [])
    assert len(frames) == 100
    # pkt_size 60 is below IPv6 + UDP + pktgen header: the kernel sends 78 bytes
    assert {len(f) for f in frames} == {78}
    assert {(f[20], f[21]) for f in frames} == {(17, 32)}  # UDP, hop limit 32
    assert {f[38:54] for f in frames} == {bytes.fromhex("fd00" + "00" * 13 + "09")}
    assert {struct.unpack("!H", f[56:58])[0] for f in frames} == {2000}
    assert parse_result(res["s01_v6"]["out"]).pkt_size == 60  # the kernel's cur_pkt_size


def test_bench_queue_xmit(runs):
    res, by_net = runs
    ok(res, "queue_xmit")
    frames = [fields(f) for f in by_net.get(6, [])]
    assert len(frames) == 1000 and {f["len"] for f in frames} == {60}
    assert "Device: kpg0@0" in res["queue_xmit"]["out"]
    assert parse_result(res["queue_xmit"]["out"]).packets == 1000


def test_two_namespaces_generate_at_once(samples, tmp_path):
    """Each namespace has its own engine: two paced runs overlap in time instead of
    queueing behind one lock, and each peer gets exactly its own frames."""
    from pktflow.testbed.net import VethLab

    hosts = ["g1", "p1", "g2", "p2"]
    links = [("g1", "kpg1", "p1", "kpp1"), ("g2", "kpg2", "p2", "kpp2")]
    with VethLab("kpc", hosts, links) as lab:
        caps = [start_capture(lab, f"p{i}", f"kpp{i}", tmp_path / f"p{i}.pcap") for i in (1, 2)]
        procs = []
        try:
            go = tmp_path / "go"
            for i in (1, 2):
                # both engines up first, then both scripts at once: 4000 packets 250 us
                # apart, about one second of sending each
                script = (f"while [ ! -e {go} ]; do sleep 0.05; done; "
                          f"exec ./pktgen_sample01_simple.sh -i kpg{i} -m {DST_MAC} -n 4000 "
                          f"-w 250000 -d 198.18.{10 + i}.1")
                procs.append(subprocess.Popen(serve_cmd(lab, f"g{i}", "bash", "-c", script),
                                              cwd=samples, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
            deadline = time.monotonic() + 180
            while not all(Path(f"/proc/{p.pid}/mountinfo").exists() and "/net/pktgen" in
                          Path(f"/proc/{p.pid}/mountinfo").read_text() for p in procs):
                assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
                time.sleep(0.05)
            go.touch()
            outs = [p.communicate(timeout=120) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:  # failed midway: SIGTERM lets serve clean up
                    p.terminate()
                    try:
                        p.wait(15)
                    except subprocess.TimeoutExpired:
                        p.kill()
            for c in caps:
                stop_capture(c)
        spans = []
        for p, (out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err[-2000:]
            started = int(out.split("started: ")[1].split("us")[0])
            stopped = int(out.split("stopped: ")[1].split("us")[0])
            spans.append((started, stopped))
            assert parse_result(out).packets == 4000
        # CLOCK_MONOTONIC is one clock for both processes: the runs overlap
        assert max(s for s, _ in spans) < min(e for _, e in spans), spans
        for i in (1, 2):
            frames = [f for f in pcap_frames(tmp_path / f"p{i}.pcap") if f[12:14] == b"\x08\x00"]
            assert len(frames) == 4000 and {f[32] for f in frames} == {10 + i}
