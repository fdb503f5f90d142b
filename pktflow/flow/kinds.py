"""The compiler's vocabulary, shared by the compiler, the rewrite and the flow engine:
what a user function is for (`NodeKind`), the verdicts it answers with, `CompileError`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import numpy as np

VERDICT_ERROR = int(np.iinfo(np.int32).min)
# Splitter answers beyond int32 are clamped so that they stay out of range (a counted drop)
# without ever colliding with VERDICT_ERROR.
VERDICT_MAX = int(np.iinfo(np.int32).max)
VERDICT_MIN = VERDICT_ERROR + 1


class NodeKind(enum.Enum):
    """What a user function is for; fixes its signature and how its result becomes a verdict."""

    HANDLER = "handler"  # f(pkt, ctx) -> None
    HANDLER_DROP = "handler-drop"  # f(pkt, ctx) -> bool, False drops
    SEPARATOR = "separator"  # f(pkt, ctx) -> bool, True keeps, False goes to the new flow
    SPLITTER = "splitter"  # f(pkt, ctx) -> int, the flow index
    GENERATOR = "generator"  # f(pkt, ctx) -> None, fills a fresh packet
    VECTOR_HANDLER = "vector handler"  # f(pkts, mask, ctx)
    VECTOR_SEPARATOR = "vector separator"  # f(pkts, mask, answers, ctx), answers bool
    VECTOR_SPLITTER = "vector splitter"  # f(pkts, mask, answers, ctx), answers int
    VECTOR_GENERATOR = "vector generator"  # f(pkts, ctx)

    @property
    def is_vector(self) -> bool:
        return self.name.startswith("VECTOR_")

    @property
    def params(self) -> tuple[str, ...]:
        """The parameter names of the full form (the last one, ctx, may be left out)."""
        return _PARAMS[self]


_PARAMS = {
    NodeKind.HANDLER: ("pkt", "ctx"),
    NodeKind.HANDLER_DROP: ("pkt", "ctx"),
    NodeKind.SEPARATOR: ("pkt", "ctx"),
    NodeKind.SPLITTER: ("pkt", "ctx"),
    NodeKind.GENERATOR: ("pkt", "ctx"),
    NodeKind.VECTOR_HANDLER: ("pkts", "mask", "ctx"),
    NodeKind.VECTOR_SEPARATOR: ("pkts", "mask", "answers", "ctx"),
    NodeKind.VECTOR_SPLITTER: ("pkts", "mask", "answers", "ctx"),
    NodeKind.VECTOR_GENERATOR: ("pkts", "ctx"),
}


class CompileError(Exception):
    """Numba cannot compile this user function; the message says why (mode="compiled")."""


def python_function(func: Callable) -> Callable:
    """The plain Python function behind `func` (a Numba dispatcher wraps one)."""
    return getattr(func, "py_func", func)
