"""`python -m fuzz [--seconds S] [--runs N] [--seed K] [TARGET...]`: fuzz each target with
atheris (libFuzzer) in a process of its own and print, per target, the inputs tried and
the distinct crashes found. Exit status 1 if any target crashed.

Seeds come from fuzz/corpus/TARGET (committed); inputs the fuzzer finds interesting go to
a working corpus under PKTFLOW_CACHE_DIR, so long runs build on each other.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fuzz.targets import TARGETS

HERE = Path(__file__).parent


def run_target(name: str, seconds: float, runs: int, seed: int, work: Path,
               out: Path) -> dict:
    """Fuzz one target; returns {"inputs", "crashes", "seconds", "status"}."""
    corpus = work / name
    corpus.mkdir(parents=True, exist_ok=True)
    flags = [f"-seed={seed}", f"-max_total_time={max(1, int(seconds))}", "-timeout=20",
             "-rss_limit_mb=4096", "-max_len=4096", "-print_final_stats=0"]
    if runs:
        flags.append(f"-runs={runs}")
    cmd = [sys.executable, "-m", "fuzz.run", name, str(out), *flags, str(corpus),
           str(HERE / "corpus" / name)]
    started = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="pktflow-fuzz-")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent,
                              timeout=seconds + 300,
                              env={**os.environ, "PKTFLOW_FUZZ_TMP": scratch})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    took = time.monotonic() - started
    done = re.findall(r"Done (\d+) runs", proc.stderr)
    crashes = sorted(out.glob(f"crash-{name}-*.json"))
    status = "ok"
    if proc.returncode != 0 or not done:
        # libFuzzer itself stopped: a timeout, out of memory, or a crash below Python.
        status = f"libFuzzer exit {proc.returncode}"
        (out / f"crash-{name}-libfuzzer.log").write_text(proc.stderr[-20000:])
    return {"inputs": int(done[-1]) if done else _last_count(proc.stderr),
            "crashes": len(crashes) + (status != "ok"), "seconds": round(took, 1),
            "status": status, "found": [json.loads(c.read_text())["key"] for c in crashes]}


def _last_count(log: str) -> int:
    counts = re.findall(r"#(\d+)\s", log)
    return int(counts[-1]) if counts else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    p.add_argument("targets", nargs="*", help=f"targets (default all: {', '.join(TARGETS)})")
    p.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 60)),
                   help="seconds per target (default 60, or FUZZ_SECONDS)")
    p.add_argument("--runs", type=int, default=0, help="stop after this many inputs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=None, help="where crash reports go (default: a temp dir)")
    args = p.parse_args(argv)
    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        p.error(f"unknown target {unknown[0]} (known: {', '.join(TARGETS)})")
    cache = Path(os.environ.get("PKTFLOW_CACHE_DIR", HERE.parent / ".venv" / "cache"))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="pktflow-fuzz-out-"))
    out.mkdir(parents=True, exist_ok=True)
    total_crashes = 0
    for name in names:
        r = run_target(name, args.seconds, args.runs, args.seed, cache / "fuzz-corpus", out)
        total_crashes += r["crashes"]
        print(f"{name}: {r['inputs']} inputs, {r['crashes']} crashes, {r['seconds']} s"
              + (f" ({r['status']})" if r["status"] != "ok" else ""), flush=True)
        for key in r["found"]:
            print(f"  crash: {key}")
    print(f"crash reports: {out}" if total_crashes else "no crashes")
    if not total_crashes and not args.out:
        shutil.rmtree(out, ignore_errors=True)
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
