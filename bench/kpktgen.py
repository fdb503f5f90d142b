"""Kernel-pktgen interface benchmark (root): veth links inside namespaces this run creates.

(a) One veth, one CPU, 60-byte frames (64 on the wire): pktflow's engine serving
    /proc/net/pktgen in a private mount namespace, driven by the kernel's unmodified
    samples/pktgen/pktgen_sample01_simple.sh, against trafgen sending one of the engine's
    own frames (captured on the wire), byte for byte, both pinned to the same CPU.
(b) N Mininet hosts (N = 2, 4, 8, `pktflow testbed kpktgen`, each linked to one sink) run
    that script at once, each against its own engine: total and per-host rate at the sink
    (each host's first to last frame), whether all were sending at once, and set-up time
    per host (testbed, then launch to first frame: interpreter, engine, FUSE mount).

Rates in (a) are the receiving interface's packet counter over the same window for all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bench.wire import Figure, best_of_rounds, rx_packets, start, stop, window
from pktflow.testbed.kpktgen import run_on_hosts
from pktflow.testbed.net import VethLab

SOURCE_TAR = Path("/usr/src/linux-source-6.12.tar.xz")
SAMPLE = "pktgen_sample01_simple.sh"
CPU = "0"
COUNT = 0  # the script's "send until stopped"; the window decides what is measured
RUN_S = 3.0
SETTLE_S = 1.0
START_TIMEOUT = 60.0
HOSTS = (2, 4, 8)
HOST_COUNT = 300_000  # frames each host sends in the many-hosts runs


def extract_samples(dest: Path) -> Path:
    """Only samples/pktgen of Debian's linux-source tarball, unchanged."""
    with tarfile.open(SOURCE_TAR) as tar:
        members = [m for m in tar if "/samples/pktgen/" in m.name and m.isfile()]
        tar.extractall(dest, members=members, filter="data")
    (found,) = dest.glob("*/samples/pktgen")
    return found


def _mac(lab: VethLab, host: str, ifname: str) -> str:
    out = subprocess.run(["ip", "-n", lab.ns(host), "-j", "link", "show", ifname],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["address"]


def _engine_script(lab: VethLab, host: str, samples: Path, ifname: str, dst_mac: str,
                   log: Path, count: int = COUNT, socket: str = "auto", pin: bool = True,
                   ) -> subprocess.Popen:
    """The kernel's sample script, run unchanged against this host's own engine."""
    with open(log, "w") as out:
        return start(lab, host, *(("taskset", "-c", CPU) if pin else ()), sys.executable,
                      "-m", "pktflow",
                      "kpktgen", "serve", "--proc", "--socket", socket, "--", "bash",
                      str(samples / SAMPLE),
                      "-i", ifname, "-m", dst_mac, "-n", str(count),
                      stdout=out, stderr=subprocess.STDOUT)


def _wait_first(lab: VethLab, where: tuple[str, str], proc: subprocess.Popen, log: Path,
                base: int) -> float:
    t0 = time.monotonic()
    while rx_packets(lab, *where) == base:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-600:]}")
        if time.monotonic() - t0 > START_TIMEOUT:
            raise RuntimeError(f"no frame within {START_TIMEOUT:g} s: {log.read_text()[-600:]}")
        time.sleep(0.01)
    return time.monotonic() - t0


def _engine_rate(lab: VethLab, samples: Path, tmp: Path, dst_mac: str, socket: str,
                 ) -> Figure:
    log = tmp / f"engine-{socket}.log"
    proc = _engine_script(lab, "src", samples, "s0", dst_mac, log, socket=socket)
    try:
        _wait_first(lab, ("dst", "d0"), proc, log, rx_packets(lab, "dst", "d0"))
        time.sleep(SETTLE_S)
        return window(lab, ("dst", "d0"), None, proc.pid)
    finally:
        stop(proc)


def _engine_frame_conf(lab: VethLab, samples: Path, tmp: Path, dst_mac: str) -> Path:
    """trafgen's config: one frame the engine sent (captured on d0), byte for byte."""
    capture = tmp / "engine-frame.pcap"
    dump = start(lab, "dst", "tcpdump", "-i", "d0", "-c", "1", "-U", "-w", str(capture),
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # tcpdump is listening
        log = tmp / "capture.log"
        proc = _engine_script(lab, "src", samples, "s0", dst_mac, log, count=10)
        try:
            proc.wait(START_TIMEOUT)
        finally:
            stop(proc)
        dump.wait(10)
    finally:
        stop(dump)
    raw = capture.read_bytes() if capture.exists() else b""
    length = int.from_bytes(raw[32:36], "little") if len(raw) >= 40 else 0
    frame = raw[40:40 + length]
    if len(frame) < 60:
        raise RuntimeError(f"no engine frame captured on d0 ({len(raw)} bytes in the pcap)")
    conf = tmp / "engine-frame.cfg"
    conf.write_text("{ " + ", ".join(f"0x{b:02x}" for b in frame) + " }\n")
    return conf


def _trafgen_rate(lab: VethLab, conf: Path) -> Figure:
    gen = start(lab, "src", "taskset", "-c", CPU, "trafgen", "-o", "s0", "-i", str(conf),
                 "--cpus", "1", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(SETTLE_S)
        return window(lab, ("dst", "d0"), None, gen.pid)
    finally:
        stop(gen)


def _many_hosts(n: int, samples: Path) -> None:
    """n Mininet hosts, each with its own engine, run the sample at the same moment
    (`pktflow testbed kpktgen`); per-host rates at the sink and set-up time."""
    built: list[float] = []
    t0 = time.monotonic()
    _, runs = run_on_hosts(n, [str(samples / SAMPLE), "-i", "{intf}", "-m", "{dst_mac}",
                               "-n", str(HOST_COUNT)], timeout=START_TIMEOUT + 60,
                           on_ready=lambda tb: built.append(time.monotonic() - t0))
    rates = [r.pps for r in runs]
    sent = all(r.exit_code == 0 and r.rx_at_sink >= HOST_COUNT for r in runs)
    firsts = [r.first_frame_s for r in runs if r.first_frame_s is not None]
    lasts = [r.last_frame_s for r in runs if r.last_frame_s is not None]
    overlap = len(firsts) == n and max(firsts) < min(lasts)
    print(f"kpktgen {n} Mininet hosts at once: total {sum(rates) / 1e6:.3f} Mpps; per host "
          + " ".join(f"{r / 1e6:.3f}" for r in rates) + " Mpps "
          f"(min {min(rates) / 1e6:.3f}); every host sent its {HOST_COUNT} frames: "
          f"{'yes' if sent else 'no'}; all sending at once: {'yes' if overlap else 'no'}",
          flush=True)
    if built and firsts:
        print(f"kpktgen {n} Mininet hosts set-up: testbed {built[0] / n:.2f} s per host; "
              f"launch to first frame {min(firsts) - built[0]:.2f}-{max(firsts) - built[0]:.2f} s"
              " (interpreter, engine, FUSE mount)", flush=True)


def main() -> None:
    if os.geteuid() != 0:
        print("kpktgen: skipped (needs root for namespaces, FUSE and AF_PACKET)")
        return
    for tool, package in (("trafgen", "netsniff-ng"), ("tcpdump", "tcpdump"),
                          ("fusermount3", "fuse3"), ("taskset", "util-linux")):
        if not shutil.which(tool):
            print(f"kpktgen: {tool} not found: apt-get install {package}")
            return
    if not SOURCE_TAR.exists():
        print(f"kpktgen: {SOURCE_TAR} not found: apt-get install linux-source-6.12")
        return
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)", flush=True)
    with tempfile.TemporaryDirectory(prefix="pktflow-bench-kpktgen-") as tmpdir:
        tmp = Path(tmpdir)
        samples = extract_samples(tmp)
        with VethLab(f"kpb{os.getpid() % 10000}", ["src", "dst"],
                     [("src", "s0", "dst", "d0")]) as lab:
            dst_mac = _mac(lab, "dst", "d0")
            conf = _engine_frame_conf(lab, samples, tmp, dst_mac)
            contenders = [
                ("pktflow engine af_packet",
                 lambda: _engine_rate(lab, samples, tmp, dst_mac, "packet")),
                ("pktflow engine af_xdp",
                 lambda: _engine_rate(lab, samples, tmp, dst_mac, "xdp")),
                ("trafgen af_packet", lambda: _trafgen_rate(lab, conf))]

            def show(name: str, fig: Figure) -> None:
                how = f" driven by {SAMPLE}" if name.startswith("pktflow") else \
                    " (TX_RING), the engine's frame"
                print(f"generate {name}{how}: {fig.pps / 1e6:.3f} Mpps (one veth, CPU {CPU}, "
                      f"60 B + FCS; CPU {fig.cpu:.2f} cores)", flush=True)

            best = best_of_rounds(contenders, show)
            peer = best.get("trafgen af_packet")
            for name, label in (("pktflow engine af_packet", "both AF_PACKET"),
                                ("pktflow engine af_xdp", "engine AF_XDP, trafgen AF_PACKET")):
                if name in best and peer and peer.pps:
                    print(f"ratio pktflow/trafgen ({label}): {best[name].pps / peer.pps:.2f}")
        for n in HOSTS:
            try:
                _many_hosts(n, samples)
            except Exception as e:
                print(f"kpktgen {n} hosts: failed: {e}", flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
