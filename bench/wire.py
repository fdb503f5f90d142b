"""Real-wire benchmark (root): veth links inside namespaces this run creates and removes.

(a) Forwarding: trafgen in namespace `src` offers the same load to a forwarder in `fwd`,
    which sends every frame on to `dst`; contenders are pktflow (flow engine, a receiver
    -> sender graph) with AF_XDP and with AF_PACKET, and dpdk-testpmd (io forwarding) with
    its net_af_xdp and net_af_packet vdevs.
(b) Generation: pktflow's generator against trafgen, each sending on src -> fwd alone:
    one sending worker (AF_XDP, AF_PACKET) against trafgen on one CPU, and two workers on
    the link's two queues against trafgen's default, one process per CPU. trafgen sends
    the frame pktflow's generator sends by default (captured first), byte for byte.

Every rate is measured the same way: the receiving interface's packet counter over the
same RUN_S window, after the contender started (compiling, EAL init) and traffic ran for
a moment. The offered rate is the forwarder's input interface over that window. CPU is the
contender's process (all threads) over the window: testpmd polls, pktflow sleeps when idle.
Contenders take turns for ROUNDS rounds and each keeps its best round, so a burst of load
from elsewhere on a shared machine does not decide a ratio.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pktflow.testbed.net import VethLab

RUN_S = 3.0  # measuring window
SETTLE_S = 1.0  # traffic runs this long before the window opens
ROUNDS = 2
FORWARD_CPU = "1-1"  # a CPU list (a bare "1" would mean one core, the first)
START_TIMEOUT = 120.0  # a contender's start-up: EAL set-up, compiling (first run) or loading
# Offered loads for (a), the same for every forwarder: a fixed rate every contender should
# carry, and trafgen flat out (one sending process), which finds a forwarder's limit.
LOADS = (("400 kpps", "400000pps"), ("trafgen max", None))
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Figure:
    """One contender's run: received rate, offered rate (forwarding), CPU in cores."""

    pps: float
    offered: float = 0.0
    cpu: float = 0.0


def rx_packets(lab: VethLab, host: str, ifname: str) -> int:
    out = subprocess.run(["ip", "-n", lab.ns(host), "-s", "-j", "link", "show", ifname],
                         capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def _cpu_seconds(pgid: int) -> float:
    """User + system CPU so far of every process (and thread) in process group `pgid`."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def window(lab: VethLab, counted: tuple[str, str], offered: tuple[str, str] | None,
            pid: int) -> Figure:
    """Rates over RUN_S: packets arriving at `counted` (host, interface), at `offered`,
    and the CPU the process group of `pid` used."""
    c0 = rx_packets(lab, *counted)
    o0 = rx_packets(lab, *offered) if offered else 0
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(RUN_S)
    c1 = rx_packets(lab, *counted)
    o1 = rx_packets(lab, *offered) if offered else 0
    cpu1, t1 = _cpu_seconds(pid), time.monotonic()
    seconds = t1 - t0
    return Figure((c1 - c0) / seconds, (o1 - o0) / seconds, (cpu1 - cpu0) / seconds)


def start(lab: VethLab, host: str, *argv: str, **kwargs) -> subprocess.Popen:
    """Start a contender in a host's namespace, in a process group of its own: trafgen
    forks a worker per CPU, and stopping must reach every one of them."""
    return lab.exec(host, *argv, start_new_session=True, **kwargs)


def _trafgen(lab: VethLab, conf: Path, rate: str | None, cpus: int | None = None,
             ) -> subprocess.Popen:
    argv = ["trafgen", "-o", "s0", "-i", str(conf)] + (["-b", rate] if rate else [])
    argv += ["--cpus", str(cpus)] if cpus else []
    return start(lab, "src", *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    """SIGINT the contender's process group (as Ctrl-C would), SIGKILL it if it lingers."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(10)
            # The leader is gone; make sure no forked worker of its group survives it.
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _forward_pktflow(lab: VethLab, tmp: Path, driver: str, conf: Path, rate: str | None,
                     ) -> Figure:
    program = tmp / "fwd.py"
    program.write_text("def build(nf):\n    nf.sender(nf.receiver(0), 1)\n")
    log = tmp / f"nf-{driver}.log"
    with open(log, "w") as out:
        nf = start(lab, "fwd", sys.executable, "-m", "pktflow", "flow", "run", str(program),
                    "--port", f"0={driver}:f0", "--port", f"1={driver}:f1",
                    # CPU 1, as testpmd's forwarding lcore (-l 0-1: lcore 0 only waits
                    # for Enter); trafgen's single sender runs on CPU 0.
                    "--cores", FORWARD_CPU, stdout=out, stderr=subprocess.STDOUT)
    try:
        return _forward_run(lab, nf, conf, log, rate)
    finally:
        stop(nf)


def _forward_testpmd(lab: VethLab, vdev: str, conf: Path, rate: str | None) -> Figure:
    args = {"net_af_packet": "iface={},qpairs=1", "net_af_xdp": "iface={},start_queue=0"}[vdev]
    # A prefix of its own per run keeps this run's EAL files apart from any other DPDK
    # process, including the previous contender if it is still going away.
    prefix = f"pftwire{os.getpid()}{vdev[4:]}{time.monotonic_ns() % 100000}"
    log = Path(tempfile.gettempdir()) / f"{prefix}.log"
    with open(log, "w") as out:
        pmd = start(lab, "fwd", "dpdk-testpmd", "--no-huge", "--file-prefix", prefix,
                     "-m", "1024", "--no-pci", "-l", "0-1",
                     "--vdev", f"{vdev}0,{args.format('f0')}",
                     "--vdev", f"{vdev}1,{args.format('f1')}", "--",
                     "--forward-mode=io", "--auto-start", "--total-num-mbufs=16384",
                     stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        return _forward_run(lab, pmd, conf, log, rate)
    finally:
        log.unlink(missing_ok=True)
        try:
            pmd.stdin.write("\n")
            pmd.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        stop(pmd)
        # testpmd's libxdp attaches without a BPF link (no bpffs here): a testpmd that had
        # to be killed leaves its program, which would swallow the next contender's frames.
        for ifname in ("f0", "f1"):
            subprocess.run(["ip", "-n", lab.ns("fwd"), "link", "set", "dev", ifname, "xdp",
                            "off"], capture_output=True)
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)


def _forward_run(lab: VethLab, forwarder: subprocess.Popen, conf: Path, log: Path,
                 rate: str | None) -> Figure:
    """Offer trafgen's load, wait until frames come out at the far end (the forwarder has
    started: EAL set up, kernels compiled), let it settle, then measure."""
    gen = _trafgen(lab, conf, rate, cpus=1)
    try:
        _wait_arriving(lab, ("dst", "d0"), forwarder, log)
        time.sleep(SETTLE_S)
        if forwarder.poll() is not None:
            raise RuntimeError(f"forwarder exited: {log.read_text()[-500:]}")
        return window(lab, ("dst", "d0"), ("fwd", "f0"), forwarder.pid)
    finally:
        stop(gen)


def _wait_arriving(lab: VethLab, where: tuple[str, str], proc: subprocess.Popen, log: Path,
                   timeout: float = START_TIMEOUT) -> None:
    """Wait until packets arrive at `where` (host, interface) while `proc` runs."""
    first = rx_packets(lab, *where)
    deadline = time.monotonic() + timeout
    while rx_packets(lab, *where) - first < 1000:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-500:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing arrived within {timeout:g} s: "
                               f"{log.read_text()[-500:]}")
        time.sleep(0.2)


def _generate_pktflow(lab: VethLab, tmp: Path, *specs: str) -> Figure:
    """pktflow's generator with one port (one sending worker) per spec, all on s0."""
    log = tmp / "pktgen.log"
    ports = [a for i, spec in enumerate(specs) for a in ("--port", f"{i}={spec}")]
    with open(log, "w") as out:
        gen = start(lab, "src", sys.executable, "-m", "pktflow", "pktgen", *ports,
                     "--run-for", str(START_TIMEOUT + 30), "--json",
                     "-f", "/dev/null", stdout=out, stderr=subprocess.STDOUT)
    try:
        # Sending starts once the generator has loaded: wait for the first frames.
        _wait_arriving(lab, ("fwd", "f0"), gen, log)
        time.sleep(SETTLE_S)
        return window(lab, ("fwd", "f0"), None, gen.pid)
    finally:
        stop(gen)


def _pktflow_frame_conf(lab: VethLab, tmp: Path) -> Path:
    """A trafgen configuration that sends the very frame pktflow's generator sends by
    default (captured on the wire), so both generators make the kernel do the same work."""
    capture = tmp / "pktflow-frame.pcap"
    dump = start(lab, "fwd", "tcpdump", "-i", "f0", "-c", "1", "-U", "-w", str(capture),
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # tcpdump is listening
        gen = start(lab, "src", sys.executable, "-m", "pktflow", "pktgen", "--port",
                     "0=packet:s0", "--count", "10", stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gen.wait(START_TIMEOUT)
        dump.wait(10)
    finally:
        stop(dump)
    raw = capture.read_bytes()
    # pcap: a 24-byte file header, a 16-byte record header (its third word: stored bytes).
    length = int.from_bytes(raw[32:36], "little")
    frame = raw[40:40 + length]
    if len(frame) < 60:
        raise RuntimeError(f"no pktflow frame captured on f0 ({len(raw)} bytes in the pcap)")
    conf = tmp / "pktflow-frame.cfg"
    conf.write_text("{ " + ", ".join(f"0x{b:02x}" for b in frame) + " }\n")
    return conf


def _generate_trafgen(lab: VethLab, conf: Path, cpus: int | None = None) -> Figure:
    gen = _trafgen(lab, conf, None, cpus)
    try:
        time.sleep(SETTLE_S)
        return window(lab, ("fwd", "f0"), None, gen.pid)
    finally:
        stop(gen)


def best_of_rounds(contenders: list[tuple[str, Callable[[], Figure]]],
                    show: Callable[[str, Figure], None]) -> dict[str, Figure]:
    best: dict[str, Figure] = {}
    for _round in range(ROUNDS):
        for name, run in contenders:
            try:
                fig = run()
            except Exception as e:  # one contender failing must not hide the others
                print(f"{name}: failed: {e}", flush=True)
                continue
            if name not in best or fig.pps > best[name].pps:
                best[name] = fig
    for name, fig in best.items():
        show(name, fig)
    return best


def main() -> None:
    if os.geteuid() != 0:
        print("wire: skipped (needs root for namespaces, AF_PACKET and AF_XDP)")
        return
    for tool in ("trafgen", "dpdk-testpmd"):
        if not shutil.which(tool):
            print(f"wire: {tool} not found: apt-get install netsniff-ng dpdk")
            return
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)", flush=True)
    links = [("src", "s0", "fwd", "f0"), ("fwd", "f1", "dst", "d0")]
    with VethLab(f"wire{os.getpid() % 10000}", ["src", "fwd", "dst"], links) as lab, \
            tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        conf = tmp / "frame.cfg"
        # 60-byte frames (64 on the wire with FCS) to an experimental ethertype.
        conf.write_text("{ eth(da=02:00:00:00:00:02, sa=02:00:00:00:00:01, type=0x88b5), "
                        "fill(0x00, 46) }\n")

        for load, rate in LOADS:
            def show_forward(name: str, f: Figure, load: str = load) -> None:
                print(f"forward {name} at {load}: {f.pps / 1e6:.3f} Mpps of "
                      f"{f.offered / 1e6:.3f} offered ({100 * f.pps / max(f.offered, 1):.1f}%,"
                      f" 64 B; forwarder CPU {f.cpu:.2f} cores)", flush=True)

            fwd = best_of_rounds([
                ("pktflow af_xdp", lambda r=rate: _forward_pktflow(lab, tmp, "xdp", conf, r)),
                ("testpmd af_xdp", lambda r=rate: _forward_testpmd(lab, "net_af_xdp", conf, r)),
                ("pktflow af_packet",
                 lambda r=rate: _forward_pktflow(lab, tmp, "packet", conf, r)),
                ("testpmd af_packet",
                 lambda r=rate: _forward_testpmd(lab, "net_af_packet", conf, r))],
                show_forward)
            for sock in ("af_xdp", "af_packet"):
                ours, peer = fwd.get(f"pktflow {sock}"), fwd.get(f"testpmd {sock}")
                if ours and peer and peer.pps and peer.offered and ours.offered:
                    # trafgen shares the CPUs with the forwarder, so what it manages to
                    # offer differs a little between contenders: compare both the rates and
                    # the share of the offered load each one carried.
                    share = (ours.pps / ours.offered) / (peer.pps / peer.offered)
                    print(f"ratio pktflow/testpmd forward {sock} at {load}: "
                          f"{ours.pps / peer.pps:.2f} (share of offered: {share:.2f})")

        def show_generate(name: str, f: Figure) -> None:
            print(f"generate {name}: {f.pps / 1e6:.3f} Mpps (64 B; CPU {f.cpu:.2f} cores)",
                  flush=True)

        # Two queues on the link, so two AF_XDP sockets (two generator workers, one per
        # CPU) can send at once, as trafgen's two processes do; every contender below
        # sends over the same two-queue link.
        for host, ifname in (("src", "s0"), ("fwd", "f0")):
            subprocess.run(["ip", "netns", "exec", lab.ns(host), "ethtool", "-L", ifname,
                            "rx", "2", "tx", "2"], capture_output=True)
        same = _pktflow_frame_conf(lab, tmp)
        mine = ("pktflow xdp", "pktflow xdp 2 queues", "pktflow packet")
        gen = best_of_rounds([
            (mine[0], lambda: _generate_pktflow(lab, tmp, "xdp:s0")),
            (mine[1], lambda: _generate_pktflow(lab, tmp, "xdp:s0", "xdp:s0,queue=1")),
            (mine[2], lambda: _generate_pktflow(lab, tmp, "packet:s0")),
            ("trafgen", lambda: _generate_trafgen(lab, same)),
            ("trafgen 1 cpu", lambda: _generate_trafgen(lab, same, 1))], show_generate)
        def rate(name: str) -> float:
            return gen[name].pps if name in gen else 0.0

        one = max(rate(mine[0]), rate(mine[2]))
        for label, ours, peer in (
                ("one worker / trafgen on one CPU", one, rate("trafgen 1 cpu")),
                ("two workers / trafgen on every CPU", rate(mine[1]), rate("trafgen")),
                ("af_packet / trafgen on one CPU, both AF_PACKET rings", rate(mine[2]),
                 rate("trafgen 1 cpu"))):
            if ours and peer:
                print(f"ratio pktflow/trafgen generate ({label}): {ours / peer:.2f}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
