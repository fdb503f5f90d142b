"""Run benchmarks: `python -m bench` runs all, `python -m bench parse acl` the named ones."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    # Benchmarks are the package's public modules (not this runner, not helpers).
    names = argv or sorted(m.name for m in pkgutil.iter_modules([str(here)])
                           if not m.name.startswith("_"))
    failed = []
    for name in names:
        print(f"== bench/{name} ({time.strftime('%Y-%m-%d %H:%M:%S')})", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as e:  # one broken benchmark must not hide the others' figures
            print(f"bench/{name} failed: {type(e).__name__}: {e}", flush=True)
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
