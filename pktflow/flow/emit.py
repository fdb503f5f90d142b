"""The generated module of one compiled node: its imports, the checked field helpers
(which test what the object API tests: header present, field inside the frame, value in
range), the arrays and kernel-bound states passed to it each batch.
"""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from pktflow.flow.kinds import CompileError
from pktflow.flow.source import importable
from pktflow.packet import meta as M
from pktflow.packet.accessors import acc
from pktflow.packet.fields import LAYERS, Field, Layer

P = "_pf_"  # prefix of every name the rewrite introduces; user code may not use it
DATA, META, IDX, N, OUT = P + "data", P + "meta", P + "idx", P + "n", P + "out"
NO_TRACEBACK = 'raised in compiled code; run the node with mode="interpreted" to see where'
INLINE = '@njit(cache=True, nogil=True, inline="always")\n'

_file_digests: dict[str, str] = {}


def _file_digest(path: str) -> str:
    digest = _file_digests.get(path)
    if digest is None:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        _file_digests[path] = digest
    return digest


class GeneratedModule:
    """Everything one generated module needs: helpers, imports, kernel arguments."""

    def __init__(self, raise_by_call: bool) -> None:
        self.raise_by_call = raise_by_call
        self.imports: dict[str, str] = {}  # local name -> import statement
        self.helpers: dict[str, str] = {}  # generated name -> source
        self.functions: dict[tuple, str] = {}  # (id(func), packet positions) -> name
        self.function_sources: list[str] = []
        self.env: dict[str, np.ndarray] = {}  # argument name -> array passed each batch
        self.env_ids: dict[int, str] = {}
        self.bound: list[Any] = []  # kernel-bound objects, state argument i
        self.dep_files: set[str] = set()

    # -- imports and dependencies
    def import_object(self, obj: Any, local: str) -> str:
        where = importable(obj)
        if where is None:
            raise CompileError(f"{obj!r} cannot be imported by name into compiled code")
        mod, name = where
        self.imports[local] = f"from {mod} import {name} as {local}"
        self._note_dep(sys.modules[mod])
        return local

    def import_module(self, mod: types.ModuleType, local: str) -> str:
        self.imports[local] = f"import {mod.__name__} as {local}"
        self._note_dep(mod)
        return local

    def _note_dep(self, mod: types.ModuleType) -> None:
        path = getattr(mod, "__file__", None)
        if path and path.endswith(".py"):
            self.dep_files.add(path)

    # -- field helpers that check what the object API checks. One combined test and one
    # raise per helper: separate tests each with its own raise cost Numba 5x the time.
    @staticmethod
    def _missing(layer: Layer) -> str:
        if layer.flag == 0:
            return f"(meta[b, {M.FLAGS}] & {M.F_BAD_L2}) != 0 or meta[b, {M.LEN}] < {layer.min_len}"
        return f"(meta[b, {M.FLAGS}] & {layer.flag}) == 0"

    def fail(self, exc: str) -> str:
        """A statement raising `exc` (compiled code keeps no message or traceback).

        Inside a try block Numba lets an inlined `raise` escape the block, so user code with
        try blocks raises through a call; elsewhere an inline raise keeps the checks free,
        where the call costs 4x the accessor it guards.
        """
        if not self.raise_by_call:
            return f"raise {exc}('{NO_TRACEBACK}')"
        name = f"{P}fail_{exc}"
        if name not in self.helpers:
            self.helpers[name] = (
                f"@njit(cache=True, nogil=True)\ndef {name}():\n"
                f"    raise {exc}('{NO_TRACEBACK}')\n"
            )
        return f"{name}()"

    def need(self, layer: Layer) -> str:
        """`need_L(meta, b)`: raise unless the packet has layer L (as `pkt.L` does)."""
        name = f"{P}need_{layer.name}"
        if name not in self.helpers:
            self.helpers[name] = (
                f"{INLINE}def {name}(meta, b):\n"
                f"    if {self._missing(layer)}:\n"
                f"        {self.fail('LookupError')}\n"
            )
        return name

    def has(self, layer: Layer) -> str:
        name = f"{P}has_{layer.name}"
        if name not in self.helpers:
            self.helpers[name] = (
                f"{INLINE}def {name}(meta, b):\n    return not ({self._missing(layer)})\n"
            )
        return name

    def _span_check(self, layer: Layer, f: Field) -> str:
        return (
            f"    if {self._missing(layer)} or acc.{layer.name}_offset(meta, b) + "
            f"{f.offset + f.size} > meta[b, {M.START}] + meta[b, {M.LEN}]:\n"
            f"        {self.fail('LookupError')}\n"
        )

    def getter(self, layer: Layer, f: Field) -> str:
        name = f"{P}get_{layer.name}_{f.name}"
        if name not in self.helpers:
            value = f"acc.{layer.name}_{f.name}_get(data, meta, b)"
            if f.kind == "ipv6":
                value += ".copy()"  # a value, not a view: `a, b = b, a` must swap
            self.helpers[name] = (
                f"{INLINE}def {name}(data, meta, b):\n"
                f"{self._span_check(layer, f)}    return {value}\n"
            )
        return name

    def setter(self, layer: Layer, f: Field) -> str:
        name = f"{P}set_{layer.name}_{f.name}"
        if name not in self.helpers:
            if f.kind == "ipv6":
                check = (
                    "    if len(value) != 16:\n"
                    f"        {self.fail('ValueError')}\n"
                )
            else:
                check = (
                    f"    if value < 0 or value > {f.max_value}:\n"
                    f"        {self.fail('ValueError')}\n"
                )
            self.helpers[name] = (
                f"{INLINE}def {name}(data, meta, b, value):\n"
                f"{self._span_check(layer, f)}{check}"
                f"    acc.{layer.name}_{f.name}_set(data, meta, b, value)\n"
            )
        return name

    def offset(self, layer: Layer) -> str:
        name = f"{P}offset_{layer.name}"
        if name not in self.helpers:
            self.helpers[name] = (
                f"@njit(cache=True, nogil=True)\ndef {name}(meta, b):\n"
                f"    {self.need(layer)}(meta, b)\n"
                f"    return acc.{layer.name}_offset(meta, b) - meta[b, {M.START}]\n"
            )
        return name

    def eq16(self) -> str:
        name = f"{P}eq16"
        if name not in self.helpers:
            self.helpers[name] = (
                f"@njit(cache=True, nogil=True)\ndef {name}(x, y):\n"
                "    for i in range(16):\n"
                "        if x[i] != y[i]:\n"
                "            return False\n"
                "    return True\n"
            )
        return name

    def op(self, key: str | tuple[str, str], fn: Any, nargs: int) -> str:
        """A call of an ops registry function; a layer method first checks its header."""
        label = key if isinstance(key, str) else "_".join(key)
        target = self.import_object(fn, f"{P}opfn_{label}")
        name = f"{P}op_{label}_{nargs}"
        if name not in self.helpers:
            args = "".join(f", a{i}" for i in range(nargs))
            check = ""
            if isinstance(key, tuple):
                check = f"    {self.need(LAYERS[key[0]])}(meta, b)\n"
            self.helpers[name] = (
                f"@njit(cache=True, nogil=True)\ndef {name}(data, meta, b{args}):\n"
                f"{check}    return {target}(data, meta, b{args})\n"
            )
        return name

    def bound_method(self, obj: Any, method: str) -> tuple[str, str]:
        """(function name, state argument name) for `obj.method(pkt, ...)`."""
        matches = [i for i, known in enumerate(self.bound) if known is obj]
        if matches:
            i = matches[0]
        else:
            self.bound.append(obj)
            i = len(self.bound) - 1
        fn = type(obj).kernel_methods[method]
        local = f"{P}km_{type(obj).__name__}_{method}"
        try:
            self.import_object(fn, local)
        except CompileError:
            raise CompileError(
                f"{type(obj).__name__}.kernel_methods[{method!r}] is not a module-level "
                "Numba function"
            ) from None
        return local, f"{P}st{i}"

    def env_array(self, arr: np.ndarray, hint: str) -> str:
        name = self.env_ids.get(id(arr))
        if name is None:
            name = f"{P}env_{hint}"
            self.env[name] = arr
            self.env_ids[id(arr)] = name
        return name


def dependency_note(module: GeneratedModule) -> str:
    """Digests of the source files the kernel calls into (Numba's cache does not track them)."""
    files = set(module.dep_files)
    packet_dir = Path(M.__file__).parent
    files.update(str(p) for p in packet_dir.glob("*.py"))
    files.add(str(Path(acc.__file__)))
    return "\n".join(f"# dep {Path(f).name} {_file_digest(f)}" for f in sorted(files))

