"""One coverage-guided fuzzing run of one target, in a process of its own (libFuzzer runs
once per process): `python -m fuzz.run TARGET OUTDIR [libFuzzer flags] CORPUS_DIRS...`.

pktflow's Python code is instrumented after import (Numba's compiled kernels are not
Python, so their plain-Python twins in fuzz.targets carry the coverage). Each distinct
crash (exception type and raising line) is written to OUTDIR once and fuzzing goes on;
the parent reads the counts from OUTDIR and libFuzzer's "Done N runs" line.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import traceback
import types
from pathlib import Path

import atheris


def instrument_pktflow(extra: list) -> int:
    """Add coverage instrumentation to every plain-Python function of pktflow (and to the
    `extra` functions); returns how many. Numba dispatchers are not functions: untouched."""
    done: set[int] = set()

    def add(fn: object) -> None:
        if isinstance(fn, types.FunctionType) and id(fn) not in done:
            done.add(id(fn))
            atheris.instrument_func(fn)

    for name, module in list(sys.modules.items()):
        if not (name == "pktflow" or name.startswith("pktflow.")) or module is None:
            continue
        for obj in list(vars(module).values()):
            if getattr(obj, "__module__", None) != name:
                continue
            if inspect.isclass(obj):
                for attr in vars(obj).values():
                    if isinstance(attr, staticmethod | classmethod):
                        attr = attr.__func__
                    if isinstance(attr, property):
                        for part in (attr.fget, attr.fset):
                            add(part)
                    add(attr)
            else:
                add(obj)
    for fn in extra:
        add(fn)
    return len(done)


def main() -> None:
    target_name, outdir = sys.argv[1], Path(sys.argv[2])
    from fuzz import targets

    target = targets.TARGETS[target_name]
    outdir.mkdir(parents=True, exist_ok=True)
    # Warm up before instrumenting: every Numba signature compiles (or loads) now, from
    # the original bytecode.
    for seed in sorted(Path(__file__).parent.joinpath("corpus", target_name).glob("*")):
        try:
            target(seed.read_bytes())
        except Exception:  # noqa: BLE001  (reported when the fuzzer meets it)
            pass
    instrument_pktflow(list(targets.INTERP.values()))
    seen: set[str] = set()

    def one_input(data: bytes) -> None:
        try:
            target(data)
        except Exception as e:  # noqa: BLE001  (any escape is the finding)
            frame = traceback.extract_tb(e.__traceback__)[-1]
            key = f"{type(e).__name__} {Path(frame.filename).name}:{frame.lineno}"
            if key in seen:
                return
            seen.add(key)
            digest = hashlib.sha1(key.encode()).hexdigest()[:12]
            record = {"target": target_name, "key": key, "message": str(e)[:500],
                      "input_hex": data.hex(), "traceback": traceback.format_exc()}
            (outdir / f"crash-{target_name}-{digest}.json").write_text(json.dumps(record,
                                                                                  indent=1))
            print(f"CRASH {target_name}: {key}: {str(e)[:200]}", file=sys.stderr, flush=True)

    atheris.Setup([sys.argv[0], *sys.argv[3:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
