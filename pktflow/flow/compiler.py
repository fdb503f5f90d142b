"""User functions to batch kernels: the compiler between user code and the flow engine.

`compile_node(func, kind)` turns a plain Python function written against the packet object
API (`pkt.ipv4.src`, per packet, or `pkts[i].ipv4.src`, per vector) into a `NodeKernel`
whose `run(pool, idx, n, out, ctx)` works over a whole batch and writes one int32 verdict per
packet. The compiled path rewrites the function's syntax tree into accessor calls and
compiles it with Numba (see `rewrite.py` and `jit.py`); when that is impossible the node runs
interpreted over `Packet` views, with the same semantics. Which path each node took, and
why, is logged once on the "pktflow.flow" logger.
"""

from __future__ import annotations

import copy
import inspect
import logging
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from pktflow.flow.bound import BatchBinder
from pktflow.flow.jit import CompiledKernel, build_compiled_kernel
from pktflow.flow.kinds import (
    VERDICT_ERROR,
    VERDICT_MAX,
    VERDICT_MIN,
    CompileError,
    NodeKind,
    python_function,
)
from pktflow.packet.pool import Pool
from pktflow.packet.view import Packet

log = logging.getLogger("pktflow.flow")

MODES = ("auto", "compiled", "interpreted")


def check_signature(func: Callable, kind: NodeKind) -> bool:
    """Check that `func` fits `kind`'s form, with or without ctx; True if it takes ctx.

    Raises TypeError naming the function, the expected and the actual parameters.
    """
    if not callable(func):
        raise TypeError(f"{kind.value} {func!r} is not a function")
    name = getattr(func, "__name__", type(func).__name__)
    try:
        sig = inspect.signature(python_function(func))
    except (TypeError, ValueError):
        return True  # builtins without a signature: trust the full form
    full = len(kind.params)
    for count, takes_ctx in ((full, True), (full - 1, False)):
        try:
            sig.bind(*range(count))
        except TypeError:
            continue
        return takes_ctx
    got = ", ".join(str(p) for p in sig.parameters.values())
    raise TypeError(f"{kind.value} {name} takes ({', '.join(kind.params)}); got ({got})")


def copy_context(ctx: Any) -> Any:
    """A private copy of a user context for one clone of a node.

    A context class's own copy() decides (NFF-Go's Copy()); NumPy arrays copy their data;
    anything else, the built-in containers included (their copy() is shallow), is deep-copied.
    """
    if ctx is None:
        return None
    if isinstance(ctx, np.ndarray):
        return ctx.copy()
    copier = getattr(ctx, "copy", None)
    if callable(copier) and not isinstance(ctx, dict | list | set | bytearray):
        return copier()
    return copy.deepcopy(ctx)


class PacketVector:
    """The interpreted face of a vector: `len(pkts)` and `pkts[i]` (a Packet view)."""

    __slots__ = ("pool", "idx", "n")

    def __init__(self, pool: Pool, idx: np.ndarray, n: int) -> None:
        self.pool = pool
        self.idx = idx
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Packet:
        i = int(i)
        if not -self.n <= i < self.n:
            raise IndexError(f"packet {i} of a vector of {self.n}")
        return Packet(self.pool, self.idx[i % self.n])

    def __iter__(self):
        for k in range(self.n):
            yield Packet(self.pool, self.idx[k])


class NodeKernel:
    """One user function ready to run over batches; built by `compile_node`.

    `run(pool, idx, n, out, ctx)` writes a verdict per packet of `idx[:n]` into `out[:n]`
    and returns how many packets got VERDICT_ERROR. `path` says "compiled" or
    "interpreted" and `reason` why a node runs interpreted.
    """

    def __init__(self, func: Callable, kind: NodeKind, name: str, takes_ctx: bool) -> None:
        self.func = func
        self.kind = kind
        self.name = name
        self.takes_ctx = takes_ctx
        self.path = "interpreted"
        self.reason = ""
        self._last_exc: BaseException | None = None
        self._compiled: CompiledKernel | None = None  # when path == "compiled"
        self._binder = BatchBinder(python_function(func))
        self.run: Callable[[Pool, np.ndarray, int, np.ndarray, Any], int] = self._run_python

    def last_error(self) -> str:
        """Traceback text of the last exception the function raised (for the engine's log)."""
        if self.path == "compiled":
            return (
                f"{self.kind.value} {self.name} runs compiled, which keeps no traceback; "
                'run it with mode="interpreted" to see where it raises'
            )
        exc = self._last_exc
        if exc is None:
            return ""
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def _use_compiled(self, compiled: CompiledKernel) -> None:
        self._compiled = compiled
        self.path = "compiled"
        self.reason = ""
        self.run = compiled.run

    def fall_back(self, reason: str, exc: BaseException | None = None) -> None:
        """Switch to the interpreted path: the compiled kernel met a context type Numba
        cannot take, or raised `exc` out of its own error handling."""
        if exc is not None:
            self._last_exc = exc
        self.path = "interpreted"
        self.reason = reason
        self._compiled = None
        self.run = self._run_python
        log.warning("node %s: %s runs interpreted: %s", self.name, self.kind.value, reason)
        self._note_binding()

    def _note_binding(self) -> None:
        """Say once when the interpreted path cannot pin kernel-bound objects per batch."""
        if self._binder.reason:
            log.warning("node %s: %s", self.name, self._binder.reason)

    def _batch_function(self) -> Callable:
        """The function to call for one batch: kernel-bound objects pinned to one version
        (a Numba dispatcher is called as it is: it cannot hold such objects)."""
        binder = self._binder
        if binder.active and binder.func is self.func:
            return binder.function()
        return self.func

    # The interpreted path: Python per packet, the same semantics as the compiled kernels.
    def _run_python(self, pool: Pool, idx: np.ndarray, n: int, out: np.ndarray, ctx: Any) -> int:
        """Run the function over `idx[:n]` through Packet views; see the class docstring."""
        if self.kind.is_vector:
            return self._run_vector(pool, idx, n, out, ctx)
        func, kind = self._batch_function(), self.kind
        args = (ctx,) if self.takes_ctx else ()
        errors = 0
        for k in range(n):
            pkt = Packet(pool, idx[k])
            try:
                result = func(pkt, *args)
                if kind is NodeKind.HANDLER_DROP or kind is NodeKind.SEPARATOR:
                    out[k] = 1 if result else 0
                elif kind is NodeKind.SPLITTER:
                    out[k] = min(max(int(result), VERDICT_MIN), VERDICT_MAX)
                else:
                    out[k] = 0
            except Exception as exc:  # noqa: BLE001  (any user error drops only this packet)
                self._last_exc = exc
                out[k] = VERDICT_ERROR
                errors += 1
        return errors

    def _run_vector(self, pool: Pool, idx: np.ndarray, n: int, out: np.ndarray, ctx: Any) -> int:
        kind = self.kind
        pkts = PacketVector(pool, idx, n)
        args: tuple = (pkts,)
        answers = None
        if kind is not NodeKind.VECTOR_GENERATOR:
            args += (np.ones(n, dtype=np.bool_),)
        if kind is NodeKind.VECTOR_SEPARATOR:
            answers = np.zeros(n, dtype=np.bool_)
            args += (answers,)
        elif kind is NodeKind.VECTOR_SPLITTER:
            answers = np.zeros(n, dtype=np.int64)
            args += (answers,)
        if self.takes_ctx:
            args += (ctx,)
        try:
            self._batch_function()(*args)
        except Exception as exc:  # noqa: BLE001  (a user error drops this vector only)
            self._last_exc = exc
            out[:n] = VERDICT_ERROR
            return n
        if answers is None:
            out[:n] = 0
        elif kind is NodeKind.VECTOR_SEPARATOR:
            out[:n] = answers
        else:
            out[:n] = np.clip(answers, VERDICT_MIN, VERDICT_MAX)
        return 0


def _node_name(func: Callable, name: str | None) -> str:
    if name:
        return name
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))


def compile_node(
    func: Callable,
    kind: NodeKind,
    ctx: Any = None,
    mode: str = "auto",
    name: str | None = None,
) -> NodeKernel:
    """Make a batch kernel of `func` for a node of `kind`, compiled when Numba can.

    `ctx` is a sample context (the one the node will run with) so compilation happens now,
    not on the first batch. mode "compiled" raises CompileError when compiling fails;
    "interpreted" skips compiling. Logs once which path the node took and why.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if not isinstance(kind, NodeKind):
        raise TypeError(f"kind must be a NodeKind, got {kind!r}")
    takes_ctx = check_signature(func, kind)
    node_name = _node_name(func, name)
    kernel = NodeKernel(func, kind, node_name, takes_ctx)
    if mode == "interpreted":
        kernel.reason = 'mode="interpreted" was asked for'
        log.info("node %s: %s runs interpreted (%s)", node_name, kind.value, kernel.reason)
        kernel._note_binding()
        return kernel
    try:
        compiled = build_compiled_kernel(kernel, ctx)
    except CompileError as exc:
        if mode == "compiled":
            raise CompileError(f"{kind.value} {node_name} cannot be compiled: {exc}") from None
        kernel.reason = str(exc)
        log.warning("node %s: %s runs interpreted: %s", node_name, kind.value, exc)
        kernel._note_binding()
        return kernel
    kernel._use_compiled(compiled)
    log.info("node %s: %s runs compiled", node_name, kind.value)
    return kernel
