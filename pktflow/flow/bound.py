"""Kernel-bound objects (ACL tables, ...) in user functions: find them, pin one version.

Such an object offers `kernel_state()` (arrays, read once per batch) and a class attribute
`kernel_methods` (Numba functions `f(state, data, meta, b, *args)`). The compiled path calls
those methods with a per-batch state; the interpreted path calls them through the
`PinnedVersion`s `BatchBinder` puts in place, so both see one rules version per batch.
"""

from __future__ import annotations

import dis
import types
from collections.abc import Callable, Iterator
from typing import Any

from pktflow.flow.kinds import python_function
from pktflow.packet.view import Packet


def is_kernel_bound(obj: Any) -> bool:
    """Objects such as ACL tables: per-batch `kernel_state()` plus Numba `kernel_methods`."""
    return (
        not isinstance(obj, type)
        and callable(getattr(obj, "kernel_state", None))
        and isinstance(getattr(type(obj), "kernel_methods", None), dict)
    )


class PinnedVersion:
    """A kernel-bound object seen through one `kernel_state()` for one batch.

    The interpreted path gives the user function this instead of the live object, so a
    live reload lands between batches there too: `obj.method(pkt, ...)` calls the same
    kernel method the compiled path calls, with the state taken when the batch began.
    Other attributes, and methods called without a packet, reach the live object.
    """

    def __init__(self, obj: Any) -> None:
        self._obj = obj
        state = obj.kernel_state()
        for name, method in type(obj).kernel_methods.items():
            setattr(self, name, self._pin(method, state, getattr(obj, name, None)))

    @staticmethod
    def _pin(method: Callable, state: tuple, live: Callable | None) -> Callable:
        def call(pkt: Any, *args: Any) -> Any:
            if isinstance(pkt, Packet):
                return method(state, pkt.pool.data, pkt.pool.meta, pkt.b, *args)
            if live is None:
                raise TypeError(f"{method.__name__} takes a packet first, got {pkt!r}")
            return live(pkt, *args)

        return call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._obj, name)

    def __repr__(self) -> str:
        return f"<pinned version of {self._obj!r}>"


class _GlobalsOverlay(dict):
    """A function's globals with some names replaced: the rest is read from the module
    (at each access, so later module assignments are seen)."""

    def __init__(self, base: dict, replaced: dict) -> None:
        super().__init__(replaced)
        self.base = base

    def __missing__(self, name: str) -> Any:
        return self.base[name]  # KeyError: the interpreter goes on to the builtins


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    """`code` and every function, lambda and comprehension body nested in it."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def kernel_bound_objects(func: Callable) -> list[Any]:
    """The kernel-bound objects (rule tables, ...) a user function names as globals or
    closure variables, for statistics."""
    func = python_function(func)
    if not isinstance(func, types.FunctionType):
        return []
    names = {n for c in _code_objects(func.__code__) for n in c.co_names}
    found = [func.__globals__.get(n) for n in sorted(names)]
    for cell in func.__closure__ or ():
        try:
            found.append(cell.cell_contents)
        except ValueError:
            continue  # an empty cell: the variable is not bound yet
    unique = {id(obj): obj for obj in found if is_kernel_bound(obj)}
    return list(unique.values())


class BatchBinder:
    """Gives the interpreted path's user function one version of each kernel-bound object
    it names (as a global or a closure variable) per batch.

    `function()` returns the function to call for the next batch: the user's own when it
    names none, else a twin whose globals and closure cells hold `PinnedVersion`s.
    """

    def __init__(self, func: Callable) -> None:
        self.func = func
        self.globals: list[str] = []
        self.cells: list[int] = []
        self.reason = ""  # why kernel-bound objects are read per packet, if they are
        if not isinstance(func, types.FunctionType):
            return
        codes = list(_code_objects(func.__code__))
        names = {n for c in codes for n in c.co_names}
        self.globals = [n for n in sorted(names) if is_kernel_bound(func.__globals__.get(n))]
        for i, cell in enumerate(func.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if is_kernel_bound(value):
                self.cells.append(i)
        writes = {ins.opname for c in codes for ins in dis.get_instructions(c)}
        if self.globals and writes & {"STORE_GLOBAL", "DELETE_GLOBAL"}:
            # Its global assignments would land in the batch's twin globals and be lost.
            self.reason = (f"it assigns globals, so {', '.join(self.globals)} "
                           "is read per packet (a reload may land inside a batch)")
            self.globals = []

    @property
    def active(self) -> bool:
        return bool(self.globals or self.cells)

    def function(self) -> Callable:
        """The user function bound to the versions current now."""
        func = self.func
        if not (self.globals or self.cells):
            return func
        glob = func.__globals__
        if self.globals:
            pinned = {}
            for name in self.globals:
                value = glob.get(name)
                if is_kernel_bound(value):
                    pinned[name] = PinnedVersion(value)
            glob = _GlobalsOverlay(glob, pinned)
        closure = func.__closure__
        if self.cells:
            cells = list(closure)
            for i in self.cells:
                value = cells[i].cell_contents
                if is_kernel_bound(value):
                    cells[i] = types.CellType(PinnedVersion(value))
            closure = tuple(cells)
        twin = types.FunctionType(func.__code__, glob, func.__name__, func.__defaults__,
                                  closure)
        twin.__kwdefaults__ = func.__kwdefaults__
        return twin
