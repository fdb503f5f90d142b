"""Real-wire benchmark (root): veth links inside namespaces this run creates and removes.

(a) Forwarding: trafgen in namespace `src` offers the same load to a forwarder in `fwd`,
    which sends every frame on to `dst`; contenders are pktflow (flow engine, a receiver
    -> sender graph) with AF_XDP and with AF_PACKET, and dpdk-testpmd (io forwarding) with
    its net_af_xdp and net_af_packet vdevs.
(b) Generation: pktflow's generator against trafgen, each sending on src -> fwd alone.
Every rate is measured the same way: frames counted by the receiving interface, best
one-second window, so start-up time (compiling, EAL init) is left out.
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
from pathlib import Path

from pktflow.testbed.net import VethLab

WINDOW_S = 1.0
RUN_S = 4.0
TRAFGEN_RATE = "400000pps"  # offered load for (a): the same for every forwarder


def _rx_packets(lab: VethLab, host: str, ifname: str) -> int:
    out = subprocess.run(["ip", "-n", lab.ns(host), "-s", "-j", "link", "show", ifname],
                         capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def _best_window_pps(lab: VethLab, host: str, ifname: str, seconds: float) -> float:
    """Sample the interface's receive counter and return the best one-second rate."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append((time.monotonic(), _rx_packets(lab, host, ifname)))
        time.sleep(0.1)
    best = 0.0
    for i, (t0, c0) in enumerate(samples):
        for t1, c1 in samples[i + 1:]:
            if t1 - t0 >= WINDOW_S:
                best = max(best, (c1 - c0) / (t1 - t0))
                break
    return best


def _trafgen(lab: VethLab, conf: Path, rate: str | None) -> subprocess.Popen:
    argv = ["trafgen", "-o", "s0", "-i", str(conf), "-q"] + (["-b", rate] if rate else [])
    return lab.exec("src", *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _forward_pktflow(lab: VethLab, tmp: Path, driver: str, conf: Path) -> float:
    program = tmp / "fwd.py"
    program.write_text("def build(nf):\n    nf.sender(nf.receiver(0), 1)\n")
    nf = lab.exec("fwd", sys.executable, "-m", "pktflow", "flow", "run", str(program),
                  "--port", f"0={driver}:f0", "--port", f"1={driver}:f1",
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return _forward_run(lab, nf, conf, warmup=6.0)


def _forward_testpmd(lab: VethLab, vdev: str, conf: Path) -> float:
    args = {"net_af_packet": "iface={},qpairs=1", "net_af_xdp": "iface={},start_queue=0"}[vdev]
    # --file-prefix keeps this run's EAL files apart from any other DPDK process.
    pmd = lab.exec("fwd", "dpdk-testpmd", "--no-huge", "--file-prefix", f"pftwire{os.getpid()}",
                   "-m", "1024", "--no-pci", "-l", "0-1",
                   "--vdev", f"{vdev}0,{args.format('f0')}",
                   "--vdev", f"{vdev}1,{args.format('f1')}", "--",
                   "--forward-mode=io", "--auto-start", "--total-num-mbufs=16384",
                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   text=True)
    try:
        return _forward_run(lab, pmd, conf, warmup=4.0)
    finally:
        # testpmd's libxdp attaches without a BPF link (no bpffs here): a testpmd that had to
        # be killed leaves its program, which would swallow the next contender's frames.
        for ifname in ("f0", "f1"):
            subprocess.run(["ip", "-n", lab.ns("fwd"), "link", "set", "dev", ifname, "xdp",
                            "off"], capture_output=True)


def _forward_run(lab: VethLab, forwarder: subprocess.Popen, conf: Path, warmup: float) -> float:
    try:
        time.sleep(warmup)
        if forwarder.poll() is not None:
            raise RuntimeError(f"forwarder exited: {forwarder.stderr.read()[-500:]}")
        gen = _trafgen(lab, conf, TRAFGEN_RATE)
        try:
            return _best_window_pps(lab, "dst", "d0", RUN_S)
        finally:
            _stop(gen)
    finally:
        if forwarder.stdin:
            try:
                forwarder.stdin.write("\n")
                forwarder.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        _stop(forwarder)


def _generate_pktflow(lab: VethLab, driver: str) -> float:
    gen = lab.exec("src", sys.executable, "-m", "pktflow", "pktgen", "--port", f"0={driver}:s0",
                   "--run-for", str(RUN_S + 6), "--json", "-f", "/dev/null",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _best_window_pps(lab, "fwd", "f0", RUN_S + 4)
    finally:
        _stop(gen)


def _generate_trafgen(lab: VethLab, conf: Path) -> float:
    gen = _trafgen(lab, conf, None)
    try:
        return _best_window_pps(lab, "fwd", "f0", RUN_S)
    finally:
        _stop(gen)


def main() -> None:
    if os.geteuid() != 0:
        print("wire: skipped (needs root for namespaces, AF_PACKET and AF_XDP)")
        return
    for tool in ("trafgen", "dpdk-testpmd"):
        if not shutil.which(tool):
            print(f"wire: {tool} not found: apt-get install netsniff-ng dpdk")
            return
    links = [("src", "s0", "fwd", "f0"), ("fwd", "f1", "dst", "d0")]
    with VethLab(f"wire{os.getpid() % 10000}", ["src", "fwd", "dst"], links) as lab, \
            tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        conf = tmp / "frame.cfg"
        # 60-byte frames (64 on the wire with FCS) to an experimental ethertype.
        conf.write_text("{ eth(da=02:00:00:00:00:02, sa=02:00:00:00:00:01, type=0x88b5), "
                        "fill(0x00, 46) }\n")
        results = {}
        for name, run in (
                ("pktflow af_xdp", lambda: _forward_pktflow(lab, tmp, "xdp", conf)),
                ("testpmd af_xdp", lambda: _forward_testpmd(lab, "net_af_xdp", conf)),
                ("pktflow af_packet", lambda: _forward_pktflow(lab, tmp, "packet", conf)),
                ("testpmd af_packet", lambda: _forward_testpmd(lab, "net_af_packet", conf))):
            try:
                results[name] = run()
                print(f"forward {name}: {results[name] / 1e6:.3f} Mpps "
                      f"(offered {TRAFGEN_RATE}, 64 B)", flush=True)
            except Exception as e:  # one contender failing must not hide the others
                print(f"forward {name}: failed: {e}", flush=True)
        for sock in ("af_xdp", "af_packet"):
            ours, peer = results.get(f"pktflow {sock}"), results.get(f"testpmd {sock}")
            if ours and peer:
                print(f"ratio pktflow/testpmd forward {sock}: {ours / peer:.2f}")
        gen = {}
        for name, run in (("pktflow xdp", lambda: _generate_pktflow(lab, "xdp")),
                          ("pktflow packet", lambda: _generate_pktflow(lab, "packet")),
                          ("trafgen", lambda: _generate_trafgen(lab, conf))):
            try:
                gen[name] = run()
                print(f"generate {name}: {gen[name] / 1e6:.3f} Mpps (64 B)", flush=True)
            except Exception as e:
                print(f"generate {name}: failed: {e}", flush=True)
        best = max((gen.get("pktflow xdp", 0), gen.get("pktflow packet", 0)))
        if best and gen.get("trafgen"):
            print(f"ratio pktflow/trafgen generate: {best / gen['trafgen']:.2f}")


if __name__ == "__main__":
    main()
