"""Rewrite a user function's syntax tree into a Numba batch kernel.

The user writes `pkt.ipv4.src`, `pkt.eth.dst = "00:11:22:33:44:55"`, `pkt.ipv4.ttl -= 1`,
`pkt.update_checksums()` or `table.lookup(pkt)`; the rewrite turns each into a call of a
compiled accessor (`accessors.py`), an ops registry function (`ops.py`) or a kernel-bound
object's Numba method, all over `(data, meta, b)`. Field accesses are checked the way the
object API checks them (header present, field inside the frame, value in range), so a
compiled node raises exactly where the interpreted one does and both give the same verdicts.
The helpers and names it uses are collected in a `GeneratedModule` (`emit.py`); `jit.py`
wraps the rewritten function in a batch loop and compiles it.

Anything the rewrite cannot express raises `CompileError` with the reason and source line;
`compile_node` then runs the node interpreted (or re-raises under mode="compiled").
"""

from __future__ import annotations

import ast
import builtins
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pktflow.flow.bound import is_kernel_bound
from pktflow.flow.emit import DATA, IDX, META, GeneratedModule, N, P
from pktflow.flow.kinds import CompileError, python_function
from pktflow.flow.source import (
    constant_node,
    has_try,
    importable,
    is_dispatcher,
    local_names,
    parse_function,
)
from pktflow.packet import meta as M
from pktflow.packet.addr import AddressError, parse_ipv4, parse_ipv6, parse_mac
from pktflow.packet.fields import LAYERS, Field, Layer

_ADDRESS_PARSERS = {"mac": parse_mac, "ipv4": parse_ipv4, "ipv6": parse_ipv6}
# Packet attributes backed by a metadata column (read only, as in the object API).
_META_ATTRS = {"length": M.LEN, "port": M.PORT, "start": M.START, "flags": M.FLAGS}


class Rewriter(ast.NodeTransformer):
    """Rewrites one function: packet attribute syntax -> accessor and ops calls."""

    def __init__(
        self,
        module: GeneratedModule,
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
        self.locals = local_names(fdef)
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
        # matter, and Numba keeps no message; see GeneratedModule.fail for why this is a call.
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
            node.body = [take, *self.visit_body(node.body)]
            node.orelse = self.visit_body(node.orelse)
            return node
        return self.generic_visit(node)

    def visit_body(self, body: list[ast.stmt]) -> list[ast.stmt]:
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
        literal = constant_node(value)
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
        if isinstance(value, types.FunctionType) or is_dispatcher(value):
            return ast.Name(rewrite_helper(self.m, value, ()), ast.Load())
        if callable(value) and importable(value) is not None:
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
            if found and (isinstance(value, types.FunctionType) or is_dispatcher(value)):
                positions = tuple(i for i, a in enumerate(node.args)
                                  if self.packet_b(a) is not None)
                if any(self.packet_b(k.value) is not None for k in node.keywords):
                    raise self.error(node, "pass packets to helpers by position")
                name = rewrite_helper(self.m, value, positions)
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


def rewrite_helper(module: GeneratedModule, value: Any, positions: tuple[int, ...]) -> str:
    """Include a plain function the user calls, rewritten; packets it takes become indices."""
    func = python_function(value)
    key = (id(func), positions)
    name = module.functions.get(key)
    if name is not None:
        return name
    name = f"{P}h{len(module.functions)}_{func.__name__.strip('<>')}"
    module.functions[key] = name
    fdef, filename, first = parse_function(func)
    if has_try(fdef) and not module.raise_by_call:
        raise CompileError(f"helper {func.__name__} has a try block; compiled helpers cannot "
                           "catch errors of packet accessors")
    params = [a.arg for a in fdef.args.args]
    packets = {params[i] for i in positions if i < len(params)}
    rewriter = Rewriter(module, func, fdef, filename, first, packets, None, is_helper=True)
    body = rewriter.visit_body(fdef.body)
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


