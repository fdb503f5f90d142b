"""The flow graph as the user builds it: nodes, the flows between them, and its checks.

A `Flow` is a handle on one output of a node that is not yet consumed. Nodes that work in
place (handler, separator, partitioner, copier, ...) move the handle on to their own first
output, as NFF-Go's flow functions do with their IN flow. Before start, `validate` checks
that every flow ends exactly once, and `plan_segments` cuts the graph into segments that
run to completion on one thread; rings join segments only behind generators and in front
of mergers.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from pktflow.flow.compiler import NodeKernel
from pktflow.flow.kinds import NodeKind

# Node operations, by role.
SOURCES = ("receiver", "generator", "vector_generator", "pcap_reader")
GENERATORS = ("generator", "vector_generator")
SINKS = ("sender", "stopper", "pcap_writer")
# Kernel node operations and the compiler kind each one uses.
KERNEL_OPS: dict[str, NodeKind] = {
    "handler": NodeKind.HANDLER,
    "vector_handler": NodeKind.VECTOR_HANDLER,
    "handler_drop": NodeKind.HANDLER_DROP,
    "vector_handler_drop": NodeKind.VECTOR_SEPARATOR,
    "separator": NodeKind.SEPARATOR,
    "vector_separator": NodeKind.VECTOR_SEPARATOR,
    "splitter": NodeKind.SPLITTER,
    "vector_splitter": NodeKind.VECTOR_SPLITTER,
    "generator": NodeKind.GENERATOR,
    "vector_generator": NodeKind.VECTOR_GENERATOR,
}
_FLOW_DIR = os.path.dirname(os.path.abspath(__file__))


class FlowError(ValueError):
    """The graph is wrong (a flow left open or used twice, an unknown port, a bad user
    function); the message names the flow functions and where the program called them."""


def call_site() -> str:
    """'file.py:LINE' of the user code that called into pktflow.flow."""
    frame = sys._getframe(1)
    while frame is not None and os.path.dirname(
        os.path.abspath(frame.f_code.co_filename)
    ) == _FLOW_DIR:
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


@dataclass(eq=False)
class Node:
    """One flow function instance in the graph."""

    id: int
    op: str
    name: str
    site: str
    nout: int
    inputs: list[tuple[Node, int]] = field(default_factory=list)
    consumers: list[Node | None] = field(default_factory=list)
    func: Any = None
    ctx: Any = None
    mode: str = "auto"
    port_id: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    ordered: bool = False
    clones: int | None = None
    persistent: bool = False
    kernel: NodeKernel | None = None

    def __post_init__(self) -> None:
        self.consumers = [None] * self.nout

    @property
    def label(self) -> str:
        """How errors and statistics name this node: `handler swap (nf.py:12)`."""
        return f"{self.op} {self.name} ({self.site})"

    @property
    def is_source(self) -> bool:
        return self.op in SOURCES

    @property
    def ring_input(self) -> bool:
        """True when this node reads its input from rings (a segment root)."""
        if self.op == "merger":
            return True
        return bool(self.inputs) and self.inputs[0][0].op in GENERATORS


class Flow:
    """A stream of packets leaving one node output, waiting to be consumed once."""

    __slots__ = ("owner", "node", "slot", "closed_by")

    def __init__(self, owner: object, node: Node, slot: int) -> None:
        self.owner = owner
        self.node = node
        self.slot = slot
        self.closed_by: Node | None = None

    @property
    def open(self) -> bool:
        return self.closed_by is None

    def describe(self) -> str:
        which = f" output {self.slot}" if self.node.nout > 1 else ""
        return f"the flow from {self.node.label}{which}"

    def __repr__(self) -> str:
        state = "open" if self.open else f"consumed by {self.closed_by.label}"
        return f"<Flow from {self.node.label}, {state}>"


@dataclass(eq=False)
class SegmentPlan:
    """Nodes that one thread runs to completion per batch, from `root` to rings or sinks."""

    root: Node
    nodes: list[Node]
    clonable: bool
    fixed_clones: int | None
    persistent: bool

    @property
    def name(self) -> str:
        return f"{self.root.op} {self.root.name}"


def validate(nodes: list[Node], flows: list[Flow]) -> None:
    """Raise FlowError listing every flow that was left open."""
    left_open = [f for f in flows if f.open]
    if left_open:
        lines = "\n".join(f"  {f.describe()}" for f in left_open)
        raise FlowError(
            f"{len(left_open)} flow(s) left open; end each with sender(), stopper() or "
            f"pcap_writer(), or pass it to another flow function:\n{lines}"
        )
    for node in nodes:
        for slot, consumer in enumerate(node.consumers):
            if consumer is None:  # a flow handle that moved on without being recorded
                raise FlowError(f"output {slot} of {node.label} goes nowhere")


def plan_segments(nodes: list[Node]) -> list[SegmentPlan]:
    """Cut the graph at rings: each segment is a tree from a source or ring-fed node."""
    plans = []
    for root in nodes:
        if not (root.is_source or root.ring_input):
            continue
        members: list[Node] = []
        stack = [root]
        while stack:
            node = stack.pop()
            members.append(node)
            for child in node.consumers:
                if child is not None and not child.ring_input:
                    stack.append(child)
        generator_root = root.op in GENERATORS
        ordered = [n for n in members if n.ordered or n.op == "partitioner"]
        fixed = {n.clones for n in members if n.clones is not None}
        if len(fixed) > 1:
            names = ", ".join(n.label for n in members if n.clones is not None)
            raise FlowError(f"conflicting clone counts {sorted(fixed)} in one segment "
                            f"(these nodes run together on one thread): {names}")
        fixed_count = fixed.pop() if fixed else None
        if fixed_count is not None and fixed_count > 1 and (ordered or generator_root):
            why = ordered[0].label if ordered else root.label
            raise FlowError(f"clones={fixed_count} asked for, but {why} keeps packet order "
                            f"and runs on one thread only")
        plans.append(SegmentPlan(
            root=root,
            nodes=members,
            clonable=not ordered and not generator_root,
            fixed_clones=fixed_count,
            persistent=any(n.persistent for n in members),
        ))
    return plans
