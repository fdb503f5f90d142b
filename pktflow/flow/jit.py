"""A rewritten user function compiled into a Numba batch kernel.

`build_compiled_kernel` rewrites the function (`rewrite.py`), wraps it in a batch loop that
turns a raised error into VERDICT_ERROR for that packet (or vector), emits the generated
module (`emit.py`, loaded through `codegen.load_generated_module`) and compiles it with
`njit(nogil=True, cache=True)` on an empty batch, so errors surface before the graph starts.
`CompiledKernel.run` is then called once per batch.
"""

from __future__ import annotations

import ast
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from pktflow.flow.emit import (
    DATA,
    IDX,
    INLINE,
    META,
    OUT,
    GeneratedModule,
    N,
    P,
    dependency_note,
)
from pktflow.flow.kinds import (
    VERDICT_ERROR,
    VERDICT_MAX,
    VERDICT_MIN,
    CompileError,
    NodeKind,
    python_function,
)
from pktflow.flow.rewrite import Rewriter
from pktflow.flow.source import has_try, parse_function
from pktflow.packet.codegen import load_generated_module


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
    """A compiled node: the Numba batch function and the arguments it takes each batch.

    `owner` is the node's `NodeKernel`: when the kernel fails beyond its own error handling,
    `owner.fall_back(reason)` switches the node to interpreted and `owner.run` takes over.
    """

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
            owner.fall_back(_short_numba_error(exc, what))
            return owner.run(pool, idx, n, out, ctx)
        owner.fall_back(f"its compiled kernel raised {type(exc).__name__}: {exc}", exc)
        out[:n] = VERDICT_ERROR
        return n


def _short_numba_error(exc: BaseException, what: str) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    first = next((ln for ln in lines if not ln.startswith(("During:", "File", "^"))), "")
    return f"Numba cannot compile it for {what}: {first[:300]}"


def build_compiled_kernel(kernel: Any, ctx: Any) -> CompiledKernel:
    """Compile `kernel.func` into a batch kernel; raises CompileError when it cannot."""
    import numba

    kind: NodeKind = kernel.kind
    func = python_function(kernel.func)
    if not isinstance(func, types.FunctionType):
        raise CompileError(f"it is a {type(func).__name__}, not a Python function")
    fdef, filename, first = parse_function(func)
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
    module = GeneratedModule(raise_by_call=has_try(fdef))
    if kind.is_vector:
        vector, packets = params[0], set()
    else:
        vector, packets = None, {params[0]}
    rewriter = Rewriter(module, func, fdef, filename, first, packets, vector, is_helper=False)
    body = rewriter.visit_body(fdef.body)
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
        f"{dependency_note(module)}\n"
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
        decorators.insert(0, INLINE.strip())
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
