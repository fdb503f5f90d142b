"""The flow graph API: `System` and its flow functions (NFF-Go's, with Pythonic names).

    nf = System(FlowConfig(batch_size=256), PortTable.from_specs(["0=mem:a", "1=mem:b"]))
    f = nf.receiver(0)
    nf.handler(f, swap_macs)          # f continues after the handler
    nf.sender(f, 1)
    with nf:                          # start(); stop() on exit
        time.sleep(1)

Flow functions that work in place (handler, handler_drop, separator, partitioner, copier)
move the given flow on past themselves and return the new flows they create; the ones that
end a flow (sender, stopper, pcap_writer, splitter, merger) close it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from pktflow.flow.compiler import check_signature, compile_node
from pktflow.flow.config import FlowConfig
from pktflow.flow.graph import (
    KERNEL_OPS,
    Flow,
    FlowError,
    Node,
    call_site,
    plan_segments,
    validate,
)
from pktflow.flow.runtime import Runtime
from pktflow.flow.stats import StatsServer, conservation, snapshot
from pktflow.packet.addr import MACAddr
from pktflow.packet.pool import Pool, default_pool
from pktflow.ports.base import DRIVERS, Port, PortError, PortSpecError, PortTable

log = logging.getLogger("pktflow.flow")

# Internal ports (pcap_reader, pcap_writer) get ids below any real port's.
_INTERNAL_PORT_BASE = -1000


class System:
    """One network function: a graph of flow functions over a port table, and its run."""

    def __init__(self, config: FlowConfig | None = None,
                 ports: PortTable | Iterable[str] | None = None) -> None:
        self.config = config or FlowConfig()
        if ports is None:
            ports = PortTable()
        elif not isinstance(ports, PortTable):
            ports = PortTable.from_specs(list(ports))
        self.ports = ports
        if self.config.pool_size is None:
            self.pool = default_pool()
        else:
            self.pool = Pool(self.config.pool_size, name="flow")
        self._nodes: list[Node] = []
        self._flows: list[Flow] = []
        self._internal_ports: list[Port] = []
        self._runtime: Runtime | None = None
        self._server: StatsServer | None = None
        self._lock = threading.Lock()
        self._opened: set[int] = set()
        # Opened now, so peers (tests, generators) can queue packets before start().
        self._open_ports(self.ports)

    # ------------------------------------------------------------------ graph building
    def _node(self, op: str, nout: int, inputs: list[Flow], name: str | None = None,
              **fields: Any) -> Node:
        site = call_site()
        if self._runtime is not None and not self._runtime.stopped:
            raise FlowError(f"{site}: {op}(): the graph cannot change while it runs; "
                            f"stop() and reset() first")
        taken = [self._take(f, op, site) for f in inputs]
        node = Node(id=len(self._nodes), op=op, name=name or "", site=site, nout=nout,
                    inputs=taken, **fields)
        if not node.name:
            node.name = str(len(self._nodes))
        for producer, slot in taken:
            producer.consumers[slot] = node
        self._nodes.append(node)
        return node

    def _take(self, flow: Flow, op: str, site: str) -> tuple[Node, int]:
        if not isinstance(flow, Flow):
            raise FlowError(f"{site}: {op}() takes a flow (from receiver(), generator(), "
                            f"...), got {type(flow).__name__}")
        if flow.owner is not self:
            raise FlowError(f"{site}: {op}(): {flow.describe()} belongs to another System")
        if not flow.open:
            raise FlowError(
                f"{site}: {op}(): {flow.describe()} was already consumed by "
                f"{flow.closed_by.label}; a flow goes to exactly one flow function "
                f"(use copier() to send packets two ways)")
        flow.closed_by = _PENDING
        return flow.node, flow.slot

    def _new_flow(self, node: Node, slot: int) -> Flow:
        flow = Flow(self, node, slot)
        self._flows.append(flow)
        return flow

    def _close(self, flows: list[Flow], node: Node) -> None:
        for f in flows:
            f.closed_by = node

    def _move_on(self, flow: Flow, node: Node) -> None:
        """An in-place flow function: the caller's flow now leaves `node`'s output 0."""
        flow.node, flow.slot, flow.closed_by = node, 0, None

    def _port(self, port_id: int, op: str) -> Port:
        try:
            return self.ports[port_id]
        except PortSpecError as e:
            raise FlowError(f"{call_site()}: {op}({port_id}): {e}") from None

    def _kernel_node(self, op: str, flow: Flow | None, func: Callable, ctx: Any, nout: int,
                     opts: dict[str, Any]) -> Node:
        kind = KERNEL_OPS[op]
        try:
            check_signature(func, kind)
        except TypeError as e:
            raise FlowError(f"{call_site()}: {op}(): {e}") from None
        mode = opts.pop("mode", None) or self.config.mode
        clones = opts.pop("clones", None)
        if clones is not None and (not isinstance(clones, int) or clones < 1
                                   or clones > self.config.max_clones):
            raise FlowError(f"{call_site()}: {op}(): clones={clones!r} must be a whole number "
                            f"from 1 to {self.config.max_clones} (the configured cores)")
        name = opts.pop("name", None) or getattr(func, "__name__", None)
        node = self._node(op, nout, [flow] if flow is not None else [], name=name, func=func,
                          ctx=ctx, mode=mode, clones=clones,
                          persistent=bool(opts.pop("persistent", False)),
                          ordered=bool(opts.pop("ordered", False)), params=opts)
        if flow is not None:
            self._move_on(flow, node)
        return node

    def receiver(self, port_id: int, *, name: str | None = None) -> Flow:
        """A flow of the packets arriving on port `port_id`."""
        port = self._port(port_id, "receiver")
        node = self._node("receiver", 1, [], name=name or f"port {port_id}",
                          port_id=port_id, params={"port": port})
        return self._new_flow(node, 0)

    def sender(self, flow: Flow, port_id: int, *, name: str | None = None) -> None:
        """Send the flow's packets out of port `port_id` (ends the flow)."""
        port = self._port(port_id, "sender")
        node = self._node("sender", 0, [flow], name=name or f"port {port_id}",
                          port_id=port_id, params={"port": port})
        self._close([flow], node)

    def generator(self, fn: Callable, rate: float | None = None, ctx: Any = None,
                  **opts: Any) -> Flow:
        """A flow of packets that `fn(pkt, ctx)` fills in, `rate` packets per second
        (None: as fast as the graph takes them)."""
        return self._generator("generator", fn, rate, ctx, opts)

    def vector_generator(self, fn: Callable, rate: float | None = None, ctx: Any = None,
                         **opts: Any) -> Flow:
        """As generator, with `fn(pkts, ctx)` filling a whole vector of fresh packets."""
        return self._generator("vector_generator", fn, rate, ctx, opts)

    def _generator(self, op: str, fn: Callable, rate: float | None, ctx: Any,
                   opts: dict[str, Any]) -> Flow:
        if rate is not None and (isinstance(rate, bool) or not rate > 0):
            raise FlowError(f"{call_site()}: {op}(): rate={rate!r} must be a positive number "
                            f"of packets per second, or None for as fast as possible")
        opts["rate"] = rate
        node = self._kernel_node(op, None, fn, ctx, 1, opts)
        return self._new_flow(node, 0)

    def handler(self, flow: Flow, fn: Callable, ctx: Any = None, **opts: Any) -> None:
        """Run `fn(pkt, ctx)` on every packet of the flow (which continues after it).
        Options: mode, name, clones, persistent, ordered (see docs/flow.md)."""
        self._kernel_node("handler", flow, fn, ctx, 1, opts)

    def vector_handler(self, flow: Flow, fn: Callable, ctx: Any = None, **opts: Any) -> None:
        """Run `fn(pkts, mask, ctx)` on each vector (batch) of the flow."""
        self._kernel_node("vector_handler", flow, fn, ctx, 1, opts)

    def handler_drop(self, flow: Flow, fn: Callable, ctx: Any = None, **opts: Any) -> None:
        """Keep the packets for which `fn(pkt, ctx)` is true; drop the others (counted)."""
        self._kernel_node("handler_drop", flow, fn, ctx, 1, opts)

    def vector_handler_drop(self, flow: Flow, fn: Callable, ctx: Any = None,
                            **opts: Any) -> None:
        """Keep the packets whose `answers[i]` `fn(pkts, mask, answers, ctx)` sets true."""
        self._kernel_node("vector_handler_drop", flow, fn, ctx, 1, opts)

    def separator(self, flow: Flow, fn: Callable, ctx: Any = None, **opts: Any) -> Flow:
        """Packets for which `fn(pkt, ctx)` is true stay in `flow`; the others go to the
        returned new flow."""
        node = self._kernel_node("separator", flow, fn, ctx, 2, opts)
        return self._new_flow(node, 1)

    def vector_separator(self, flow: Flow, fn: Callable, ctx: Any = None,
                         **opts: Any) -> Flow:
        """As separator, with `fn(pkts, mask, answers, ctx)` answering a whole vector."""
        node = self._kernel_node("vector_separator", flow, fn, ctx, 2, opts)
        return self._new_flow(node, 1)

    def splitter(self, flow: Flow, fn: Callable, n: int, ctx: Any = None,
                 **opts: Any) -> list[Flow]:
        """Split into `n` flows by the index `fn(pkt, ctx)` returns (ends `flow`); an index
        outside 0..n-1 drops the packet, counted as splitter-range."""
        return self._splitter("splitter", flow, fn, n, ctx, opts)

    def vector_splitter(self, flow: Flow, fn: Callable, n: int, ctx: Any = None,
                        **opts: Any) -> list[Flow]:
        """As splitter, with `fn(pkts, mask, answers, ctx)` writing each packet's index."""
        return self._splitter("vector_splitter", flow, fn, n, ctx, opts)

    def _splitter(self, op: str, flow: Flow, fn: Callable, n: int, ctx: Any,
                  opts: dict[str, Any]) -> list[Flow]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise FlowError(f"{call_site()}: {op}(): n={n!r} must be a number of flows >= 1")
        node = self._kernel_node(op, flow, fn, ctx, n, opts)
        flow.closed_by = node
        return [self._new_flow(node, k) for k in range(n)]

    def partitioner(self, flow: Flow, first: int, second: int, *,
                    name: str | None = None) -> Flow:
        """`first` packets stay in `flow`, the next `second` go to the returned flow,
        repeating exactly across batches (order-preserving: never cloned)."""
        for label, value in (("first", first), ("second", second)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FlowError(f"{call_site()}: partitioner(): {label}={value!r} must be a "
                                f"number of packets >= 1")
        node = self._node("partitioner", 2, [flow], name=name,
                          params={"first": first, "second": second}, ordered=True)
        self._move_on(flow, node)
        return self._new_flow(node, 1)

    def merger(self, *flows: Flow, name: str | None = None) -> Flow:
        """One flow of the packets of all `flows`, taking from each in turn (ends them)."""
        if len(flows) < 2:
            raise FlowError(f"{call_site()}: merger() takes two or more flows, got {len(flows)}")
        if len({id(f) for f in flows}) != len(flows):
            raise FlowError(f"{call_site()}: merger(): the same flow is given twice")
        node = self._node("merger", 1, list(flows), name=name)
        self._close(list(flows), node)
        return self._new_flow(node, 0)

    def copier(self, flow: Flow, *, name: str | None = None) -> Flow:
        """A new flow of independent copies of the flow's packets (which continue in
        `flow`); a change to a copy leaves the original as it was."""
        node = self._node("copier", 2, [flow], name=name)
        self._move_on(flow, node)
        return self._new_flow(node, 1)

    def stopper(self, flow: Flow, *, name: str | None = None) -> None:
        """Drop every packet of the flow on purpose (counted as stopped; ends the flow)."""
        node = self._node("stopper", 0, [flow], name=name)
        self._close([flow], node)

    def pcap_reader(self, path: str, repeat: int = 1, *, name: str | None = None) -> Flow:
        """A flow of the packets of a pcap or pcapng file, played `repeat` times (0: for
        ever)."""
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 0:
            raise FlowError(f"{call_site()}: pcap_reader(): repeat={repeat!r} must be a whole "
                            f"number >= 0 (0 plays the file for ever)")
        port = self._pcap_port(str(path), f"{path},repeat={repeat}", "pcap_reader")
        node = self._node("pcap_reader", 1, [], name=name or str(path),
                          params={"port": port, "path": str(path)})
        return self._new_flow(node, 0)

    def pcap_writer(self, flow: Flow, path: str, *, name: str | None = None) -> None:
        """Write the flow's packets to a pcap file (flushed when the system stops)."""
        port = self._pcap_port(str(path), f",{path}", "pcap_writer")
        node = self._node("pcap_writer", 0, [flow], name=name or str(path),
                          params={"port": port, "path": str(path)})
        self._close([flow], node)

    def _pcap_port(self, path: str, args: str, op: str) -> Port:
        if "," in path:
            raise FlowError(f"{call_site()}: {op}(): the path {path!r} contains a comma, "
                            f"which pcap port specs use as a separator; rename the file")
        if "pcap" not in DRIVERS:
            PortTable.from_specs([])  # loads the built-in drivers
        port_id = _INTERNAL_PORT_BASE - len(self._internal_ports)
        try:
            port = DRIVERS["pcap"](port_id, args)
        except (PortError, PortSpecError) as e:
            raise FlowError(f"{call_site()}: {op}(): {e}") from None
        self._internal_ports.append(port)
        self._open_ports([port])
        return port

    def _open_ports(self, ports: Iterable[Port]) -> None:
        for port in ports:
            if id(port) not in self._opened:
                port.open(self.pool)
                self._opened.add(id(port))

    def port_mac(self, port_id: int) -> MACAddr:
        """The MAC address of port `port_id`."""
        return self._port(port_id, "port_mac").mac

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        return self._runtime is not None and not self._runtime.stopped

    def validate(self) -> None:
        """Check the graph (raises FlowError) and compile every user function."""
        validate(self._nodes, self._flows)
        plan_segments(self._nodes)
        for node in self._nodes:
            if node.func is not None and node.kernel is None:
                node.kernel = compile_node(node.func, KERNEL_OPS[node.op], node.ctx,
                                           node.mode, name=f"{node.op} {node.name}")

    def start(self) -> None:
        """Validate, open the ports, start the workers, the scheduler and the stats server."""
        with self._lock:
            if self.running:
                raise FlowError("start(): the system is already running")
            if self._runtime is not None:
                raise FlowError("start(): the system ran before; call reset() and build a "
                                "graph again")
            self.validate()
            plans = plan_segments(self._nodes)
            self._open_ports(self._all_ports())
            self._runtime = Runtime(self.config, self.pool, plans, self._nodes)
            if self.config.stats is not None and self._server is None:
                self._server = StatsServer(self.stats, self.config.stats,
                                           public=self.config.stats_public)
                host, port = self._server.address
                log.info("dashboard on http://%s:%d/ (JSON /stats, Prometheus /metrics)",
                         host, port)
            self._runtime.start()

    def stop(self) -> dict[str, Any]:
        """Stop receiving, drain the rings, flush pcap writers; returns the final counters."""
        with self._lock:
            rt = self._runtime
            if rt is not None and not rt.stopped:
                rt.stop()
                for port in self._internal_ports:
                    port.close()  # pcap files are flushed on close
                for port in self.ports:
                    port.flush()
        return self.stats()

    def reset(self) -> None:
        """Stop if running and remove every flow function, keeping the ports."""
        self.stop()
        with self._lock:
            for port in self._internal_ports:
                port.close()
                self._opened.discard(id(port))
            self._internal_ports.clear()
            self._nodes.clear()
            self._flows.clear()
            self._runtime = None

    def close(self) -> None:
        """Stop, then close the ports and the statistics server."""
        self.stop()
        if self._server is not None:
            self._server.close()
            self._server = None
        self.ports.close()
        for port in self._internal_ports:
            port.close()

    def run(self, duration: float | None = None, *, until_idle: float | None = None,
            ) -> dict[str, Any]:
        """Start, run for `duration` seconds (None: until Ctrl-C), stop; returns the final
        counters. With `until_idle`, stop earlier once no packet moved for that long. A
        graph whose every source is finite (pcap files) stops once they are played and
        the graph has drained."""
        if not self.running:
            self.start()
        rt = self._runtime
        assert rt is not None
        deadline = None if duration is None else time.monotonic() + duration
        last, quiet_since = -1, time.monotonic()
        previous = _sigterm_as_interrupt()
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.01 if until_idle is not None else 0.05)
                if self._sources_exhausted() and rt.quiet():
                    break
                if until_idle is None:
                    continue
                seen = rt.activity
                now = time.monotonic()
                if seen != last or not rt.quiet():
                    last, quiet_since = seen, now
                elif now - quiet_since >= until_idle:
                    break
        except KeyboardInterrupt:
            log.info("interrupted: stopping and draining")
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return self.stop()

    def _sources_exhausted(self) -> bool:
        """True when every source of the graph is a port that has nothing more to give."""
        sources = [n for n in self._nodes if n.op in ("receiver", "pcap_reader",
                                                     "generator", "vector_generator")]
        return bool(sources) and all(
            n.op in ("receiver", "pcap_reader") and n.params["port"].at_end for n in sources)

    def stats(self) -> dict[str, Any]:
        """A snapshot of every counter (plain dicts): nodes, ports, rings, conservation."""
        rt = self._runtime
        run = rt.counters() if rt else None  # before the ports: see snapshot()
        ports = {}
        for port in self._all_ports():
            in_table = port.id in self.ports and self.ports[port.id] is port
            ports[str(port.id) if in_table else port.name] = port
        return snapshot(self._nodes, run, ports)

    def check_conservation(self) -> dict[str, Any]:
        """Sums of entered and ended packets by counter and whether they add up (exact
        once stopped; while running packets inside the workers are still in flight)."""
        rt = self._runtime
        return conservation(self._nodes, rt.counters() if rt else None)

    @property
    def stats_address(self) -> tuple[str, int] | None:
        """(host, port) the statistics server listens on, if it runs."""
        return self._server.address if self._server else None

    def _all_ports(self) -> list[Port]:
        used = {id(n.params["port"]): n.params["port"] for n in self._nodes
                if "port" in n.params}
        for port in self.ports:
            used.setdefault(id(port), port)
        return list(used.values())

    def __enter__(self) -> System:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<System {len(self._nodes)} nodes, {len(self.ports)} ports, {state}>"


def _sigterm_as_interrupt() -> Any:
    """Make SIGTERM (kill, systemd, docker stop) stop a running NF as Ctrl-C does: drained
    and counted. Only from the main thread and only over the default action; returns the
    handler to restore, None when nothing changed."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


class _Pending:
    """Marks a flow being consumed while its consumer node is created."""

    label = "a flow function that failed to build"


_PENDING: Any = _Pending()
