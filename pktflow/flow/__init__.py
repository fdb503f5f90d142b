"""The flow graph engine: network functions as graphs of flow functions (layer 4).

    from pktflow import flow

    def swap(pkt, ctx):
        pkt.eth.src, pkt.eth.dst = pkt.eth.dst, pkt.eth.src

    def build(nf: flow.System) -> None:
        f = nf.receiver(0)
        nf.handler(f, swap)
        nf.sender(f, 1)

    if __name__ == "__main__":
        flow.main(build)          # --port 0=mem:a --port 1=mem:b --duration 10 ...

See docs/flow.md. Names load on first use, so importing `pktflow.flow.compiler` alone stays
cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "System": "pktflow.flow.system",
    "Flow": "pktflow.flow.graph",
    "FlowError": "pktflow.flow.graph",
    "FlowConfig": "pktflow.flow.config",
    "ConfigError": "pktflow.flow.config",
    "add_arguments": "pktflow.flow.cli",
    "config_from_args": "pktflow.flow.cli",
    "system_from_args": "pktflow.flow.cli",
    "main": "pktflow.flow.cli",
    "NodeKind": "pktflow.flow.kinds",
    "CompileError": "pktflow.flow.kinds",
    "compile_node": "pktflow.flow.compiler",
    "prometheus": "pktflow.flow.stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pktflow.flow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
