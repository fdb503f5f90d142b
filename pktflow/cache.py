"""Where pktflow keeps generated code and Numba's compiled-function cache.

Numba's cache checks only the source file of the cached function itself, not the
functions it calls. Kernels all over pktflow call the accessors generated from the
protocol tables, so Numba's cache lives in a folder named after a fingerprint of those
tables: editing a protocol table starts a fresh cache instead of loading kernels that
refer to accessors which no longer exist.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# The files whose text decides the generated accessors (see packet/accessors.py).
_ACCESSOR_INPUTS = ("meta.py", "fields.py", "protocols.py", "accessors.py")


def cache_root() -> Path:
    """$PKTFLOW_CACHE_DIR, else $XDG_CACHE_HOME/pktflow, else ~/.cache/pktflow."""
    base = os.environ.get("PKTFLOW_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pktflow"
    )
    return Path(base)


def accessor_fingerprint() -> str:
    """A short hash of the files that the generated accessors derive from."""
    digest = hashlib.sha256()
    packet = Path(__file__).parent / "packet"
    for name in _ACCESSOR_INPUTS:
        digest.update((packet / name).read_bytes())
    return digest.hexdigest()[:12]


def configure_numba_cache() -> Path:
    """Point Numba's cache at <$NUMBA_CACHE_DIR or cache root/numba>/<fingerprint>.

    Must run before any pktflow module defines a cached Numba function, which is why
    `pktflow/__init__.py` calls it first.
    """
    import numba

    base = os.environ.get("NUMBA_CACHE_DIR") or str(cache_root() / "numba")
    path = Path(base) / accessor_fingerprint()
    numba.config.CACHE_DIR = str(path)
    return path
