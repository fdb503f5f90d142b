"""NF programs as files: one way to import a file as a module, and scripts that find their
compiled kernels in Numba's cache on their second run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numba
import pytest
from scapy.utils import rdpcap

from pktflow.flow.cli import script_module_name
from pktflow.packet.codegen import cache_dir, import_file
from tests.flow.test_pcap_stats_cli import write_input

ROOT = Path(__file__).resolve().parents[2]

# A context class defined in the script: Numba's cache pickles the argument types of a
# kernel, and classes of `__main__` by value, so run as `__main__` the kernel never matched
# its cache entry again.
PROGRAM = '''
from typing import NamedTuple

import numpy as np

from pktflow import flow


class Marks(NamedTuple):
    ttl: np.ndarray


def mark_{tag}(pkt, ctx):
    pkt.ipv4.ttl = ctx.ttl[0]


def build(nf):
    f = nf.receiver(0)
    nf.handler(f, mark_{tag}, ctx=Marks(np.array([{ttl}], dtype=np.int64)))
    nf.sender(f, 1)


if __name__ == "__main__":
    flow.main(build)
'''


def test_import_file_imports_once_under_its_name(tmp_path):
    path = tmp_path / "plugin.py"
    path.write_text("LOADS = []\nLOADS.append(1)\n")
    name = f"pktflow_test_plugin_{os.getpid()}"
    try:
        module = import_file(name, path)
        assert sys.modules[name] is module and module.LOADS == [1]
        assert import_file(name, path) is module and module.LOADS == [1]  # not run again
        other = tmp_path / "other.py"
        other.write_text("")
        with pytest.raises(ImportError, match="already imported from .*plugin.py, not "
                                              ".*other.py"):
            import_file(name, other)
    finally:
        sys.modules.pop(name, None)


def test_import_file_leaves_nothing_behind_on_failure(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('half done')\n")
    name = f"pktflow_test_broken_{os.getpid()}"
    with pytest.raises(RuntimeError, match="half done"):
        import_file(name, path)
    assert name not in sys.modules
    path.write_text("FIXED = True\n")  # the next try runs the file again
    try:
        assert import_file(name, path).FIXED
    finally:
        sys.modules.pop(name, None)
    with pytest.raises(ImportError, match="not a Python file"):
        import_file(name, tmp_path / "rules.conf")
    with pytest.raises(FileNotFoundError):
        import_file(name, tmp_path / "missing.py")
    assert name not in sys.modules


def test_script_module_name_is_stable_and_per_file(tmp_path):
    a = script_module_name(tmp_path / "my-nf.py")
    assert a == script_module_name(tmp_path / "." / "my-nf.py")
    assert a.startswith("pktflow_nf_my_nf_") and a.isidentifier()
    assert a != script_module_name(tmp_path / "sub" / "my-nf.py")


def _kernel_cache_files(function: str) -> dict[str, float]:
    """Numba cache files (name -> modification time) of the generated kernel of the user
    function named `function` (in whatever module)."""
    generated = [p.stem for p in cache_dir().glob("pktflow_gen_node_*.py")
                 if f".{function} (handler)" in p.read_text().splitlines()[0]]
    assert len(generated) == 1, generated
    numba_dir = Path(numba.config.CACHE_DIR)  # the same folder the child processes use
    return {str(p): p.stat().st_mtime for p in numba_dir.rglob(f"{generated[0]}.*")}


def test_script_run_twice_finds_its_kernels_in_the_cache(tmp_path):
    write_input(tmp_path / "in.pcap", 30)
    program = tmp_path / "marks.py"
    # A function name new to this test run: the first run compiles its kernel.
    tag = f"{os.getpid()}_{time.time_ns()}"
    ttl = 10 + os.getpid() % 200
    program.write_text(PROGRAM.replace("{tag}", tag).replace("{ttl}", str(ttl)))
    argv = [sys.executable, str(program), "--port", f"0=pcap:{tmp_path}/in.pcap",
            "--port", f"1=pcap:,{tmp_path}/out.pcap", "--duration", "0.3", "--cores", "1"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runs = []
    for _ in range(2):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"handler mark_{tag} [compiled]: in 30 out 30" in done.stdout
        assert [p[22] for p in map(bytes, rdpcap(str(tmp_path / "out.pcap")))] == [ttl] * 30
        runs.append(_kernel_cache_files(f"mark_{tag}"))
    assert runs[0], "the first run left no cache files"
    # A cache hit reads the index and data; a miss adds a data file and rewrites the index.
    assert runs[1] == runs[0]
