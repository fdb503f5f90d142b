"""Snapshot sources beside the NF's: the generator's ports as its Main Page shows them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pktflow.pktgen.page import main_rows

if TYPE_CHECKING:
    from pktflow.flow.dashboard import Board
    from pktflow.pktgen.engine import Engine

# Generator counters exported to Prometheus, as pktflow_pktgen_<key>_total.
PKTGEN_COUNTERS = ("tx_packets", "tx_bytes", "rx_packets", "rx_bytes", "tx_dropped",
                   "tx_errors", "rx_errors")


def pktgen_snapshot(gen: Engine) -> dict[str, Any]:
    """Per-port counters and rates, and the Main Page rows computed from the same numbers."""
    stats = gen.stats()
    notes = [f"port {i}: {s['tx_paused']}" for i, s in stats.items() if "tx_paused" in s]
    notes += [f"port {i}: {e}" for i, e in sorted(gen.errors().items())]
    return {
        "ports": {str(i): s for i, s in stats.items()},
        "page": [[label, cells] for label, cells in main_rows(gen, stats)],
        "notes": notes,
    }


def pktgen_prometheus(doc: dict[str, Any]) -> str:
    """The generator's per-port counters and rates in Prometheus text format."""
    out = []
    ports = doc.get("ports", {})
    for key in PKTGEN_COUNTERS:
        out.append(f"# TYPE pktflow_pktgen_{key}_total counter")
        out.extend(f'pktflow_pktgen_{key}_total{{port="{p}"}} {s[key]}'
                   for p, s in ports.items())
    for key in ("tx_pps", "rx_pps"):
        out.append(f"# TYPE pktflow_pktgen_{key} gauge")
        out.extend(f'pktflow_pktgen_{key}{{port="{p}"}} {s[key]:.1f}' for p, s in ports.items())
    return "\n".join(out) + "\n"


def attach_pktgen(board: Board, gen: Engine) -> None:
    """Serve `gen` on `board` as the "pktgen" source (JSON, events, metrics)."""
    board.attach("pktgen", lambda: pktgen_snapshot(gen), pktgen_prometheus)
