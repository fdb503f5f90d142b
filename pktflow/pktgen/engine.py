"""The generator engine: one worker thread per port that transmits and counts receptions.

Each worker loops: when its port is sending, it takes up to TX_ROUND buffers from the
pool, fills them with one compiled call (template synthesis, or pcap records streamed
straight into the buffers), and hands them to the port burst by burst (`set burst`); then
it receives whatever arrived and counts it with one compiled call. Receiving goes on after
transmission stops, until the engine is closed, so replies that arrive late are still
counted. Python thus runs once per round of up to a thousand packets, not per burst.

Rate control is a token bucket checked once per round: in percent mode the tokens are
wire bytes (frame + FCS + preamble + inter-frame gap, as Pktgen counts line rate), in pps
mode they are packets. An empty pool pauses transmission; the pause is counted, shown
and logged. `Engine` knows ports, settings and counters only: the command language
(`commands.py`), its pages and the `Pktgen` session that joins them live above it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Self

import numpy as np

from pktflow.packet import meta as M
from pktflow.packet.pcap import PcapError, PcapReader
from pktflow.packet.pool import Batch, Pool, default_pool
from pktflow.pktgen.config import (
    DEFAULT_SPEED_MBPS,
    F_SIZE,
    FCS_LEN,
    MAX_BURST,
    WIRE_OVERHEAD,
    PortConfig,
    Template,
    build_template,
    default_config,
    words_view,
)
from pktflow.pktgen.kernels import (
    HIST_LABELS,
    RX_BCAST,
    RX_BYTES,
    RX_HIST,
    RX_JUMBO,
    RX_MAX,
    RX_MCAST,
    RX_MIN,
    RX_PKTS,
    RX_RUNT,
    new_rx_accumulator,
    rx_account,
    synth_batch,
)
from pktflow.ports.base import Port, PortTable

RX_BURST = 256
TX_ROUND = 1024  # packets one Python round makes at most: several bursts, one kernel call
IDLE_MIN_S = 50e-6
IDLE_MAX_S = 1e-3
BUCKET_DEPTH_S = 0.02  # credit a sender may bank across a late wake-up (keeps the average)
SAMPLE_PERIOD_S = 1.0
STALL_LOG_PERIOD_S = 5.0  # at most one "no free buffer" log line per port this often
RX_RETRY_S = 0.1  # after a receive error, wait this long before receiving again
FRAME_OVERHEAD = FCS_LEN + WIRE_OVERHEAD  # bytes on the wire beyond the frame itself

log = logging.getLogger(__name__)


class PktgenError(RuntimeError):
    """A generator request cannot be done (unknown port, no pcap file); says why."""


class PortWorker:
    """Transmit and receive on one port from one thread; counters change once per round.

    The worker thread survives every failure: a transmit error stops transmission on this
    port with the reason in `error` (shown on the page and in stats), a receive error is
    reported and receiving goes on, and no buffer is lost on the way."""

    def __init__(self, port: Port, cfg: PortConfig, pool: Pool,
                 pcap_path: Path | None = None) -> None:
        self.port = port
        self.cfg = cfg
        self.pool = pool
        self.pcap_path = pcap_path
        self.lock = threading.Lock()  # guards counters and the sending state
        # Held by the worker for a whole transmit round: stop() takes it, so once a port
        # shows as stopped its counters are final (no round is still being counted).
        self._round = threading.RLock()
        self.done = threading.Event()
        self.done.set()
        self.sending = False
        self.remaining = 0
        self.closing = False
        self._restart = False  # set by start(): the worker rebuilds and rewinds first
        self._tx_batch = Batch(pool, TX_ROUND)
        self._chunks: list[Batch] = []  # views of _tx_batch, one per burst handed to the port
        self._chunk_size = 0
        self._rx_batch = Batch(pool, RX_BURST)
        self._cum = np.zeros(TX_ROUND, dtype=np.int64)
        self._words = words_view(pool.data)
        self._template: Template | None = None
        self._cur = np.zeros(0, dtype=np.int64)
        self._reader: PcapReader | None = None
        self._pcap_damage: str | None = None  # damage found in the file, reported once
        self._tokens = 0.0
        self._last_refill = 0.0
        self._token_rate = 0.0  # tokens per second
        self._pps_mode = False
        self._expected_cost = 1.0
        self._stall_since: float | None = None  # when the pool last ran dry under us
        self._stall_logged = -STALL_LOG_PERIOD_S
        self._rx_error_logged = -STALL_LOG_PERIOD_S
        self._rx_resume_at = 0.0  # receiving waits until then after an error
        self.error: str | None = None  # last transmit problem, shown on the page
        self.reset_counters()
        self._thread = threading.Thread(target=self._run, name=f"pktgen-port{port.id}",
                                        daemon=True)

    # ---- counters -------------------------------------------------------------------
    def reset_counters(self) -> None:
        with self.lock:
            self.tx_packets = 0
            self.tx_bytes = 0
            self.tx_generated = 0
            self.tx_stalls = 0  # times transmission paused because the pool had no buffer
            self.tx_ring_full = 0  # rounds the port lent no transmit slot (it waited)
            self.tx_stall_s = 0.0  # seconds spent so (an ongoing pause counts from its start)
            self.rx = new_rx_accumulator()
            self.port_base = self.port.stats.as_dict()
            self.rates = {"rx_pps": 0.0, "tx_pps": 0.0, "rx_mbps": 0.0, "tx_mbps": 0.0}
            self.max_rates = {"rx_pps": 0.0, "tx_pps": 0.0}
            self._sample = (time.monotonic(), 0, 0, 0, 0)
            if self._stall_since is not None:
                self._stall_since = time.monotonic()
                self.tx_stalls = 1

    def sample_rates(self) -> None:
        """Turn counter deltas since the previous sample into per-second rates."""
        now = time.monotonic()
        with self.lock:
            t0, rxp0, rxb0, txp0, txb0 = self._sample
            rxp, rxb = int(self.rx[RX_PKTS]), int(self.rx[RX_BYTES])
            txp, txb = self.tx_packets, self.tx_bytes
            dt = now - t0
            if dt <= 0:
                return
            self.rates = {
                "rx_pps": (rxp - rxp0) / dt,
                "tx_pps": (txp - txp0) / dt,
                # Mbit/s on the wire, as Pktgen shows them: frame + FCS + preamble + gap.
                "rx_mbps": ((rxb - rxb0) + FRAME_OVERHEAD * (rxp - rxp0)) * 8 / dt / 1e6,
                "tx_mbps": ((txb - txb0) + FRAME_OVERHEAD * (txp - txp0)) * 8 / dt / 1e6,
            }
            for key in ("rx_pps", "tx_pps"):
                self.max_rates[key] = max(self.max_rates[key], self.rates[key])
            self._sample = (now, rxp, rxb, txp, txb)

    def stats(self) -> dict:
        """Counters of this port as plain numbers (what the pages and --json show)."""
        with self.lock:
            rx = self.rx.copy()
            ps = self.port.stats.as_dict()
            base = self.port_base
            stalled = self._stall_since
            stall_s = self.tx_stall_s
            if stalled is not None:
                stall_s += time.monotonic() - stalled
            out = {
                "port": self.port.id,
                "name": self.port.name,
                "link": self.port.link_up,
                "mode": self.cfg.mode,
                "sending": self.sending,
                "tx_packets": self.tx_packets,
                "tx_bytes": self.tx_bytes,
                "tx_generated": self.tx_generated,
                "tx_dropped": ps["tx_dropped"] - base["tx_dropped"],
                "tx_errors": ps["tx_errors"] - base["tx_errors"],
                "tx_stalls": self.tx_stalls,
                "tx_stall_s": round(stall_s, 3),
                "tx_ring_full": self.tx_ring_full,
                "rx_packets": int(rx[RX_PKTS]),
                "rx_bytes": int(rx[RX_BYTES]),
                "rx_dropped": ps["rx_dropped"] - base["rx_dropped"],
                "rx_errors": ps["rx_errors"] - base["rx_errors"],
                **{k: round(v, 1) for k, v in self.rates.items()},
                "rx_max_pps": round(self.max_rates["rx_pps"], 1),
                "tx_max_pps": round(self.max_rates["tx_pps"], 1),
                "rx_broadcast": int(rx[RX_BCAST]),
                "rx_multicast": int(rx[RX_MCAST]),
            }
        pkts = out["rx_packets"]
        out["rx_min_size"] = int(rx[RX_MIN]) if pkts else 0
        out["rx_max_size"] = int(rx[RX_MAX]) if pkts else 0
        out["rx_avg_size"] = round(out["rx_bytes"] / pkts, 1) if pkts else 0.0
        sizes = {"runt": int(rx[RX_RUNT])}
        sizes.update({label: int(rx[RX_HIST + i]) for i, label in enumerate(HIST_LABELS)})
        sizes["jumbo"] = int(rx[RX_JUMBO])
        out["rx_sizes"] = sizes
        if stalled is not None and out["sending"]:
            out["tx_paused"] = self._stall_text(stall_s)
        if self.error:
            out["error"] = self.error
        return out

    def _stall_text(self, seconds: float) -> str:
        pool = self.pool
        return (f"tx paused {seconds:.1f} s: pool \"{pool.name}\" has no free buffer (all "
                f"{pool.buffers} held elsewhere, e.g. queued unread at the far end of "
                f"{self.port.name}); sending resumes when buffers are freed")

    # ---- control --------------------------------------------------------------------
    def start_thread(self) -> None:
        self._thread.start()

    def start(self) -> None:
        """Begin transmitting `cfg.count` packets (0: until stopped)."""
        with self.lock:
            if self.sending:
                return
            self.remaining = self.cfg.count
            self.error = None
            self._restart = True  # range fields restart from their start, pcap from the top
            self.done.clear()
            self.sending = True

    def stop(self) -> None:
        """Stop transmitting; returns once the round in progress (if any) is counted."""
        with self._round, self.lock:
            self.sending = False
            self.done.set()

    def close(self) -> None:
        self.stop()
        self.closing = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ---- the worker -----------------------------------------------------------------
    def _run(self) -> None:
        idle = IDLE_MIN_S
        while not self.closing:
            wait = None
            if self.sending:
                with self._round:
                    try:
                        wait = self._transmit() if self.sending else None
                    except Exception as e:  # noqa: BLE001 - the thread must outlive any failure
                        self._tx_failed(e)
            elif self._stall_since is not None:
                self._stall_over()  # stopped while the pool was dry: the pause ends here
            got = 0
            if time.monotonic() >= self._rx_resume_at:
                try:
                    got = self._receive()
                except Exception as e:  # noqa: BLE001
                    self._rx_failed(e)
            if got or wait == 0.0:
                idle = IDLE_MIN_S
                continue
            if wait is None:
                time.sleep(idle)
                idle = min(idle * 2, IDLE_MAX_S)
            else:
                time.sleep(min(wait, IDLE_MAX_S))
        self._stall_over()

    def _tx_failed(self, e: Exception) -> None:
        """Stop transmitting on this port with the reason shown; return held buffers."""
        batch = self._tx_batch
        if batch.n:
            self.pool.free(batch)
        if isinstance(e, (PktgenError, PcapError, OSError)):
            self.error = str(e)
        else:
            self.error = f"transmit failed: {type(e).__name__}: {e}"
            log.error("port %d: %s", self.port.id, self.error, exc_info=e)
        self._stall_over()
        self.stop()

    def _rx_failed(self, e: Exception) -> None:
        batch = self._rx_batch
        if batch.n:
            self.pool.free(batch)
        self.error = f"receive failed: {type(e).__name__}: {e}"
        now = time.monotonic()
        self._rx_resume_at = now + RX_RETRY_S  # do not spin on a failing port
        if now - self._rx_error_logged >= STALL_LOG_PERIOD_S:
            self._rx_error_logged = now
            log.error("port %d: %s", self.port.id, self.error, exc_info=e)

    def _prepare(self) -> Template:
        """Rebuild the template and the token bucket after start or a configuration
        change; rewind the pcap file on start."""
        cfg = self.cfg
        restart = self._restart
        self._restart = False
        template = build_template(cfg)
        self._template = template
        self._cur = template.fields[:, 0].copy()
        if restart:
            self._tokens = 0.0
            self._last_refill = time.monotonic()
        if cfg.pcap:
            if self.pcap_path is None:
                raise PktgenError(f"port {self.port.id}: pcap mode needs a file: start with "
                                  f"--pcap {self.port.id}=FILE")
            if self._reader is None:
                self._pcap_damage = None
                self._reader = PcapReader(self.pcap_path)
            elif restart:
                self._pcap_damage = None
                self._reader.rewind()
        speed_mbps = getattr(self.port, "speed_mbps", None) or DEFAULT_SPEED_MBPS
        if cfg.pps > 0:
            self._pps_mode = True
            self._token_rate = float(cfg.pps)
            self._expected_cost = 1.0
        else:
            self._pps_mode = False
            self._token_rate = speed_mbps * 1e6 / 8 * cfg.rate / 100.0
            size_row = template.fields[F_SIZE]
            if size_row[3]:
                mean_size = (size_row[1] + size_row[2]) / 2
            else:
                mean_size = size_row[0]
            self._expected_cost = float(mean_size + WIRE_OVERHEAD)
        return template

    def _transmit(self) -> float | None:
        """Make and send one round of up to TX_ROUND packets (whole bursts) if the bucket
        allows; returns 0.0 after sending, else how long to wait for credit (None when
        there is nothing to send)."""
        cfg = self.cfg
        t = self._template
        if self._restart or t is None or t.version != cfg.version:
            t = self._prepare()
        now = time.monotonic()
        burst = min(cfg.burst, MAX_BURST)
        depth = max(self._token_rate * BUCKET_DEPTH_S, self._expected_cost * burst)
        self._tokens = min(self._tokens + (now - self._last_refill) * self._token_rate, depth)
        self._last_refill = now
        want = TX_ROUND // burst * burst
        remaining = self.remaining
        if remaining and remaining < want:
            want = remaining
        affordable = int(self._tokens / self._expected_cost)
        if affordable < want:
            need = min(burst, want)
            if affordable < 1 or affordable < need // 4:
                return max((need * self._expected_cost - self._tokens) / self._token_rate,
                           IDLE_MIN_S)
            want = affordable
        batch = self._tx_batch
        pool = self.pool
        lease = None
        if cfg.pcap:
            try:
                got = self._read_pcap(batch, want)
            except PcapError as e:
                got = batch.n  # records read before the damage still go out
                if got == 0:
                    raise
                self.error = str(e)
                self.stop()
            if got:
                lens = pool.meta[batch.idx[:got], M.LEN].astype(np.int64)
                np.cumsum(lens, out=self._cum[:got])
        elif self.port.lends_tx:
            # Zero-copy: synthesise straight into the port's transmit ring slots.
            lease = self.port.lend_tx(want)
            got = lease.n
            if got == 0:
                with self.lock:
                    self.tx_ring_full += 1
                return IDLE_MIN_S
            synth_batch(lease.data, lease.words, lease.meta, lease.idx, got, t.frame,
                        t.frame64, t.layout, t.payload_sums, t.fields, t.offsets,
                        self._cur, self._cum)
        else:
            got = pool.alloc_into(batch, want)
            if got:
                synth_batch(pool.data, self._words, pool.meta, batch.idx, got, t.frame,
                            t.frame64, t.layout, t.payload_sums, t.fields, t.offsets,
                            self._cur, self._cum)
        if got == 0:
            self._no_buffer()
            return IDLE_MIN_S
        if self._stall_since is not None:
            self._stall_over()
        cost = got if self._pps_mode else float(self._cum[got - 1] + FRAME_OVERHEAD * got)
        if lease is not None:
            sent, nbytes = self.port.commit_tx(lease, got)
        else:
            sent, nbytes = self._send(batch, got, burst)
        with self.lock:
            self._tokens -= cost
            self.tx_generated += got
            self.tx_packets += sent
            self.tx_bytes += nbytes
            if self.remaining:
                self.remaining -= got
                if self.remaining <= 0:
                    self.sending = False
                    self.done.set()
        return 0.0

    def _send(self, batch: Batch, got: int, burst: int) -> tuple[int, int]:
        """Hand `batch` to the port burst by burst; returns (packets, bytes) it accepted.
        If the port raises, the bursts not yet handed over are freed before re-raising."""
        if got <= burst:
            try:
                sent = self.port.send(batch)
            finally:
                batch.n = 0  # the port owns every buffer now, even if it raised
            return sent, int(self._cum[sent - 1]) if sent else 0
        if self._chunk_size != burst:
            self._chunks = [Batch(self.pool, 1) for _ in range(0, TX_ROUND, burst)]
            for j, chunk in enumerate(self._chunks):
                chunk.idx = batch.idx[j * burst:(j + 1) * burst]
            self._chunk_size = burst
        cum = self._cum
        sent_total = nbytes = 0
        at = 0
        try:
            for chunk in self._chunks:
                if at >= got:
                    break
                chunk.n = min(burst, got - at)
                sent = self.port.send(chunk)
                chunk.n = 0
                if sent:
                    sent_total += sent
                    nbytes += int(cum[at + sent - 1]) - (int(cum[at - 1]) if at else 0)
                at += burst
        except BaseException:
            self.pool.free(batch, min(at + burst, got))  # the bursts the port never saw
            batch.n = 0
            raise
        batch.n = 0
        return sent_total, nbytes

    def _no_buffer(self) -> None:
        """The pool is empty: count a pause once, log it at most every few seconds."""
        now = time.monotonic()
        if self._stall_since is None:
            with self.lock:
                self._stall_since = now
                self.tx_stalls += 1
        if now - self._stall_logged >= STALL_LOG_PERIOD_S:
            self._stall_logged = now
            log.warning("port %d: %s", self.port.id, self._stall_text(now - self._stall_since))

    def _stall_over(self) -> None:
        with self.lock:
            if self._stall_since is not None:
                self.tx_stall_s += time.monotonic() - self._stall_since
                self._stall_since = None

    def _read_pcap(self, batch: Batch, want: int) -> int:
        """Stream the next `want` pcap records into `batch`, starting over at the file's
        end (or at damage found after good records, which is reported once); 0 when the
        pool has no buffer free. Raises PcapError when the file has nothing to replay."""
        reader = self._reader
        rewound = False
        while batch.n < want:
            try:
                got = reader.read_into(batch, want - batch.n)
            except PcapError as e:
                if reader.packets == 0:
                    raise
                self._note_pcap_damage(str(e), reader.packets)
                got = 0
            if got:
                rewound = False
                continue
            if self.pool.available == 0:
                break
            if rewound:
                raise PcapError(f"{self.pcap_path}: no Ethernet packet to replay "
                                f"(frames above {self.pool.max_frame} bytes are skipped)")
            reader.rewind()
            rewound = True
        return batch.n

    def _note_pcap_damage(self, what: str, good: int) -> None:
        if self._pcap_damage == what:
            return
        self._pcap_damage = what
        self.error = f"{what}; replaying the {good} packets before it"
        log.warning("port %d: %s", self.port.id, self.error)

    def _receive(self) -> int:
        batch = self._rx_batch
        n = self.port.recv(batch, RX_BURST)
        if n:
            pool = batch.pool
            with self.lock:
                rx_account(pool.data, pool.meta, batch.idx, batch.n, self.rx)
            pool.free(batch)
        return n


_warm = False


def warm_up() -> None:
    """Load (or compile) the kernels once per process, so the first `start` transmits at
    once instead of pausing while Numba loads its cache."""
    global _warm
    if _warm:
        return
    pool = Pool(buffers=2, name="warm-up")
    batch = pool.alloc(1)
    cfg = default_config(0, [0], {})
    t = build_template(cfg)
    cum = np.zeros(1, dtype=np.int64)
    synth_batch(pool.data, words_view(pool.data), pool.meta, batch.idx, 1, t.frame, t.frame64,
                t.layout, t.payload_sums, t.fields, t.offsets, t.fields[:, 0].copy(), cum)
    rx_account(pool.data, pool.meta, batch.idx, 1, new_rx_accumulator())
    _warm = True


class Engine:
    """A traffic generator on the ports of a `PortTable`: per-port settings (`configs`,
    changed under `config_lock`), transmit control and counters.

    >>> eng = Engine(PortTable.from_specs(["0=mem:a", "1=mem:b"]))
    >>> eng.configs[0].count = 1000; eng.start([0]); eng.wait_done(5); eng.stats()
    """

    def __init__(self, ports: PortTable, pool: Pool | None = None,
                 pcap: dict[int, str | Path] | None = None) -> None:
        warm_up()
        self.ports = ports
        self.pool = pool or default_pool()
        self.config_lock = threading.RLock()
        ids = ports.ids()
        macs = {p.id: int(p.mac) for p in ports}
        self.configs: dict[int, PortConfig] = {i: default_config(i, ids, macs) for i in ids}
        pcap = {int(k): Path(v) for k, v in (pcap or {}).items()}
        for pid in pcap:
            if pid not in self.configs:
                raise PktgenError(f"--pcap {pid}=...: there is no port {pid} "
                                  f"(ports: {', '.join(map(str, ids))})")
        self.workers: dict[int, PortWorker] = {}
        for port in ports:
            if port.pool is None:
                port.open(self.pool)
            self.workers[port.id] = PortWorker(port, self.configs[port.id], self.pool,
                                               pcap.get(port.id))
        for w in self.workers.values():
            w.start_thread()
        self._closed = threading.Event()
        self._sampler = threading.Thread(target=self._sample_loop, name="pktgen-rates",
                                         daemon=True)
        self._sampler.start()

    # ---- control --------------------------------------------------------------------
    def port_ids(self, ids: Iterable[int] | None = None) -> list[int]:
        if ids is None:
            return sorted(self.workers)
        out = []
        for i in ids:
            if i not in self.workers:
                have = ", ".join(map(str, sorted(self.workers))) or "none"
                raise PktgenError(f"unknown port {i} (ports: {have})")
            out.append(i)
        return out

    def start(self, ids: Iterable[int] | None = None) -> None:
        """Start transmitting on the given ports (all when None)."""
        for i in self.port_ids(ids):
            self.workers[i].start()

    def stop(self, ids: Iterable[int] | None = None) -> None:
        """Stop transmitting; receiving and counting go on."""
        for i in self.port_ids(ids):
            self.workers[i].stop()

    def sending(self, ids: Iterable[int] | None = None) -> list[int]:
        return [i for i in self.port_ids(ids) if self.workers[i].sending]

    def wait_done(self, timeout: float | None = None, ids: Iterable[int] | None = None) -> bool:
        """Wait until the ports have sent their `count` (or were stopped); True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for i in self.port_ids(ids):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.workers[i].done.wait(left):
                return False
        return True

    def wait_quiet(self, quiet: float = 0.1, timeout: float = 2.0) -> None:
        """Wait until no port has received anything for `quiet` seconds (replies drained)."""
        deadline = time.monotonic() + timeout
        last = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            now_counts = tuple(w.rx[RX_PKTS] for w in self.workers.values())
            if now_counts != last:
                last, since = now_counts, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.01)

    def stats(self) -> dict[int, dict]:
        """Per-port counters and rates: {port id: {"tx_packets": ..., "rx_pps": ...}}."""
        return {i: w.stats() for i, w in sorted(self.workers.items())}

    def clear(self, ids: Iterable[int] | None = None) -> None:
        """Zero the counters and rates of the given ports (all when None)."""
        for i in self.port_ids(ids):
            self.workers[i].reset_counters()

    def errors(self) -> dict[int, str]:
        return {i: w.error for i, w in self.workers.items() if w.error}

    def close(self) -> None:
        """Stop every worker; the ports stay open (the caller owns the PortTable)."""
        if self._closed.is_set():
            return
        self._closed.set()
        for w in self.workers.values():
            w.close()
        self._sampler.join(timeout=2)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sample_loop(self) -> None:
        while not self._closed.wait(SAMPLE_PERIOD_S):
            for w in self.workers.values():
                w.sample_rates()
