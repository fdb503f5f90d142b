"""The running graph: per-clone node instances, segment threads, the scheduler, shutdown.

Each segment (see `graph.plan_segments`) runs on one worker thread per clone: poll the
segment's source for a batch, then call each node's `process(idx, n)` down the tree. A node
calls its user kernel once per batch (the kernel releases the GIL), sorts the batch by
verdict in one compiled call (`split_batch`) and hands each bucket to the next node. Sinks
give packets to ports, rings or the pool. The scheduler thread clones a segment whose busy
clones do not keep up with its input (a backlog that grows, stays near full, or drains too
slowly) and retires clones that idle.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pktflow.flow.batchops import (
    copy_packets,
    partition_verdicts,
    split_batch,
    stamp,
)
from pktflow.flow.compiler import copy_context
from pktflow.flow.config import FlowConfig
from pktflow.flow.graph import GENERATORS, Node, SegmentPlan
from pktflow.flow.kinds import VERDICT_ERROR
from pktflow.flow.ring import Ring
from pktflow.flow.stats import RunCounters, log_line, new_node_totals
from pktflow.packet.parse import parse_batch
from pktflow.packet.pool import Batch, Pool
from pktflow.ports.base import Port

log = logging.getLogger("pktflow.flow")

IDLE_SLEEP_MIN = 20e-6  # first sleep of a worker that found nothing to do
IDLE_SLEEP_MAX = 1e-3  # longest: bounds the latency an idle receiver adds
ERROR_LOG_INTERVAL = 10.0  # seconds between tracebacks logged for one node
DRAIN_TIMEOUT = 10.0  # seconds stop() waits for rings to empty
# Scheduler thresholds (fractions of the interval a segment's clones were busy)
RETIRE_BUSY = 0.3
CLONE_BUSY = 0.5
# An input this full (of its rings, or of the pool for a port's queue) is a sign of a
# segment that does not keep up even when the backlog stays flat: a source held back by a
# full ring or an empty pool cannot make it grow any more.
HIGH_WATER = 0.75
# A backlog the clones would need more than this many intervals to empty (at the rate they
# handled packets in the last one) also asks for a clone, even while it shrinks.
DRAIN_INTERVALS = 2


class Counters:
    """What one clone of one node saw; the statistics sum them over clones."""

    __slots__ = ("inp", "out", "drops", "entered", "copy_failed")

    def __init__(self) -> None:
        self.inp = 0  # packets handed to the node (received or generated for sources)
        self.out = 0  # packets passed on (to the next nodes, or sent for sinks)
        self.drops: dict[str, int] = {}
        self.entered = 0  # packets this node brought into the graph
        self.copy_failed = 0  # copies the copier could not make (pool empty)

    def drop(self, reason: str, n: int) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n


class ErrorLog:
    """Rate-limited tracebacks of one node's user function."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.last = 0.0
        self.suppressed = 0
        self.lock = threading.Lock()

    def report(self, count: int, text: Callable[[], str]) -> None:
        now = time.monotonic()
        with self.lock:
            if now - self.last < ERROR_LOG_INTERVAL:
                self.suppressed += count
                return
            self.last, suppressed, self.suppressed = now, self.suppressed, 0
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        log.error("%s raised for %d packet(s)%s; they are dropped as handler-error:\n%s",
                  self.label, count, more, text())


class Runtime:
    """Everything one start() of a System builds, runs and tears down."""

    def __init__(self, config: FlowConfig, pool: Pool, plans: list[SegmentPlan],
                 nodes: list[Node]) -> None:
        self.config = config
        self.pool = pool
        self.nodes = nodes
        self.capacity = config.batch_size
        self.runs: dict[int, list[NodeRun]] = {node.id: [] for node in nodes}
        # Drops counted outside a node's own thread (full rings, shutdown), under a lock.
        self.extra: dict[int, Counters] = {node.id: Counters() for node in nodes}
        self.extra_lock = threading.Lock()
        self.errors = {node.id: ErrorLog(node.label) for node in nodes}
        self.port_locks: dict[int, tuple[threading.Lock, threading.Lock]] = {}
        self.rings: dict[tuple[int, int], Ring] = {}  # (consumer id, input number) -> ring
        for node in nodes:
            if node.ring_input:
                for k, (producer, _slot) in enumerate(node.inputs):
                    self.rings[(node.id, k)] = Ring(
                        config.ring_size, f"{producer.label} -> {node.label}")
        self.groups = [SegmentGroup(self, plan) for plan in plans]
        self.group_of = {n.id: g for g in self.groups for n in g.plan.nodes}
        self.started = time.monotonic()
        self.stopped = False
        self._sched_stop = threading.Event()
        self._sched: threading.Thread | None = None

    def locks(self, port: Port) -> tuple[threading.Lock, threading.Lock]:
        """(receive lock, send lock) of a port, shared by every clone and node using it."""
        key = id(port)
        if key not in self.port_locks:
            self.port_locks[key] = (threading.Lock(), threading.Lock())
        return self.port_locks[key]

    def free(self, scratch: Batch, idx: np.ndarray, n: int) -> None:
        """Return `idx[:n]` to the pool (through a reusable batch object)."""
        if n > 0:
            scratch.idx = idx
            scratch.n = n
            self.pool.free(scratch)

    def count_extra(self, node_id: int, reason: str, n: int) -> None:
        with self.extra_lock:
            self.extra[node_id].drop(reason, n)

    def node_totals(self, node_id: int) -> dict[str, Any]:
        """Sum of one node's counters over all its clones, present and retired."""
        total = new_node_totals()
        sources = [run.c for run in list(self.runs[node_id])] + [self.extra[node_id]]
        for c in sources:
            total["in"] += c.inp
            total["out"] += c.out
            total["entered"] += c.entered
            total["copy_failed"] += c.copy_failed
            for reason, n in list(c.drops.items()):
                total["dropped"][reason] = total["dropped"].get(reason, 0) + n
        return total

    def counters(self) -> RunCounters:
        """Every node's totals, clone counts and ring fill, read now (for the statistics)."""
        return RunCounters(
            nodes={node.id: self.node_totals(node.id) for node in self.nodes},
            clones={node_id: (group.clones, group.peak)
                    for node_id, group in self.group_of.items()},
            segments=[(group.plan.name, group.clones) for group in self.groups],
            rings=[{"name": r.name, "used": len(r), "size": r.size}
                   for r in self.rings.values()],
            uptime=time.monotonic() - self.started,
            running=not self.stopped,
        )

    @property
    def activity(self) -> int:
        """Packets polled by every clone so far (for idle detection)."""
        return sum(run.packets for g in self.groups for run in g.active + g.retired)

    def quiet(self) -> bool:
        """No clone inside a batch, no packet waiting in a ring or at a receiving port."""
        for group in self.groups:
            if any(run.busy for run in group.active) or group.backlog():
                return False
        return True

    # Lifecycle
    def start(self) -> None:
        warm_up()
        for group in self.groups:
            count = group.plan.fixed_clones or 1
            for _ in range(count):
                group.add_clone()
        self._sched = threading.Thread(target=self._schedule, name="pktflow-scheduler",
                                       daemon=True)
        self._sched.start()

    def stop(self) -> None:
        """Stop sources, let ring-fed segments empty their rings, then stop them."""
        if self.stopped:
            return
        self._sched_stop.set()
        if self._sched is not None:
            self._sched.join()
        stopped: set[int] = set()
        for i, group in enumerate(self.groups):
            if not group.plan.root.ring_input:
                group.stop_all()
                stopped.add(i)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while len(stopped) < len(self.groups):
            progressed = False
            for i, group in enumerate(self.groups):
                if i in stopped:
                    continue
                upstream_done = all(self.groups.index(u) in stopped for u in group.upstream())
                if upstream_done and (group.backlog() == 0 or time.monotonic() > deadline):
                    group.stop_all()
                    stopped.add(i)
                    progressed = True
            if not progressed:
                time.sleep(0.001)
        for key, ring in self.rings.items():
            left = len(ring)
            if left:  # only after DRAIN_TIMEOUT: a segment that never finished
                batch = Batch(self.pool, left)
                batch.n = ring.pop(batch.idx, 0, left)
                self.pool.free(batch)
                self.count_extra(key[0], "shutdown", left)
        self.stopped = True

    def _schedule(self) -> None:
        interval = self.config.scheduler_interval
        next_log = time.monotonic() + (self.config.log_interval or float("inf"))
        last_line: dict[str, int] = {}
        while not self._sched_stop.wait(interval):
            for group in self.groups:
                try:
                    group.rescale(interval)
                except Exception:  # the scheduler must outlive any single decision
                    log.exception("scheduler: rescaling %s failed", group.plan.name)
            if time.monotonic() >= next_log:
                next_log += self.config.log_interval
                log.info("%s", log_line(self.nodes, self.counters(), last_line,
                                        self.config.log_interval))


class SegmentGroup:
    """All clones of one segment and the scheduler's view of their load."""

    def __init__(self, rt: Runtime, plan: SegmentPlan) -> None:
        self.rt = rt
        self.plan = plan
        self.active: list[SegmentRun] = []
        self.retired: list[SegmentRun] = []
        self.clones_made = 0
        self.last_backlog: int | None = None  # no sample yet
        self.last_polled = 0  # packets every clone had polled at the last rescale
        self.full_intervals = 0
        self.peak = 0
        self.idle_intervals = 0
        self.lock = threading.Lock()

    @property
    def clones(self) -> int:
        return len(self.active)

    def upstream(self) -> list[SegmentGroup]:
        """Segments that feed this one's rings."""
        root = self.plan.root
        if not root.ring_input:
            return []
        return [self.rt.group_of[p.id] for p, _slot in root.inputs]

    def input_rings(self) -> list[Ring]:
        root = self.plan.root
        if not root.ring_input:
            return []
        return [self.rt.rings[(root.id, k)] for k in range(len(root.inputs))]

    def backlog(self) -> int:
        """Packets waiting at this segment's input (rings, or a port that can tell)."""
        rings = self.input_rings()
        if rings:
            return sum(len(r) for r in rings)
        port = self.plan.root.params.get("port")
        return port.queued if port is not None else 0

    def capacity(self) -> int:
        """The most packets that can wait at this segment's input: its rings' sizes, or
        a port's queue capacity (at most the pool: no queue holds more packets than exist)."""
        rings = self.input_rings()
        if rings:
            return sum(r.size for r in rings)
        port = self.plan.root.params.get("port")
        limit = port.queue_capacity if port is not None else None
        return min(limit, self.rt.pool.buffers) if limit else self.rt.pool.buffers

    def polled(self) -> int:
        """Packets every clone of this segment, retired ones included, has taken in."""
        with self.lock:
            return sum(run.packets for run in self.active + self.retired)

    def add_clone(self) -> SegmentRun:
        with self.lock:
            run = SegmentRun(self, self.clones_made)
            self.clones_made += 1
            self.active.append(run)
            self.peak = max(self.peak, len(self.active))
        run.start()
        return run

    def retire_clone(self) -> None:
        with self.lock:
            run = self.active.pop()
            self.retired.append(run)
        run.stop()

    def stop_all(self) -> None:
        with self.lock:
            runs, self.active = self.active, []
            self.retired.extend(runs)
        for run in runs:
            run.request_stop()
        for run in runs:
            run.join()

    def rescale(self, interval: float) -> None:
        """Clone when the input backlog shows the clones do not keep up; retire a clone
        after idle intervals."""
        busy = [run.take_busy() for run in self.active]
        backlog = self.backlog()
        polled = self.polled()
        handled, self.last_polled = polled - self.last_polled, polled
        behind = backlog >= 2 * self.rt.capacity and (
            # growing, or not shrinking (a queue that is full cannot grow any more)
            (self.last_backlog is not None and backlog >= self.last_backlog)
            # near full: a source held back by a full queue or a dry pool leaves the
            # backlog flat with noise, sometimes a little lower than the last sample
            or backlog >= HIGH_WATER * self.capacity()
            # shrinking, but too slowly: more than DRAIN_INTERVALS intervals of work left
            or backlog > DRAIN_INTERVALS * handled)
        self.last_backlog = backlog
        plan = self.plan
        if not plan.clonable or plan.fixed_clones is not None or not busy:
            return
        load = sum(busy) / interval
        # More clones help only if the clones are busy; a starved worker (the CPU taken by
        # other processes) shows a backlog while idle.
        if behind and load >= CLONE_BUSY * self.clones:
            self.full_intervals += 1
            self.idle_intervals = 0
            # Two intervals in a row: a burst that the clones are already draining is not
            # a reason to clone.
            if self.full_intervals >= 2 and self.clones < self.rt.config.max_clones:
                self.add_clone()
                log.info("scheduler: %s gets clone %d (input backlog %d packets, %d handled "
                         "in the last interval)", plan.name, self.clones, backlog, handled)
                self.full_intervals = 0
            return
        self.full_intervals = 0
        if self.clones > 1 and not plan.persistent and load < (self.clones - 1) * RETIRE_BUSY:
            self.idle_intervals += 1
            if self.idle_intervals >= 2:
                self.retire_clone()
                self.idle_intervals = 0
                log.info("scheduler: %s retires a clone, %d left", plan.name, self.clones)
        else:
            self.idle_intervals = 0


class SegmentRun:
    """One clone of a segment: its own node instances (and user contexts) and thread."""

    def __init__(self, group: SegmentGroup, number: int) -> None:
        self.group = group
        self.number = number
        rt = group.rt
        self.batch = Batch(rt.pool, rt.capacity)
        runs: dict[int, NodeRun] = {}
        # Build leaves first so each node can be given its children.
        for node in reversed(group.plan.nodes):
            runs[node.id] = make_run(rt, node, number, runs)
        root = group.plan.root
        self.root = runs[root.id]
        self.source: Source = (RingSource(rt, group.input_rings(), self.root)
                               if root.ring_input else self.root)  # type: ignore[assignment]
        self._stop = threading.Event()
        self._busy_ns = 0
        self.busy = False  # inside a batch right now
        self.packets = 0
        self._thread = threading.Thread(
            target=self._loop, name=f"pktflow-{group.plan.name}-{number}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self.request_stop()
        self.join()

    def join(self) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def take_busy(self) -> float:
        """Seconds spent processing since the last call."""
        ns, self._busy_ns = self._busy_ns, 0
        return ns / 1e9

    def step(self) -> int:
        """Poll the source once and run what it gave through the segment; returns the
        number of packets (the worker loop does the same, inlined)."""
        batch = self.batch
        batch.n = 0
        self.busy = True
        try:
            n = self.source.poll(batch)
            if n:
                self.packets += n
                self.root.process(batch.idx, n)
                batch.n = 0
        finally:
            self.busy = False
        return n

    def _loop(self) -> None:
        cores = self.group.rt.config.cores
        try:
            os.sched_setaffinity(0, cores)  # pid 0: this thread only
        except OSError as e:
            log.warning("worker %s: cannot pin to cores %s: %s", self._thread.name, cores, e)
        sleep = IDLE_SLEEP_MIN
        stopping = self._stop.is_set
        clock = time.perf_counter_ns
        # Everything the loop touches per batch is a local: it runs millions of times.
        batch = self.batch
        idx = batch.idx
        poll = self.source.poll
        process = self.root.process
        while not stopping():
            t0 = clock()
            batch.n = 0
            self.busy = True
            try:
                n = poll(batch)
                if n:
                    self.packets += n
                    process(idx, n)
            except Exception:  # a bug below must not silently kill the worker
                log.exception("worker %s: batch failed", self._thread.name)
                n = 0
            self.busy = False
            if n:
                self._busy_ns += clock() - t0
                sleep = IDLE_SLEEP_MIN
            else:
                time.sleep(sleep)
                sleep = min(sleep * 2, IDLE_SLEEP_MAX)


# Node instances -----------------------------------------------------------------------


class NodeRun:
    """One clone's instance of a node; `process(idx, n)` takes ownership of the packets."""

    def __init__(self, rt: Runtime, node: Node) -> None:
        self.rt = rt
        self.node = node
        self.c = Counters()
        self.children: list[NodeRun] = []
        self.scratch = Batch(rt.pool, 1)
        rt.runs[node.id].append(self)

    def process(self, idx: np.ndarray, n: int) -> None:
        raise NotImplementedError

    def discard(self, idx: np.ndarray, n: int, reason: str) -> None:
        """Free packets and count them under `reason` on this node."""
        if n > 0:
            self.c.drop(reason, n)
            self.rt.free(self.scratch, idx, n)


class Source:
    """Something a segment polls for its next batch."""

    def poll(self, batch: Batch) -> int:
        raise NotImplementedError


class KernelRun(NodeRun):
    """handler, handler_drop, separator, splitter and their vector forms."""

    # Where each verdict goes: output slot per verdict value (see split_batch).
    def __init__(self, rt: Runtime, node: Node, ctx: Any, vmap: list[int], drop_slot: int,
                 children: list[NodeRun]) -> None:
        super().__init__(rt, node)
        self.kernel = node.kernel
        self.ctx = ctx
        self.children = children
        self.vmap = np.array(vmap, dtype=np.int32)
        nslots = max(vmap) + 1 if vmap else 1
        self.drop_slot = drop_slot  # handler_drop's "false" bucket, -1 if none
        self.verdict = np.zeros(rt.capacity, dtype=np.int32)
        self.buckets = np.empty((nslots + 2, rt.capacity), dtype=np.int32)
        self.bucket_rows = list(self.buckets)  # row views made once, not per batch
        self.counts = np.zeros(nslots + 2, dtype=np.int64)
        self.errors = rt.errors[node.id]
        self.pool = rt.pool
        # Handlers and generators give verdict 0 to every packet that did not raise: when
        # none raised, the batch goes on as it is, without sorting it by verdict.
        self.passthrough = vmap == [0] and drop_slot < 0 and len(children) == 1

    def run_kernel(self, idx: np.ndarray, n: int) -> int:
        """The user kernel over `idx[:n]`; returns its error count (verdicts in place)."""
        try:
            return self.kernel.run(self.pool, idx, n, self.verdict, self.ctx)
        except Exception as exc:
            return self.kernel_failed(exc, n)

    def kernel_failed(self, exc: Exception, n: int) -> int:
        """An exception escaped the kernel's own per-packet handling: the batch is in an
        unknown state, so all of it is dropped as handler-error (and reported)."""
        self.verdict[:n] = VERDICT_ERROR
        text = f"{type(exc).__name__}: {exc}\n{self.kernel.last_error()}"
        self.errors.report(n, lambda: text)
        return -n

    def process(self, idx: np.ndarray, n: int) -> None:
        c = self.c
        c.inp += n
        try:  # run_kernel, inlined: this is the hot path
            errors = self.kernel.run(self.pool, idx, n, self.verdict, self.ctx)
        except Exception as exc:
            errors = self.kernel_failed(exc, n)
        if errors == 0 and self.passthrough:
            c.out += n
            self.children[0].process(idx, n)
            return
        if errors > 0:
            self.errors.report(errors, self.kernel.last_error)
        self.dispatch(idx, n)

    def dispatch(self, idx: np.ndarray, n: int) -> None:
        counts = self.counts
        rows = self.bucket_rows
        split_batch(idx, n, self.verdict, self.vmap, self.buckets, counts)
        sizes = counts.tolist()
        nb = len(sizes)
        passed = 0
        for s in range(nb - 2):
            k = sizes[s]
            if k:
                if s == self.drop_slot:
                    self.discard(rows[s], k, "handler-drop")
                else:
                    passed += k
                    self.children[s].process(rows[s], k)
        self.c.out += passed
        if sizes[nb - 2]:
            self.discard(rows[nb - 2], sizes[nb - 2], "handler-error")
        if sizes[nb - 1]:
            self.discard(rows[nb - 1], sizes[nb - 1], "splitter-range")


class GeneratorRun(KernelRun, Source):
    """Fills fresh buffers with the user function at a target rate (packets per second)."""

    def __init__(self, rt: Runtime, node: Node, ctx: Any, children: list[NodeRun]) -> None:
        super().__init__(rt, node, ctx, [0], -1, children)
        self.rate = node.params.get("rate")
        self.tokens = 0.0
        self.last = time.monotonic()

    def poll(self, batch: Batch) -> int:
        want = batch.capacity
        if self.rate:
            now = time.monotonic()
            self.tokens = min(self.tokens + (now - self.last) * self.rate, float(want))
            self.last = now
            want = int(self.tokens)
            if want < 1:
                return 0
        got = self.rt.pool.alloc_into(batch, want)
        if got and self.rate:
            self.tokens -= got
        return got

    def process(self, idx: np.ndarray, n: int) -> None:
        c = self.c
        c.inp += n
        c.entered += n
        errors = self.run_kernel(idx, n)
        if errors > 0:
            self.errors.report(errors, self.kernel.last_error)
        pool = self.pool
        parse_batch(pool.data, pool.meta, idx, n)
        stamp(pool.ts, idx, n, time.time_ns())
        if errors == 0 and self.passthrough:
            self.c.out += n
            self.children[0].process(idx, n)
            return
        self.dispatch(idx, n)


class PortReceiveRun(NodeRun, Source):
    """receiver and pcap_reader: poll a port (under its receive lock), parse, pass on."""

    def __init__(self, rt: Runtime, node: Node, children: list[NodeRun]) -> None:
        super().__init__(rt, node)
        self.port: Port = node.params["port"]
        self.lock = rt.locks(self.port)[0]
        self.children = children
        self.recv = self.port.recv
        self.data = rt.pool.data
        self.meta = rt.pool.meta

    def poll(self, batch: Batch) -> int:
        with self.lock:
            n = self.recv(batch, len(batch.idx))
        if n:
            parse_batch(self.data, self.meta, batch.idx, n)
            c = self.c
            c.inp += n
            c.entered += n
        return n

    def process(self, idx: np.ndarray, n: int) -> None:
        self.c.out += n
        self.children[0].process(idx, n)


class RingSource(Source):
    """Pops batches from a segment's input rings, taking turns so mergers are fair."""

    def __init__(self, rt: Runtime, rings: list[Ring], root: NodeRun) -> None:
        self.rings = rings
        self.turn = 0

    def poll(self, batch: Batch) -> int:
        rings = self.rings
        count = len(rings)
        got = 0
        for k in range(count):
            ring = rings[(self.turn + k) % count]
            got += ring.pop(batch.idx, got, batch.capacity - got)
            if got == batch.capacity:
                break
        self.turn = (self.turn + 1) % count
        batch.n = got
        return got


class PassRun(NodeRun):
    """merger: counts what passes on to its one output."""

    def process(self, idx: np.ndarray, n: int) -> None:
        self.c.inp += n
        self.c.out += n
        self.children[0].process(idx, n)


class PartitionerRun(KernelRun):
    """first packets to output 0, then second to output 1, repeating exactly."""

    def __init__(self, rt: Runtime, node: Node, children: list[NodeRun]) -> None:
        super().__init__(rt, node, None, [0, 1], -1, children)
        self.first = int(node.params["first"])
        self.second = int(node.params["second"])
        self.pos = 0

    def process(self, idx: np.ndarray, n: int) -> None:
        self.c.inp += n
        self.pos = partition_verdicts(n, self.pos, self.first, self.second, self.verdict)
        self.dispatch(idx, n)


class CopierRun(NodeRun):
    """Passes the packets on output 0 and independent copies of them on output 1."""

    def __init__(self, rt: Runtime, node: Node, children: list[NodeRun]) -> None:
        super().__init__(rt, node)
        self.children = children
        self.copies = Batch(rt.pool, rt.capacity)

    def process(self, idx: np.ndarray, n: int) -> None:
        c = self.c
        c.inp += n
        pool = self.rt.pool
        copies = self.copies
        copies.n = 0
        got = pool.alloc_into(copies, n)
        copy_packets(pool.data, pool.meta, pool.ts, idx, copies.idx, got)
        c.entered += got
        c.copy_failed += n - got
        c.out += n + got
        self.children[0].process(idx, n)
        if got:
            self.children[1].process(copies.idx, got)
        copies.n = 0


class PortSendRun(NodeRun):
    """sender and pcap_writer: hand the batch to the port under its send lock."""

    def __init__(self, rt: Runtime, node: Node) -> None:
        super().__init__(rt, node)
        self.port: Port = node.params["port"]
        self.lock = rt.locks(self.port)[1]
        self.batch = Batch(rt.pool, 1)
        self.send = self.port.send

    def process(self, idx: np.ndarray, n: int) -> None:
        batch = self.batch
        batch.idx = idx
        batch.n = n
        with self.lock:
            sent = self.send(batch)
        c = self.c
        c.inp += n
        c.out += sent
        if sent < n:
            c.drop("tx-error", n - sent)


class StopperRun(NodeRun):
    """Drops every packet on purpose."""

    def process(self, idx: np.ndarray, n: int) -> None:
        self.c.inp += n
        self.discard(idx, n, "stopped")


class RingPushRun(NodeRun):
    """The end of a segment that feeds a ring; waits up to ring_wait, then drops."""

    def __init__(self, rt: Runtime, ring: Ring, owner_id: int) -> None:
        self.rt = rt
        self.ring = ring
        self.owner_id = owner_id
        self.scratch = Batch(rt.pool, 1)
        self.wait = rt.config.ring_wait

    def process(self, idx: np.ndarray, n: int) -> None:
        ring = self.ring
        done = ring.push(idx, 0, n)
        if done < n:
            deadline = time.monotonic() + self.wait
            pause = IDLE_SLEEP_MIN
            while done < n and time.monotonic() < deadline:
                time.sleep(pause)
                pause = min(pause * 2, IDLE_SLEEP_MAX)
                done += ring.push(idx, done, n - done)
        if done < n:
            # Counted on the node that owns the ring (the merger or the generator).
            self.rt.count_extra(self.owner_id, "queue-full", n - done)
            self.rt.free(self.scratch, idx[done:], n - done)


def warm_up() -> None:
    """Load (or compile, the first time on a machine) the batch helpers before workers
    start, so no first batch stalls on it."""
    idx = np.zeros(1, dtype=np.int32)
    verdict = np.zeros(1, dtype=np.int32)
    buckets = np.zeros((3, 1), dtype=np.int32)
    counts = np.zeros(3, dtype=np.int64)
    split_batch(idx, 0, verdict, np.zeros(1, dtype=np.int32), buckets, counts)
    partition_verdicts(0, 0, 1, 1, verdict)
    data = np.zeros((1, 64), dtype=np.uint8)
    meta = np.zeros((1, 16), dtype=np.int32)
    ts = np.zeros(1, dtype=np.int64)
    copy_packets(data, meta, ts, idx, idx, 0)
    stamp(ts, idx, 0, 0)
    parse_batch(data, meta, idx, 0)
    Ring(1, "warm-up").push(idx, 0, 0)


def make_run(rt: Runtime, node: Node, clone: int, runs: dict[int, NodeRun]) -> NodeRun:
    """The instance of `node` for clone number `clone`; its children are in `runs`."""
    children: list[NodeRun] = []
    for slot, consumer in enumerate(node.consumers):
        assert consumer is not None
        if consumer.ring_input:
            k = next(i for i, (p, s) in enumerate(consumer.inputs) if p is node and s == slot)
            owner = consumer if consumer.op == "merger" else node
            children.append(RingPushRun(rt, rt.rings[(consumer.id, k)], owner.id))
        else:
            children.append(runs[consumer.id])
    ctx = node.ctx if clone == 0 else copy_context(node.ctx)
    op = node.op
    if op in GENERATORS:
        return GeneratorRun(rt, node, ctx, children)
    if op in ("receiver", "pcap_reader"):
        return PortReceiveRun(rt, node, children)
    if op in ("sender", "pcap_writer"):
        return PortSendRun(rt, node)
    if op == "stopper":
        return StopperRun(rt, node)
    if op == "merger":
        run = PassRun(rt, node)
        run.children = children
        return run
    if op == "partitioner":
        return PartitionerRun(rt, node, children)
    if op == "copier":
        return CopierRun(rt, node, children)
    if op in ("handler", "vector_handler"):
        return KernelRun(rt, node, ctx, [0], -1, children)
    if op in ("handler_drop", "vector_handler_drop"):
        return KernelRun(rt, node, ctx, [1, 0], 1, children + [None])  # type: ignore[list-item]
    if op in ("separator", "vector_separator"):
        return KernelRun(rt, node, ctx, [1, 0], -1, children)
    if op in ("splitter", "vector_splitter"):
        return KernelRun(rt, node, ctx, list(range(node.nout)), -1, children)
    raise AssertionError(f"no runtime for {op}")
