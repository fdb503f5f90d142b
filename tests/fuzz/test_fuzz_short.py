"""Short, seeded fuzzing of every target (the long run is `make fuzz`).

Each committed seed (fuzz/corpus/TARGET/*) must pass its target; then Hypothesis mutates
the seeds (byte flips, cuts, splices, inserted bytes) for a fixed number of inputs with a
fixed seed, and a short atheris run checks the coverage-guided harness itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"
SEEDS = {name: sorted(p for p in (CORPUS / name).glob("*") if p.is_file()) for name in TARGETS}
# Inputs per target: enough to reach each seed's error paths, small enough for make test.
EXAMPLES = {"parse": 120, "scapy_diff": 80, "pktgen_script": 60}


def test_every_target_has_seeds():
    assert all(SEEDS.values()), [n for n, s in SEEDS.items() if not s]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_pass(name):
    for path in SEEDS[name]:
        TARGETS[name](path.read_bytes())


def _mutate(raw: bytes, edits: list[tuple[int, int, int]], other: bytes) -> bytes:
    out = bytearray(raw)
    for kind, at, value in edits:
        at = at % (len(out) + 1)
        if kind == 0 and out:
            out[at % len(out)] = value  # overwrite a byte
        elif kind == 1:
            del out[at:]  # cut short
        elif kind == 2:
            out[at:at] = bytes([value]) * (1 + value % 8)  # insert a run
        elif kind == 3:
            out[at:at] = other[: value]  # splice in part of another seed
        elif kind == 4 and out:
            out[at % len(out)] ^= 1 << (value % 8)  # flip one bit
    return bytes(out)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeded_mutations(name):
    seeds = [p.read_bytes() for p in SEEDS[name]]
    edit = st.tuples(st.integers(0, 4), st.integers(0, 4096), st.integers(0, 255))

    @seed(20261206)
    @settings(max_examples=EXAMPLES.get(name, 150), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(seeds), st.lists(edit, max_size=8), st.sampled_from(seeds))
    def run(raw, edits, other):
        TARGETS[name](_mutate(raw, edits, other))

    run()


def test_atheris_short_run_reports_inputs_and_no_crash(tmp_path):
    """The coverage-guided runner on two targets, bounded by input count and time."""
    env = {**os.environ, "PKTFLOW_CACHE_DIR": str(tmp_path / "cache"),
           "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR",
                                             str(ROOT / ".venv" / "cache" / "numba"))}
    proc = subprocess.run([sys.executable, "-m", "fuzz", "--runs", "300", "--seconds", "10",
                           "--seed", "7", "--out", str(tmp_path / "out"), "acl_l3", "pcap"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+): (\d+) inputs, 0 crashes", proc.stdout, re.M))
    assert set(counts) == {"acl_l3", "pcap"}, proc.stdout
    assert all(int(n) >= 300 for n in counts.values()), proc.stdout
