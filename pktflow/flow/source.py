"""What the compiler reads from a user function and the values it names: the definition
(parsed from its source), the names it binds, literals for constant values, and whether a
value can be imported by name into generated code.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np

from pktflow.flow.kinds import CompileError


def importable(obj: Any) -> tuple[str, str] | None:
    """(module, name) under which `obj` can be imported, or None."""
    mod_name = getattr(obj, "__module__", None)
    name = getattr(obj, "__name__", None)
    if not mod_name or not name:
        return None
    mod = sys.modules.get(mod_name)
    if mod is None or getattr(mod, name, None) is not obj:
        return None
    return mod_name, name


def is_dispatcher(obj: Any) -> bool:
    """A Numba dispatcher (an @njit function): compiled code calls it as it is."""
    return hasattr(obj, "py_func") and hasattr(obj, "signatures")


def constant_node(value: Any) -> ast.expr | None:
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
        items = [constant_node(v) for v in value]
        if all(i is not None for i in items):
            return ast.Tuple(items, ast.Load())
    return None


def local_names(fdef: ast.FunctionDef) -> set[str]:
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


def parse_function(func: Callable) -> tuple[ast.FunctionDef, str, int]:
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


def has_try(fdef: ast.FunctionDef) -> bool:
    """Whether the function has a try block (it changes how compiled code must raise)."""
    return any(isinstance(n, ast.Try) for n in ast.walk(fdef))

