"""Rewrite a user function's syntax tree into a Numba batch kernel.

The user writes `pkt.ipv4.src`, `pkt.eth.dst = "00:11:22:33:44:55"`, `pkt.ipv4.ttl -= 1`,
`pkt.update_checksums()` or `table.lookup(pkt)`; the rewrite turns each into a call of a
compiled accessor (`accessors.py`), an ops registry function (`ops.py`) or a kernel-bound
object's Numba method, all over `(data, meta, b)`. Field accesses are checked the way the
object API checks them (header present, field inside the frame, value in range), so a
compiled node raises exactly where the interpreted one does and both give the same verdicts.
The rewritten function and a batch loop around it are emitted as a generated module
(`codegen.load_generated_module`) and compiled with `njit(nogil=True, cache=True)`.

Anything the rewrite cannot express raises `CompileError` with the reason and source line;
`compile_node` then runs the node interpreted (or re-raises under mode="compiled").
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pktflow.flow.compiler import (
    VERDICT_ERROR,
    VERDICT_MAX,
    VERDICT_MIN,
    CompileError,
    NodeKind,
    _python_function,
    is_kernel_bound,
)
from pktflow.packet import meta as M
from pktflow.packet.accessors import acc
from pktflow.packet.addr import AddressError, parse_ipv4, parse_ipv6, parse_mac
from pktflow.packet.codegen import load_generated_module
from pktflow.packet.fields import LAYERS, Field, Layer

P = "_pf_"  # prefix of every name the rewrite introduces; user code may not use it
DATA, META, IDX, N, OUT = P + "data", P + "meta", P + "idx", P + "n", P + "out"
_NO_TRACEBACK = 'raised in compiled code; run the node with mode="interpreted" to see where'
_INLINE = '@njit(cache=True, nogil=True, inline="always")\n'
_ADDRESS_PARSERS = {"mac": parse_mac, "ipv4": parse_ipv4, "ipv6": parse_ipv6}
# Packet attributes backed by a metadata column (read only, as in the object API).
_META_ATTRS = {"length": M.LEN, "port": M.PORT, "start": M.START, "flags": M.FLAGS}


def _importable(obj: Any) -> tuple[str, str] | None:
    """(module, name) under which `obj` can be imported, or None."""
    mod_name = getattr(obj, "__module__", None)
    name = getattr(obj, "__name__", None)
    if not mod_name or not name:
        return None
    mod = sys.modules.get(mod_name)
    if mod is None or getattr(mod, name, None) is not obj:
        return None
    return mod_name, name


def _is_dispatcher(obj: Any) -> bool:
    return hasattr(obj, "py_func") and hasattr(obj, "signatures")


_file_digests: dict[str, str] = {}


def _file_digest(path: str) -> str:
    digest = _file_digests.get(path)
    if digest is None:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        _file_digests[path] = digest
    return digest


def _constant_node(value: Any) -> ast.expr | None:
    """A literal for a constant Python value (ints, floats, text, tuples of them), else None."""
    if value is None or isinstance(value, bool | str):
        return ast.Constant(value)
    if isinstance(value, int):
        return ast.Constant(int(value))
    if isinstance(value, float):
        return ast.Constant(float(value))
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        # Keep the NumPy type: it decides overflow and promotion in the user's arithmetic.
        return ast.Call(
            ast.Attribute(ast.Name("np", ast.Load()), value.dtype.name, ast.Load()),
            [ast.Constant(value.item())], [],
        )
    if isinstance(value, tuple):
        items = [_constant_node(v) for v in value]
        if all(i is not None for i in items):
            return ast.Tuple(items, ast.Load())
    return None


def _local_names(fdef: ast.FunctionDef) -> set[str]:
    """Names bound inside the function (parameters, assignments, loop targets, ...)."""
    names = {a.arg for a in fdef.args.args + fdef.args.kwonlyargs}
    for node in ast.walk(fdef):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.Lambda) and node is not fdef:
            if isinstance(node, ast.FunctionDef):
                names.add(node.name)
            names.update(a.arg for a in node.args.args)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _parse_function(func: Callable) -> tuple[ast.FunctionDef, str, int]:
    """The function's definition node, its file and its first line, from its source."""
    try:
        source = inspect.getsource(func)
        filename = inspect.getsourcefile(func) or "<unknown>"
    except (OSError, TypeError) as exc:
        raise CompileError(f"its source is not available ({exc})") from None
    first = func.__code__.co_firstlineno
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        raise CompileError("its source cannot be parsed on its own (a lambda inside an "
                           "expression?); write it as a def") from None
    name = func.__name__
    if name == "<lambda>":
        lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        if len(lambdas) != 1:
            raise CompileError("several lambdas share its source line; write it as a def")
        lam = lambdas[0]
        fdef = ast.FunctionDef(
            name="_lambda", args=lam.args, body=[ast.Return(lam.body)], decorator_list=[],
            returns=None, type_params=[], lineno=lam.lineno, col_offset=0,
        )
        return ast.fix_missing_locations(fdef), filename, first
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node, filename, first
    raise CompileError(f"no definition of {name} found in its source")


class _Module:
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
        where = _importable(obj)
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
            return f"raise {exc}('{_NO_TRACEBACK}')"
        name = f"{P}fail_{exc}"
        if name not in self.helpers:
            self.helpers[name] = (
                f"@njit(cache=True, nogil=True)\ndef {name}():\n"
                f"    raise {exc}('{_NO_TRACEBACK}')\n"
            )
        return f"{name}()"

    def need(self, layer: Layer) -> str:
        """`need_L(meta, b)`: raise unless the packet has layer L (as `pkt.L` does)."""
        name = f"{P}need_{layer.name}"
        if name not in self.helpers:
            self.helpers[name] = (
                f"{_INLINE}def {name}(meta, b):\n"
                f"    if {self._missing(layer)}:\n"
                f"        {self.fail('LookupError')}\n"
            )
        return name

    def has(self, layer: Layer) -> str:
        name = f"{P}has_{layer.name}"
        if name not in self.helpers:
            self.helpers[name] = (
                f"{_INLINE}def {name}(meta, b):\n    return not ({self._missing(layer)})\n"
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
                f"{_INLINE}def {name}(data, meta, b):\n"
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
                f"{_INLINE}def {name}(data, meta, b, value):\n"
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


class _Rewriter(ast.NodeTransformer):
    """Rewrites one function: packet attribute syntax -> accessor and ops calls."""

    def __init__(
        self,
        module: _Module,
        func: Callable,
        fdef: ast.FunctionDef,
        filename: str,
        first_line: int,
        packets: set[str],
        vector: str | None,
        is_helper: bool,
    ) -> None:
        self.m = module
        self.func = func
        self.fdef = fdef
        self.where = (filename, first_line - 1)
        self.vector = vector  # name of the packet vector parameter, if any
        self.is_helper = is_helper
        self.locals = _local_names(fdef)
        self.packets = set(packets)  # names whose buffer index is in variable bvar(name)
        self.layers: dict[str, str] = {}  # layer alias name -> layer name
        self._temp = 0
        self._closure = self._closure_values()
        for node in ast.walk(fdef):
            if isinstance(node, ast.Name) and node.id.startswith(P):
                raise self.error(node, f"names starting with {P} are reserved for the compiler")
        self._find_aliases()

    # -- helpers
    def error(self, node: ast.AST, message: str) -> CompileError:
        line = getattr(node, "lineno", self.fdef.lineno) + self.where[1]
        return CompileError(f"{message} ({Path(self.where[0]).name}:{line})")

    def bvar(self, name: str) -> str:
        return f"{P}b_{name}"

    def temp(self) -> str:
        self._temp += 1
        return f"{P}t{self._temp}"

    def _closure_values(self) -> dict[str, Any]:
        values = {}
        code = self.func.__code__
        for name, cell in zip(code.co_freevars, self.func.__closure__ or (), strict=True):
            try:
                values[name] = cell.cell_contents
            except ValueError:
                pass
        return values

    def resolve(self, name: str) -> tuple[bool, Any]:
        if name in self._closure:
            return True, self._closure[name]
        if name in self.func.__globals__:
            return True, self.func.__globals__[name]
        if hasattr(builtins, name):
            return True, getattr(builtins, name)
        return False, None

    def _is_free(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id not in self.locals

    def bound_object(self, node: ast.AST) -> Any:
        if self._is_free(node):
            found, value = self.resolve(node.id)
            if found and is_kernel_bound(value):
                return value
        return None

    # -- what an expression is
    def packet_b(self, node: ast.AST) -> ast.expr | None:
        """The buffer-index expression of a packet expression, else None."""
        if isinstance(node, ast.Name) and node.id in self.packets:
            return ast.Name(self.bvar(node.id), ast.Load())
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == self.vector
        ):
            if isinstance(node.slice, ast.Slice):
                raise self.error(node, "slices of the packet vector are not supported")
            return _as_int64(
                ast.Subscript(ast.Name(IDX, ast.Load()), self.visit(node.slice), ast.Load()))
        return None

    def layer_ref(self, node: ast.AST) -> tuple[Layer, ast.expr] | None:
        """(layer, buffer expression) for `pkt.L` or a layer alias, else None."""
        if isinstance(node, ast.Name) and node.id in self.layers:
            return LAYERS[self.layers[node.id]], ast.Name(self.bvar(node.id), ast.Load())
        if isinstance(node, ast.Attribute) and node.attr in LAYERS:
            b = self.packet_b(node.value)
            if b is not None:
                return LAYERS[node.attr], b
        return None

    def field_ref(self, node: ast.AST) -> tuple[Layer, Field, ast.expr] | None:
        if not isinstance(node, ast.Attribute):
            return None
        ref = self.layer_ref(node.value)
        if ref is None:
            return None
        layer, b = ref
        if node.attr not in {f.name for f in layer.fields}:
            return None
        return layer, layer.field(node.attr), b

    def _find_aliases(self) -> None:
        """Names bound once to a packet (`p = pkts[i]`) or a header (`ip = pkt.ipv4`)."""
        changed = True
        while changed:
            changed = False
            for node in ast.walk(self.fdef):
                if isinstance(node, ast.For) and isinstance(node.target, ast.Name):
                    if (isinstance(node.iter, ast.Name) and node.iter.id == self.vector
                            and node.target.id not in self.packets):
                        self.packets.add(node.target.id)
                        changed = True
                if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                        and isinstance(node.targets[0], ast.Name)):
                    continue
                name = node.targets[0].id
                if name in self.packets or name in self.layers:
                    continue
                if self._is_packet_syntax(node.value):
                    self.packets.add(name)
                    changed = True
                elif (isinstance(node.value, ast.Attribute) and node.value.attr in LAYERS
                      and self._is_packet_syntax(node.value.value)):
                    self.layers[name] = node.value.attr
                    changed = True

    def _is_packet_syntax(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.packets
        return (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                and node.value.id == self.vector and not isinstance(node.slice, ast.Slice))

    # -- statements
    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        # Compiled code only catches `Exception` as a whole, so the class is all that can
        # matter, and Numba keeps no message; see _Module.fail for why this is a call.
        return ast.copy_location(ast.parse(self.m.fail("RuntimeError")).body[0], node)

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        test = ast.UnaryOp(ast.Not(), self.visit(node.test))
        return ast.copy_location(
            ast.If(test, [ast.parse(self.m.fail("AssertionError")).body[0]], []), node)

    def visit_Global(self, node: ast.Global) -> ast.AST:
        raise self.error(node, "compiled code cannot assign globals")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> ast.AST:
        raise self.error(node, "compiled code cannot assign enclosing variables")

    def visit_For(self, node: ast.For) -> ast.AST:
        if (isinstance(node.iter, ast.Name) and node.iter.id == self.vector
                and isinstance(node.target, ast.Name)):
            # for p in pkts -> for k in range(n): b_p = int64(idx[k])
            position = self.temp()
            bvar = self.bvar(node.target.id)
            node.target = ast.Name(position, ast.Store())
            node.iter = ast.Call(ast.Name("range", ast.Load()), [ast.Name(N, ast.Load())], [])
            take = ast.Assign([ast.Name(bvar, ast.Store())], _as_int64(ast.Subscript(
                ast.Name(IDX, ast.Load()), ast.Name(position, ast.Load()), ast.Load())))
            node.body = [take, *self._visit_body(node.body)]
            node.orelse = self._visit_body(node.orelse)
            return node
        return self.generic_visit(node)

    def _visit_body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            new = self.visit(stmt)
            if isinstance(new, list):
                out.extend(new)
            elif new is not None:
                out.append(new)
        return out

    def visit_Assign(self, node: ast.Assign) -> Any:
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in self.packets:
                b = self.packet_b(node.value)
                if b is None:
                    raise self.error(node, f"{name} holds a packet here and something else "
                                           "elsewhere; use two names")
                return ast.Assign([ast.Name(self.bvar(name), ast.Store())], b)
            if name in self.layers:
                ref = self.layer_ref(node.value)
                if ref is None or ref[0].name != self.layers[name]:
                    raise self.error(node, f"{name} holds a {self.layers[name]} header here "
                                           "and something else elsewhere; use two names")
                layer, b = ref
                return [
                    ast.Assign([ast.Name(self.bvar(name), ast.Store())], b),
                    ast.Expr(self._call(self.m.need(layer), ast.Name(META, ast.Load()),
                                        ast.Name(self.bvar(name), ast.Load()))),
                ]
        if not any(self._has_field_target(t) for t in node.targets):
            return self.generic_visit(node)
        # Evaluate the value once, then store into each target left to right, as Python does.
        value = self.visit(node.value)
        stmts: list[ast.stmt] = []
        if len(node.targets) == 1:
            return self._store(node.targets[0], node.value, value, stmts) or stmts
        tmp = self.temp()
        stmts.append(ast.Assign([ast.Name(tmp, ast.Store())], value))
        for target in node.targets:
            self._store(target, node.value, ast.Name(tmp, ast.Load()), stmts)
        return stmts

    def _has_field_target(self, target: ast.AST) -> bool:
        if isinstance(target, ast.Tuple | ast.List):
            return any(self._has_field_target(t) for t in target.elts)
        if isinstance(target, ast.Attribute):
            if self.field_ref(target) is not None:
                return True
            if self.packet_b(target.value) is not None or self.layer_ref(target.value):
                raise self.error(target, f"cannot assign {ast.unparse(target)}: it is read-only")
        return False

    def _store(self, target: ast.AST, source: ast.AST, value: ast.expr,
               stmts: list[ast.stmt]) -> None:
        """Append statements storing `value` (rewritten from `source`) into `target`."""
        ref = self.field_ref(target)
        if ref is not None:
            layer, f, b = ref
            value = self._address_literal(f, source, value)
            stmts.append(ast.Expr(self._call(
                self.m.setter(layer, f), ast.Name(DATA, ast.Load()),
                ast.Name(META, ast.Load()), b, value)))
            return
        if isinstance(target, ast.Tuple | ast.List):
            temps = [self.temp() for _ in target.elts]
            stmts.append(ast.Assign(
                [ast.Tuple([ast.Name(t, ast.Store()) for t in temps], ast.Store())], value))
            sources = source.elts if isinstance(source, ast.Tuple | ast.List) and len(
                source.elts) == len(temps) else [None] * len(temps)
            for t, sub, src in zip(temps, target.elts, sources, strict=True):
                self._store(sub, src, ast.Name(t, ast.Load()), stmts)
            return
        stmts.append(ast.Assign([self.visit(target)], value))

    def _address_literal(self, f: Field, source: ast.AST | None, value: ast.expr) -> ast.expr:
        """Address text written to or compared with an address field becomes a number."""
        if f.kind not in _ADDRESS_PARSERS or not isinstance(value, ast.Constant):
            return value
        if not isinstance(value.value, str):
            return value
        try:
            number = _ADDRESS_PARSERS[f.kind](value.value)
        except AddressError as exc:
            raise self.error(source or value, str(exc)) from None
        if f.kind == "ipv6":
            octets = ast.Tuple([ast.Constant(x) for x in number.to_bytes(16, "big")], ast.Load())
            return ast.Call(
                ast.Attribute(ast.Name("np", ast.Load()), "array", ast.Load()),
                [octets, ast.Attribute(ast.Name("np", ast.Load()), "uint8", ast.Load())], [])
        return ast.Constant(number)

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        ref = self.field_ref(node.target)
        if ref is None:
            if isinstance(node.target, ast.Attribute) and (
                    self.packet_b(node.target.value) is not None
                    or self.layer_ref(node.target.value)):
                raise self.error(node, f"cannot assign {ast.unparse(node.target)}: read-only")
            return self.generic_visit(node)
        layer, f, b = ref
        data, meta = ast.Name(DATA, ast.Load()), ast.Name(META, ast.Load())
        old = self._call(self.m.getter(layer, f), data, meta, b)
        new = ast.BinOp(old, node.op, self.visit(node.value))
        return ast.Expr(self._call(self.m.setter(layer, f), data, meta, b, new))

    # -- expressions
    def _call(self, name: str, *args: ast.expr) -> ast.Call:
        return ast.Call(ast.Name(name, ast.Load()), list(args), [])

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        data, meta = ast.Name(DATA, ast.Load()), ast.Name(META, ast.Load())
        ref = self.field_ref(node)
        if ref is not None:
            layer, f, b = ref
            return self._call(self.m.getter(layer, f), data, meta, b)
        layer_ref = self.layer_ref(node.value)
        if layer_ref is not None:
            layer, b = layer_ref
            if node.attr == "offset":
                return self._call(self.m.offset(layer), meta, b)
            raise self.error(node, f"{layer.name} has no field {node.attr!r}")
        b = self.packet_b(node.value)
        if b is not None:
            attr = node.attr
            if attr.startswith("has_") and attr[4:] in LAYERS:
                return self._call(self.m.has(LAYERS[attr[4:]]), meta, b)
            if attr in _META_ATTRS:
                return ast.Subscript(meta, ast.Tuple([b, ast.Constant(_META_ATTRS[attr])],
                                                     ast.Load()), ast.Load())
            if attr == "end":
                return ast.BinOp(self.visit(ast.Attribute(node.value, "start", ast.Load())),
                                 ast.Add(), self.visit(ast.Attribute(node.value, "length",
                                                                     ast.Load())))
            if attr == "malformed":
                flags = self.visit(ast.Attribute(node.value, "flags", ast.Load()))
                return ast.Compare(ast.BinOp(flags, ast.BitAnd(), ast.Constant(M.F_MALFORMED)),
                                   [ast.NotEq()], [ast.Constant(0)])
            if attr in LAYERS:
                raise self.error(node, f"use {attr} fields directly ({ast.unparse(node)}.x) or "
                                       f"name the header once ({attr} = {ast.unparse(node)})")
            raise self.error(node, f"compiled code does not know packet attribute {attr!r}")
        if self._is_free(node.value):
            found, value = self.resolve(node.value.id)
            if found and is_kernel_bound(value):
                raise self.error(node, f"{node.value.id}.{node.attr} is not a kernel method "
                                       "call with a packet")
            if found and isinstance(value, types.ModuleType):
                self.m.import_module(value, node.value.id)
                return node
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id.startswith(P):
            return node  # introduced by this rewrite (user code was checked up front)
        if node.id in self.packets or node.id == self.vector:
            raise self.error(node, f"the packet {node.id} is used as a value; compiled code "
                                   f"needs {node.id}.<header>.<field> or a method call")
        if node.id in self.layers:
            raise self.error(node, f"the header {node.id} is used as a value; compiled code "
                                   f"needs {node.id}.<field>")
        if not isinstance(node.ctx, ast.Load) or node.id in self.locals:
            return node
        found, value = self.resolve(node.id)
        if not found:
            raise self.error(node, f"name {node.id!r} is not defined")
        return self._free_value(node, value)

    def _free_value(self, node: ast.Name, value: Any) -> ast.expr:
        """A global or closure value in compiled code: literal, import, argument or helper."""
        if getattr(builtins, node.id, None) is value and node.id not in self.func.__globals__:
            return node
        literal = _constant_node(value)
        if literal is not None:
            return ast.copy_location(literal, node)
        if isinstance(value, types.ModuleType):
            self.m.import_module(value, node.id)
            return node
        if isinstance(value, np.ndarray):
            if self.is_helper:
                raise self.error(node, f"helper {self.func.__name__} uses the array "
                                       f"{node.id}; pass it as an argument")
            return ast.Name(self.m.env_array(value, node.id), ast.Load())
        if isinstance(value, types.FunctionType) or _is_dispatcher(value):
            return ast.Name(_helper(self.m, value, ()), ast.Load())
        if callable(value) and _importable(value) is not None:
            return ast.Name(self.m.import_object(value, f"{P}ext_{node.id}"), ast.Load())
        if is_kernel_bound(value):
            raise self.error(node, f"{node.id} can only call its kernel methods on a packet")
        raise self.error(node, f"{node.id} is a {type(value).__name__}, which compiled code "
                               "cannot use")

    def visit_Call(self, node: ast.Call) -> ast.AST:
        data, meta = ast.Name(DATA, ast.Load()), ast.Name(META, ast.Load())
        fn = node.func
        if (isinstance(fn, ast.Name) and fn.id == "len" and fn.id not in self.locals
                and len(node.args) == 1 and isinstance(node.args[0], ast.Name)
                and node.args[0].id == self.vector):
            return ast.Name(N, ast.Load())
        if isinstance(fn, ast.Attribute):
            b = self.packet_b(fn.value)
            if b is not None and fn.attr not in LAYERS:
                return self._packet_method(node, fn.attr, b)
            layer_ref = self.layer_ref(fn.value)
            if layer_ref is not None:
                return self._layer_method(node, layer_ref[0], fn.attr, layer_ref[1])
            obj = self.bound_object(fn.value)
            if obj is not None:
                return self._bound_call(node, obj, fn.attr)
        if self._is_free(fn):
            found, value = self.resolve(fn.id)
            if found and (isinstance(value, types.FunctionType) or _is_dispatcher(value)):
                positions = tuple(i for i, a in enumerate(node.args)
                                  if self.packet_b(a) is not None)
                if any(self.packet_b(k.value) is not None for k in node.keywords):
                    raise self.error(node, "pass packets to helpers by position")
                name = _helper(self.m, value, positions)
                args = [self.packet_b(a) if i in positions else self.visit(a)
                        for i, a in enumerate(node.args)]
                if positions:
                    args = [data, meta, *args]
                return ast.Call(ast.Name(name, ast.Load()), args,
                                [self.visit(k) for k in node.keywords])
        return self.generic_visit(node)

    def _plain_args(self, node: ast.Call) -> list[ast.expr]:
        if node.keywords:
            raise self.error(node, "packet methods take positional arguments in compiled code")
        return [self.visit(a) for a in node.args]

    def _op_args(self, key: Any, node: ast.Call) -> list[ast.expr]:
        from pktflow.packet.ops import OP_ARG_KINDS

        kinds = OP_ARG_KINDS.get(key, ())
        args = self._plain_args(node)
        for i, kind in enumerate(kinds[: len(args)]):
            if kind in _ADDRESS_PARSERS:
                args[i] = self._address_literal(Field("arg", 0, 0, kind), node, args[i])
        return [_unliteral(a) for a in args]

    def _packet_method(self, node: ast.Call, method: str, b: ast.expr) -> ast.expr:
        from pktflow.packet.ops import PACKET_METHODS

        meta = ast.Name(META, ast.Load())
        if method == "has":
            if (len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value in LAYERS):
                return self._call(self.m.has(LAYERS[node.args[0].value]), meta, b)
            raise self.error(node, "pkt.has() takes a header name as literal text")
        fn = PACKET_METHODS.get(method)
        if fn is None:
            raise self.error(node, f"compiled code does not know packet method {method!r}")
        args = self._op_args(method, node)
        name = self.m.op(method, fn, len(args))
        return self._call(name, ast.Name(DATA, ast.Load()), meta, b, *args)

    def _layer_method(self, node: ast.Call, layer: Layer, method: str, b: ast.expr) -> ast.expr:
        from pktflow.packet.ops import LAYER_METHODS

        fn = LAYER_METHODS.get((layer.name, method))
        if fn is None:
            raise self.error(node, f"{layer.name} has no method {method!r}")
        args = self._op_args((layer.name, method), node)
        name = self.m.op((layer.name, method), fn, len(args))
        return self._call(name, ast.Name(DATA, ast.Load()), ast.Name(META, ast.Load()), b, *args)

    def _bound_call(self, node: ast.Call, obj: Any, method: str) -> ast.expr:
        if method not in type(obj).kernel_methods:
            raise self.error(node, f"{type(obj).__name__} has no kernel method {method!r}")
        if not node.args or self.packet_b(node.args[0]) is None or node.keywords:
            raise self.error(node, f"{method} takes the packet first, then plain arguments")
        if self.is_helper:
            raise self.error(node, "kernel methods are called from the node function itself")
        fn_name, state = self.m.bound_method(obj, method)
        rest = [_unliteral(self.visit(a)) for a in node.args[1:]]
        return self._call(fn_name, ast.Name(state, ast.Load()), ast.Name(DATA, ast.Load()),
                          ast.Name(META, ast.Load()), self.packet_b(node.args[0]), *rest)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        operands = [node.left, *node.comparators]
        fields = [self.field_ref(o) for o in operands]
        ipv6 = any(r is not None and r[1].kind == "ipv6" for r in fields)
        new = [self.visit(o) for o in operands]
        for i, op in enumerate(node.ops):
            for a, other in ((i, i + 1), (i + 1, i)):
                ref = fields[a]
                if ref is None:
                    continue
                if isinstance(op, ast.In | ast.NotIn) and a == i and isinstance(
                        new[other], ast.Tuple | ast.List | ast.Set):
                    new[other] = ast.Tuple([self._address_literal(ref[1], operands[other], e)
                                            for e in new[other].elts], ast.Load())
                else:
                    new[other] = self._address_literal(ref[1], operands[other], new[other])
        if ipv6:
            if len(node.ops) != 1 or not isinstance(node.ops[0], ast.Eq | ast.NotEq):
                raise self.error(node, "IPv6 addresses compare only with == and != here")
            test = self._call(self.m.eq16(), new[0], new[1])
            return test if isinstance(node.ops[0], ast.Eq) else ast.UnaryOp(ast.Not(), test)
        return ast.Compare(new[0], node.ops, new[1:])


def _as_int64(expr: ast.expr) -> ast.expr:
    """`np.int64(expr)`: buffer indices enter packet functions as int64, the type the object
    API passes, so each ops and accessor function compiles for one signature, not two."""
    return ast.Call(ast.Attribute(ast.Name("np", ast.Load()), "int64", ast.Load()), [expr], [])


_UNLITERAL = {bool: "bool_", int: "int64", float: "float64"}


def _unliteral(expr: ast.expr) -> ast.expr:
    """A number constant as a typed value (`np.int64(18)`) rather than a literal.

    Numba compiles a function called with a literal constant for that very value: every
    address or size a user writes would compile the whole ops chain again. Typed, the call
    shares one compiled version with every other call and with the object API."""
    if isinstance(expr, ast.Constant) and type(expr.value) in _UNLITERAL:
        np_type = _UNLITERAL[type(expr.value)]
        return ast.Call(ast.Attribute(ast.Name("np", ast.Load()), np_type, ast.Load()),
                        [expr], [])
    return expr


def _has_try(fdef: ast.FunctionDef) -> bool:
    return any(isinstance(n, ast.Try) for n in ast.walk(fdef))


def _helper(module: _Module, value: Any, positions: tuple[int, ...]) -> str:
    """Include a plain function the user calls, rewritten; packets it takes become indices."""
    func = _python_function(value)
    key = (id(func), positions)
    name = module.functions.get(key)
    if name is not None:
        return name
    name = f"{P}h{len(module.functions)}_{func.__name__.strip('<>')}"
    module.functions[key] = name
    fdef, filename, first = _parse_function(func)
    if _has_try(fdef) and not module.raise_by_call:
        raise CompileError(f"helper {func.__name__} has a try block; compiled helpers cannot "
                           "catch errors of packet accessors")
    params = [a.arg for a in fdef.args.args]
    packets = {params[i] for i in positions if i < len(params)}
    rewriter = _Rewriter(module, func, fdef, filename, first, packets, None, is_helper=True)
    body = rewriter._visit_body(fdef.body)
    args = [a if a.arg not in packets else ast.arg(rewriter.bvar(a.arg)) for a in fdef.args.args]
    if packets:
        args = [ast.arg(DATA), ast.arg(META), *args]
    new = ast.FunctionDef(
        name=name, args=ast.arguments([], args, None, [], [], None, fdef.args.defaults),
        body=body or [ast.Pass()], decorator_list=[], returns=None, type_params=[],
    )
    module.function_sources.append(
        "{DECORATOR}\n" + ast.unparse(ast.fix_missing_locations(new)) + "\n")
    return name


def _kernel_source(kind: NodeKind, call: str, extra: list[str]) -> str:
    """The batch kernel around the user function, catching errors per packet or vector."""
    err = VERDICT_ERROR
    params = ", ".join([DATA, META, IDX, N, OUT] + extra)
    head = f"@njit(cache=True, nogil=True)\ndef {P}kernel({params}):\n"
    if kind.is_vector:
        setup = f"    mask = np.ones({N}, np.bool_)\n"
        verdict = f"        for k in range({N}):\n            {OUT}[k] = 0\n"
        if kind is NodeKind.VECTOR_SEPARATOR:
            setup += f"    answers = np.zeros({N}, np.bool_)\n"
            verdict = (f"        for k in range({N}):\n"
                       f"            {OUT}[k] = 1 if answers[k] else 0\n")
        elif kind is NodeKind.VECTOR_SPLITTER:
            setup += f"    answers = np.zeros({N}, np.int64)\n"
            verdict = (f"        for k in range({N}):\n"
                       f"            {OUT}[k] = min(max(answers[k], {VERDICT_MIN}), "
                       f"{VERDICT_MAX})\n")
        return (
            f"{head}{setup}    try:\n        {call}\n{verdict}        return 0\n"
            f"    except Exception:\n        for k in range({N}):\n"
            f"            {OUT}[k] = {err}\n        return {N}\n"
        )
    if kind in (NodeKind.HANDLER_DROP, NodeKind.SEPARATOR):
        body = f"r = {call}\n        {OUT}[k] = 1 if r else 0"
    elif kind is NodeKind.SPLITTER:
        body = (f"r = np.int64({call})\n"
                f"        {OUT}[k] = min(max(r, {VERDICT_MIN}), {VERDICT_MAX})")
    else:
        body = f"{call}\n        {OUT}[k] = 0"
    # The packet loop runs outside any try block: inside one, Numba goes on running the
    # statements after a failed call until the end of the basic block, so an inlined user
    # function would not stop where it raised. The kernel's try catches what propagates out
    # of the loop function; `progress` says which packet raised, and the loop resumes after
    # it. (A try block around each packet would also cost 4x a MAC swap.)
    args = ", ".join([DATA, META, IDX, N, OUT, "progress"] + extra)
    return (
        f"@njit(cache=True, nogil=True)\ndef {P}loop({args}):\n"
        f"    k = progress[0]\n    while k < {N}:\n        progress[0] = k\n"
        f"        {P}b = np.int64({IDX}[k])\n        {body}\n        k += 1\n"
        f"    progress[0] = {N}\n\n\n"
        f"{head}    progress = np.zeros(1, np.int64)\n    errors = 0\n"
        f"    while progress[0] < {N}:\n        try:\n            {P}loop({args})\n"
        f"        except Exception:\n            {OUT}[progress[0]] = {err}\n"
        f"            errors += 1\n            progress[0] += 1\n    return errors\n"
    )


class CompiledKernel:
    """A compiled node: the Numba batch function and the arguments it takes each batch."""

    def __init__(self, owner: Any, fn: Any, env: tuple, bound: tuple, uses_ctx: bool,
                 source_path: str) -> None:
        self.owner = owner
        self.fn = fn
        self.env = env
        self.bound = bound
        self.uses_ctx = uses_ctx
        self.source_path = source_path
        self.run = self._make_run()

    def _make_run(self) -> Callable:
        """A run() passing exactly the kernel's arguments, with no per-call branching."""
        env, bound, fn, escaped = self.env, self.bound, self.fn, self._escaped

        # The common variants are spelled out: they cost two attribute reads and the call.
        def run_plain(pool, idx, n, out, ctx):
            try:
                return fn(pool.data, pool.meta, idx, n, out)
            except Exception as exc:  # noqa: BLE001
                return escaped(exc, pool, idx, n, out, ctx)

        def run_ctx(pool, idx, n, out, ctx):
            try:
                return fn(pool.data, pool.meta, idx, n, out, ctx)
            except Exception as exc:  # noqa: BLE001
                return escaped(exc, pool, idx, n, out, ctx)

        def run(pool, idx, n, out, ctx):
            # Table states are read once per batch: a live reload swaps between batches.
            states = tuple(o.kernel_state() for o in bound)
            head = (pool.data, pool.meta, idx, n, out, ctx) if self.uses_ctx else (
                pool.data, pool.meta, idx, n, out)
            try:
                return fn(*head, *env, *states)
            except Exception as exc:  # noqa: BLE001
                return escaped(exc, pool, idx, n, out, ctx)

        if not env and not bound:
            return run_ctx if self.uses_ctx else run_plain
        return run

    def _escaped(self, exc: Exception, pool: Any, idx: Any, n: int, out: Any, ctx: Any) -> int:
        """The kernel raised out of its own error handling: switch the node to interpreted.

        A TypingError means new argument types (say, another context type) and nothing ran,
        so this batch runs interpreted. Anything else may have left the batch half done:
        its packets are marked as errors rather than passed on in an unknown state.
        """
        from numba.core.errors import TypingError

        owner = self.owner
        if isinstance(exc, TypingError):
            what = f"a context of type {type(ctx).__name__}" if self.uses_ctx else "new arguments"
            owner._fall_back(_short_numba_error(exc, what))
            return owner.run(pool, idx, n, out, ctx)
        owner._last_exc = exc
        owner._fall_back(f"its compiled kernel raised {type(exc).__name__}: {exc}")
        out[:n] = VERDICT_ERROR
        return n


def _short_numba_error(exc: BaseException, what: str) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    first = next((ln for ln in lines if not ln.startswith(("During:", "File", "^"))), "")
    return f"Numba cannot compile it for {what}: {first[:300]}"


def _dependency_note(module: _Module) -> str:
    """Digests of the source files the kernel calls into (Numba's cache does not track them)."""
    files = set(module.dep_files)
    packet_dir = Path(M.__file__).parent
    files.update(str(p) for p in packet_dir.glob("*.py"))
    files.add(str(Path(acc.__file__)))
    return "\n".join(f"# dep {Path(f).name} {_file_digest(f)}" for f in sorted(files))


def build_compiled_kernel(kernel: Any, ctx: Any) -> CompiledKernel:
    """Compile `kernel.func` into a batch kernel; raises CompileError when it cannot."""
    import numba

    kind: NodeKind = kernel.kind
    func = _python_function(kernel.func)
    if not isinstance(func, types.FunctionType):
        raise CompileError(f"it is a {type(func).__name__}, not a Python function")
    fdef, filename, first = _parse_function(func)
    args = fdef.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
        raise CompileError("compiled user functions take plain positional parameters")
    params = [a.arg for a in args.args]
    nparams = len(kind.params) if kernel.takes_ctx else len(kind.params) - 1
    if len(params) < nparams:
        raise CompileError(f"it takes {len(params)} parameters, the {kind.value} form "
                           f"passes {nparams}")
    if len(params) > nparams:
        raise CompileError("parameters with defaults beyond the node's form are not compiled")
    ctx_name = params[-1] if kernel.takes_ctx else None
    module = _Module(raise_by_call=_has_try(fdef))
    if kind.is_vector:
        vector, packets = params[0], set()
    else:
        vector, packets = None, {params[0]}
    rewriter = _Rewriter(module, func, fdef, filename, first, packets, vector, is_helper=False)
    body = rewriter._visit_body(fdef.body)
    uses_ctx = ctx_name is not None and any(
        isinstance(n, ast.Name) and n.id == ctx_name for n in ast.walk(fdef))
    if uses_ctx and ctx is not None:
        try:
            numba.typeof(ctx)
        except (ValueError, TypeError):
            raise CompileError(
                f"its context is a {type(ctx).__name__}, which compiled code cannot take "
                "(use None, NumPy arrays, numbers, tuples or namedtuples of them)") from None
    env_names = list(module.env)
    state_names = [f"{P}st{i}" for i in range(len(module.bound))]
    extra = ([ctx_name] if uses_ctx else []) + env_names + state_names

    # The user function: (data, meta, idx, n, b or mask/answers, ctx, env..., states...)
    user_params = [DATA, META, IDX, N]
    if kind.is_vector:
        user_params += params[1:nparams - (1 if kernel.takes_ctx else 0)]
    else:
        user_params.append(rewriter.bvar(params[0]))
    user_params += extra
    user = ast.FunctionDef(
        name=f"{P}user", args=ast.arguments([], [ast.arg(a) for a in user_params], None, [],
                                            [], None, []),
        body=body or [ast.Pass()], decorator_list=[], returns=None, type_params=[],
    )
    user_src = ast.unparse(ast.fix_missing_locations(user))

    call_args = [DATA, META, IDX, N]
    if kind.is_vector:
        call_args += ["mask", "answers"][: nparams - 1 - (1 if kernel.takes_ctx else 0)]
    else:
        call_args.append(f"{P}b")
    call = f"{P}user({', '.join(call_args + extra)})"
    origin = f"{getattr(func, '__module__', '?')}.{func.__qualname__}"
    header = (
        f'"""Generated by pktflow.flow.rewrite from {origin} ({kind.value}). Do not edit."""\n'
        f"{_dependency_note(module)}\n"
        "import numpy as np\nfrom numba import njit\n"
        "from pktflow.packet.accessors import acc\n"
        + "".join(line + "\n" for line in sorted(module.imports.values()))
    )
    parts = (
        header + "\n\n" + "\n\n".join(module.helpers.values()) + "\n\n"
        + "\n\n".join(module.function_sources) + "\n\n"
        + f"{{DECORATOR}}\n{user_src}\n\n\n"
        + _kernel_source(kind, call, extra)
    )
    env = tuple(module.env[name] for name in env_names)
    bound = tuple(module.bound)
    # Inlined, the user function costs nothing per packet; called, Numba passes each array
    # with reference counting, 4x the work of a MAC swap. Numba cannot inline everything
    # (recursion, some closures): then the kernel calls it.
    first_error: CompileError | None = None
    decorators = ["@njit(cache=True, nogil=True)"]
    # A try block inside an inlined function would nest in the kernel's own: not inlined.
    if not kind.is_vector and not any(isinstance(n, ast.Try) for n in ast.walk(user)):
        decorators.insert(0, _INLINE.strip())
    for decorator in decorators:
        source = parts.replace("{DECORATOR}", decorator)
        try:
            generated = load_generated_module("node", source)
        except Exception as exc:  # noqa: BLE001  (a broken rewrite must not stop the graph)
            raise CompileError(f"the rewritten source does not load: {exc}") from None
        fn = generated.__dict__[f"{P}kernel"]
        compiled = CompiledKernel(kernel, fn, env, bound, uses_ctx, generated.__file__)
        try:
            _warm_up(compiled, ctx)
        except CompileError as exc:
            first_error = first_error or exc
            continue
        return compiled
    assert first_error is not None
    raise first_error


def _warm_up(compiled: CompiledKernel, ctx: Any) -> None:
    """Compile now, on an empty batch, so errors surface before the graph starts."""
    from numba.core.errors import NumbaError

    from pktflow.packet.pool import Pool

    pool = Pool(buffers=1, bufsize=64, headroom=0, name="compile")
    idx = np.zeros(1, dtype=np.int32)
    out = np.zeros(1, dtype=np.int32)
    fn, env = compiled.fn, compiled.env
    states = tuple(o.kernel_state() for o in compiled.bound)
    args: tuple = (pool.data, pool.meta, idx, 0, out)
    if compiled.uses_ctx:
        args += (ctx,)
    try:
        fn(*args, *env, *states)
    except NumbaError as exc:
        raise CompileError(_short_numba_error(exc, "these arguments")) from None
    except Exception as exc:  # noqa: BLE001  (Numba raises assorted errors while compiling)
        raise CompileError(f"Numba failed: {type(exc).__name__}: {exc}"[:400]) from None
