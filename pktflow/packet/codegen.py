"""Generated modules: write Python source to the cache folder and import it.

Compiled accessors and compiled user functions are generated as source text, so Numba's
on-disk cache (which needs a real file) works for them. Each file is named by the hash of
its text: a changed declaration gives a new file and never a stale cache entry.
`import_file` is pktflow's one way to import a file as a module by a name of its choice
(generated modules, NF programs, examples).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from pktflow.cache import cache_root


def cache_dir() -> Path:
    """Where generated modules live ($PKTFLOW_CACHE_DIR/gen to move it)."""
    path = cache_root() / "gen"
    path.mkdir(parents=True, exist_ok=True)
    return path


def import_file(name: str, path: str | os.PathLike) -> ModuleType:
    """Import the Python file `path` as module `name` (once: later calls return the module
    in sys.modules), so objects defined in it pickle and cache under that name."""
    path = Path(path)
    module = sys.modules.get(name)
    if module is not None:
        loaded = getattr(module, "__file__", None)
        if loaded is not None and Path(loaded).resolve() != path.resolve():
            raise ImportError(f"module {name} is already imported from {loaded}, not {path}")
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    # In sys.modules while it runs: its own dataclasses, pickling and Numba look it up.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_generated_module(prefix: str, source: str) -> ModuleType:
    """Import `source` as a module from a file named `<prefix>_<hash>.py` in the cache."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = f"pktflow_gen_{prefix}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    path = cache_dir() / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        # Atomic replace: another process may be importing the same file right now.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    return import_file(name, path)
