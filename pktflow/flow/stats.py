"""Statistics of a running or stopped graph: snapshot, conservation, log line, HTTP export.

`snapshot(system)` returns plain dicts (JSON-ready). The HTTP server serves it as JSON on
`/stats`, as Prometheus text on `/metrics` and live on the dashboard page `/`, on the
configured address (127.0.0.1 unless told otherwise), from threads of its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pktflow.dashboard.server import BindError, Board, StatsHTTPServer
from pktflow.flow.compiler import kernel_bound_objects
from pktflow.flow.graph import FlowError

if TYPE_CHECKING:
    from pktflow.flow.runtime import Runtime
    from pktflow.flow.system import System

# Terminal counters: where a packet's life in the graph ends.
DROP_REASONS = ("stopped", "handler-drop", "handler-error", "splitter-range", "queue-full",
                "tx-error", "malformed", "shutdown")
SENDING_OPS = ("sender", "pcap_writer")


def node_counters(rt: Runtime | None, node_id: int) -> dict[str, Any]:
    """Sum of one node's counters over all its clones, present and retired."""
    total = {"in": 0, "out": 0, "entered": 0, "copy_failed": 0, "dropped": {}}
    if rt is None:
        return total
    sources = [run.c for run in list(rt.runs[node_id])] + [rt.extra[node_id]]
    for c in sources:
        total["in"] += c.inp
        total["out"] += c.out
        total["entered"] += c.entered
        total["copy_failed"] += c.copy_failed
        for reason, n in list(c.drops.items()):
            total["dropped"][reason] = total["dropped"].get(reason, 0) + n
    return total


def conservation(system: System) -> dict[str, Any]:
    """Packets that entered vs packets that ended, by counter; balanced when they match."""
    rt = system._runtime
    entered = {"received": 0, "generated": 0, "copied": 0}
    ended: dict[str, int] = {"sent": 0}
    for node in system._nodes:
        c = node_counters(rt, node.id)
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
    in_rings = sum(len(r) for r in rt.rings.values()) if rt else 0
    total_in = sum(entered.values())
    total_end = sum(ended.values())
    running = rt is not None and not rt.stopped
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


def snapshot(system: System) -> dict[str, Any]:
    """Every counter of the graph and its ports as plain data."""
    rt = system._runtime
    # Graph counters first: a port counts a packet before its receiver node does, so a
    # snapshot that shows the graph done also shows the ports' final counts.
    balance = conservation(system)
    nodes = []
    for node in system._nodes:
        c = node_counters(rt, node.id)
        group = rt.group_of.get(node.id) if rt else None
        entry: dict[str, Any] = {
            "id": node.id,
            "op": node.op,
            "name": node.name,
            "site": node.site,
            "clones": group.clones if group else 0,
            "peak_clones": group.peak if group else 0,
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
        nodes.append(entry)
    ports = {}
    for port in system._all_ports():
        in_table = port.id in system.ports and system.ports[port.id] is port
        ports[str(port.id) if in_table else port.name] = {
            "name": port.name, "mac": str(port.mac), **port.stats.as_dict()}
    rings = [{"name": r.name, "used": len(r), "size": r.size}
             for r in (rt.rings.values() if rt else [])]
    # Rule tables and other kernel-bound objects that report a status (version, load
    # time, last error of a watched file), once each, with the nodes that use them.
    tables: dict[int, dict[str, Any]] = {}
    for node in system._nodes:
        if node.func is None:
            continue
        for obj in kernel_bound_objects(node.func):
            status = getattr(obj, "status", None)
            if callable(status):
                entry = tables.setdefault(id(obj), {**status(), "nodes": []})
                entry["nodes"].append(node.name)
    return {
        "running": system.running,
        "uptime": round(time.monotonic() - rt.started, 3) if rt else 0.0,
        "nodes": nodes,
        "ports": ports,
        "rings": rings,
        "tables": list(tables.values()),
        "conservation": balance,
    }


def log_line(rt: Runtime, last: dict[str, int], interval: float) -> str:
    """One line: received/generated and sent rates, drops, clone counts."""
    nodes = rt.nodes
    now = {"in": 0, "sent": 0, "dropped": 0}
    clones = []
    for node in nodes:
        c = node_counters(rt, node.id)
        if node.is_source:
            now["in"] += c["entered"]
        if node.op in SENDING_OPS:
            now["sent"] += c["out"]
        now["dropped"] += sum(c["dropped"].values())
    for group in rt.groups:
        clones.append(f"{group.plan.name}={group.clones}")
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
    page (/) and its live events (/events), from daemon threads (see pktflow.dashboard)."""

    def __init__(self, system: System, address: tuple[str, int]) -> None:
        board = Board()
        board.attach("nf", system.stats, prometheus)
        try:
            super().__init__(board, address, public=system.config.stats_public)
        except BindError as e:
            raise FlowError(str(e)) from None
