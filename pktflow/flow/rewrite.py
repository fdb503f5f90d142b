"""Syntax-tree rewrite of user functions into Numba batch kernels (work in progress)."""

from __future__ import annotations

from typing import Any

from pktflow.flow.compiler import CompileError


def build_compiled_kernel(kernel: Any, ctx: Any) -> Any:
    """Compile `kernel.func` into a batch kernel; raises CompileError when it cannot."""
    raise CompileError("the compiled path is not built yet")
