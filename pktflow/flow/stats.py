"""Statistics of a running or stopped graph: snapshot, conservation, log line, HTTP export.

The runtime hands out its counters as data (`RunCounters`, read at one moment); these
functions turn that data, the graph's nodes and its ports into plain dicts (JSON-ready),
so statistics never reach back into the runtime or the system. The HTTP server serves
the snapshot as JSON on `/stats`, as Prometheus text on `/metrics` and live on the
dashboard page `/`, on the configured address (127.0.0.1 unless told otherwise), from
threads of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pktflow.flow.bound import kernel_bound_objects
from pktflow.flow.dashboard import BindError, Board, StatsHTTPServer
from pktflow.flow.graph import FlowError, Node
from pktflow.ports.base import Port

# Terminal counters: where a packet's life in the graph ends.
DROP_REASONS = ("stopped", "handler-drop", "handler-error", "splitter-range", "queue-full",
                "tx-error", "malformed", "shutdown")
SENDING_OPS = ("sender", "pcap_writer")


def new_node_totals() -> dict[str, Any]:
    """One node's counters summed over its clones, all zero (also a node that never ran)."""
    return {"in": 0, "out": 0, "entered": 0, "copy_failed": 0, "dropped": {}}


@dataclass(frozen=True)
class RunCounters:
    """What a runtime hands the statistics: its counters and sizes, read at one moment."""

    nodes: dict[int, dict[str, Any]]  # node id -> totals (see new_node_totals)
    clones: dict[int, tuple[int, int]]  # node id -> (clones of its segment now, peak)
    segments: list[tuple[str, int]]  # (segment name, clones now), in plan order
    rings: list[dict[str, Any]]  # {"name", "used", "size"} per ring between segments
    uptime: float  # seconds since start
    running: bool

    def totals(self, node_id: int) -> dict[str, Any]:
        return self.nodes.get(node_id) or new_node_totals()


def conservation(nodes: list[Node], run: RunCounters | None) -> dict[str, Any]:
    """Packets that entered vs packets that ended, by counter; balanced when they match."""
    entered = {"received": 0, "generated": 0, "copied": 0}
    ended: dict[str, int] = {"sent": 0}
    for node in nodes:
        c = run.totals(node.id) if run else new_node_totals()
        if node.op in ("receiver", "pcap_reader"):
            entered["received"] += c["entered"]
        elif node.op in ("generator", "vector_generator"):
            entered["generated"] += c["entered"]
        elif node.op == "copier":
            entered["copied"] += c["entered"]
        if node.op in SENDING_OPS:
            ended["sent"] += c["out"]
        for reason, n in c["dropped"].items():
            ended[reason] = ended.get(reason, 0) + n
    in_rings = sum(r["used"] for r in run.rings) if run else 0
    total_in = sum(entered.values())
    total_end = sum(ended.values())
    running = run is not None and run.running
    return {
        "entered": entered,
        "ended": ended,
        "in_rings": in_rings,
        "total_entered": total_in,
        "total_ended": total_end,
        "in_flight": total_in - total_end,
        "exact": not running,
        "balanced": total_in == total_end + in_rings if not running else
        total_in >= total_end + in_rings,
    }


def snapshot(nodes: list[Node], run: RunCounters | None, ports: dict[str, Port],
             ) -> dict[str, Any]:
    """Every counter of the graph and its ports (by the key they are shown under) as plain
    data. Read `run` before calling: a port counts a packet before its receiver node does,
    so graph counters read first and ports read here show the ports' final counts too."""
    balance = conservation(nodes, run)
    entries = []
    for node in nodes:
        c = run.totals(node.id) if run else new_node_totals()
        clones, peak = run.clones.get(node.id, (0, 0)) if run else (0, 0)
        entry: dict[str, Any] = {
            "id": node.id,
            "op": node.op,
            "name": node.name,
            "site": node.site,
            "clones": clones,
            "peak_clones": peak,
            "in": c["in"],
            "out": c["out"],
            "dropped": c["dropped"],
        }
        if node.kernel is not None:
            entry["path"] = node.kernel.path
        if node.op == "copier":
            entry["copy_failed"] = c["copy_failed"]
        if node.port_id is not None:
            entry["port"] = node.port_id
        entry["inputs"] = [[source.id, slot] for source, slot in node.inputs]
        entries.append(entry)
    port_stats = {key: {"name": port.name, "mac": str(port.mac), **port.stats.as_dict()}
                  for key, port in ports.items()}
    # Rule tables and other kernel-bound objects that report a status (version, load
    # time, last error of a watched file), once each, with the nodes that use them.
    tables: dict[int, dict[str, Any]] = {}
    for node in nodes:
        if node.func is None:
            continue
        for obj in kernel_bound_objects(node.func):
            status = getattr(obj, "status", None)
            if callable(status):
                entry = tables.setdefault(id(obj), {**status(), "nodes": []})
                entry["nodes"].append(node.name)
    return {
        "running": run is not None and run.running,
        "uptime": round(run.uptime, 3) if run else 0.0,
        "nodes": entries,
        "ports": port_stats,
        "rings": list(run.rings) if run else [],
        "tables": list(tables.values()),
        "conservation": balance,
    }


def log_line(nodes: list[Node], run: RunCounters, last: dict[str, int],
             interval: float) -> str:
    """One line: received/generated and sent rates, drops, clone counts."""
    now = {"in": 0, "sent": 0, "dropped": 0}
    for node in nodes:
        c = run.totals(node.id)
        if node.is_source:
            now["in"] += c["entered"]
        if node.op in SENDING_OPS:
            now["sent"] += c["out"]
        now["dropped"] += sum(c["dropped"].values())
    clones = [f"{name}={n}" for name, n in run.segments]
    rates = {k: (v - last.get(k, 0)) / interval for k, v in now.items()}
    last.update(now)
    return (f"pktflow: in {rates['in']:.0f} pps, sent {rates['sent']:.0f} pps, dropped "
            f"{rates['dropped']:.0f} pps; totals in {now['in']} sent {now['sent']} dropped "
            f"{now['dropped']}; clones {' '.join(clones) or 'none'}")


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def prometheus(snap: dict[str, Any]) -> str:
    """The snapshot in Prometheus text exposition format."""
    out = []

    def metric(name: str, kind: str, help_text: str, rows: list[tuple[str, object]]) -> None:
        out.append(f"# HELP pktflow_{name} {help_text}")
        out.append(f"# TYPE pktflow_{name} {kind}")
        out.extend(f"pktflow_{name}{{{labels}}} {value}" for labels, value in rows)

    def node_labels(n: dict[str, Any]) -> str:
        return f'node="{n["id"]}",op="{n["op"]}",name="{_label(n["name"])}"'

    nodes = snap["nodes"]
    metric("node_in_packets_total", "counter", "Packets handed to the node.",
           [(node_labels(n), n["in"]) for n in nodes])
    metric("node_out_packets_total", "counter", "Packets passed on (sent, for senders).",
           [(node_labels(n), n["out"]) for n in nodes])
    metric("node_dropped_packets_total", "counter", "Packets the node dropped, by reason.",
           [(f'{node_labels(n)},reason="{r}"', v) for n in nodes for r, v in
            n["dropped"].items()])
    metric("node_clones", "gauge", "Clones of the node's segment running now.",
           [(node_labels(n), n["clones"]) for n in nodes])
    ports = snap["ports"]
    for key in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_dropped",
                "tx_dropped", "rx_errors", "tx_errors"):
        metric(f"port_{key}_total", "counter", f"Port counter {key}.",
               [(f'port="{_label(p)}",name="{_label(v["name"])}"', v[key])
                for p, v in ports.items()])
    metric("ring_used_packets", "gauge", "Packets waiting in a ring between segments.",
           [(f'ring="{_label(r["name"])}"', r["used"]) for r in snap["rings"]])
    tables = snap.get("tables", [])
    metric("rules_version", "gauge", "Active version of a rule table (1 = first load).",
           [(f'file="{_label(str(t.get("file")))}"', t.get("version", 0)) for t in tables])
    metric("rules_loaded_at_seconds", "gauge", "When the active rules were loaded (Unix time).",
           [(f'file="{_label(str(t.get("file")))}"', t.get("loaded_at", 0)) for t in tables])
    metric("rules_failed_reloads_total", "counter", "Edits of a rules file that were refused.",
           [(f'file="{_label(str(t.get("file")))}"', t.get("failed_reloads", 0))
            for t in tables])
    cons = snap["conservation"]
    metric("entered_packets_total", "counter", "Packets that entered the graph.",
           [(f'how="{k}"', v) for k, v in cons["entered"].items()])
    metric("ended_packets_total", "counter", "Packets whose life in the graph ended.",
           [(f'how="{k}"', v) for k, v in cons["ended"].items()])
    return "\n".join(out) + "\n"


class StatsServer(StatsHTTPServer):
    """The NF's statistics server: JSON (/stats), Prometheus (/metrics), the dashboard
    page (/) and its live events (/events), from daemon threads (see pktflow.flow.dashboard)."""

    def __init__(self, stats: Callable[[], dict[str, Any]], address: tuple[str, int],
                 public: bool = False) -> None:
        """Serve `stats()` (a snapshot) on `address`; a non-local one only if `public`."""
        board = Board()
        board.attach("nf", stats, prometheus)
        try:
            super().__init__(board, address, public=public)
        except BindError as e:
            raise FlowError(str(e)) from None
