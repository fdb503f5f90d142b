"""The generator engine: one worker thread per port that transmits and counts receptions.

Each worker loops: when its port is sending, it takes a burst of buffers from the pool,
fills them with one compiled call (template synthesis, or pcap records streamed straight
into the buffers), and hands them to the port; then it receives whatever arrived and
counts it with one compiled call. Receiving goes on after transmission stops, until the
engine is closed, so replies that arrive late are still counted.

Rate control is a token bucket checked once per batch: in percent mode the tokens are
wire bytes (frame + FCS + preamble + inter-frame gap, as Pktgen counts line rate), in pps
mode they are packets. `Pktgen` is the Python API; the command language, console and CLI
all drive the same object.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

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
IDLE_MIN_S = 50e-6
IDLE_MAX_S = 1e-3
BUCKET_DEPTH_S = 0.02  # credit a sender may bank across a late wake-up (keeps the average)
SAMPLE_PERIOD_S = 1.0
FRAME_OVERHEAD = FCS_LEN + WIRE_OVERHEAD  # bytes on the wire beyond the frame itself


class PktgenError(RuntimeError):
    """A generator request cannot be done (unknown port, no pcap file); says why."""


class PortWorker:
    """Transmit and receive on one port from one thread; counters change once per batch."""

    def __init__(self, port: Port, cfg: PortConfig, pool: Pool,
                 pcap_path: Path | None = None) -> None:
        self.port = port
        self.cfg = cfg
        self.pool = pool
        self.pcap_path = pcap_path
        self.lock = threading.Lock()  # guards counters and the sending state
        self.done = threading.Event()
        self.done.set()
        self.sending = False
        self.remaining = 0
        self.closing = False
        self._tx_batch = Batch(pool, MAX_BURST)
        self._rx_batch = Batch(pool, RX_BURST)
        self._cum = np.zeros(MAX_BURST, dtype=np.int64)
        self._data64 = words_view(pool.data)
        self._template: Template | None = None
        self._cur = np.zeros(0, dtype=np.int64)
        self._reader: PcapReader | None = None
        self._tokens = 0.0
        self._last_refill = 0.0
        self._token_rate = 0.0  # tokens per second
        self._pps_mode = False
        self._expected_cost = 1.0
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
            self.rx = new_rx_accumulator()
            self.port_base = self.port.stats.as_dict()
            self.rates = {"rx_pps": 0.0, "tx_pps": 0.0, "rx_mbps": 0.0, "tx_mbps": 0.0}
            self.max_rates = {"rx_pps": 0.0, "tx_pps": 0.0}
            self._sample = (time.monotonic(), 0, 0, 0, 0)

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
        if self.error:
            out["error"] = self.error
        return out

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
            self._template = None  # rebuild: range fields restart from their start
            if self._reader is not None:
                self._reader.rewind()
            self._tokens = 0.0
            self._last_refill = time.monotonic()
            self.done.clear()
            self.sending = True

    def stop(self) -> None:
        with self.lock:
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
                wait = self._transmit()
            got = self._receive()
            if got or wait == 0.0:
                idle = IDLE_MIN_S
                continue
            if wait is None:
                time.sleep(idle)
                idle = min(idle * 2, IDLE_MAX_S)
            else:
                time.sleep(min(wait, IDLE_MAX_S))

    def _prepare(self) -> None:
        """Rebuild the template and the token bucket after a configuration change."""
        cfg = self.cfg
        self._template = build_template(cfg)
        self._cur = self._template.fields[:, 0].copy()
        if cfg.pcap:
            if self.pcap_path is None:
                raise PktgenError(f"port {self.port.id}: pcap mode needs a file: start with "
                                  f"--pcap {self.port.id}=FILE")
            if self._reader is None:
                self._reader = PcapReader(self.pcap_path)
        speed_mbps = getattr(self.port, "speed_mbps", None) or DEFAULT_SPEED_MBPS
        if cfg.pps > 0:
            self._pps_mode = True
            self._token_rate = float(cfg.pps)
            self._expected_cost = 1.0
        else:
            self._pps_mode = False
            self._token_rate = speed_mbps * 1e6 / 8 * cfg.rate / 100.0
            size_row = self._template.fields[F_SIZE]
            if size_row[3]:
                mean_size = (size_row[1] + size_row[2]) / 2
            else:
                mean_size = size_row[0]
            self._expected_cost = float(mean_size + WIRE_OVERHEAD)

    def _transmit(self) -> float | None:
        """Send one batch if the bucket allows; returns 0.0 after sending, else how long
        to wait for credit (None when there is nothing to send)."""
        cfg = self.cfg
        try:
            if self._template is None or self._template.version != cfg.version:
                self._prepare()
        except (PktgenError, PcapError, OSError) as e:
            self.error = str(e)
            self.stop()
            return None
        now = time.monotonic()
        depth = max(self._token_rate * BUCKET_DEPTH_S, self._expected_cost * cfg.burst)
        self._tokens = min(self._tokens + (now - self._last_refill) * self._token_rate, depth)
        self._last_refill = now
        want = min(cfg.burst, MAX_BURST)
        if self.remaining and self.remaining < want:
            want = self.remaining
        affordable = int(self._tokens / self._expected_cost)
        if affordable < want:
            if affordable < 1 or affordable < want // 4:
                return max((want * self._expected_cost - self._tokens) / self._token_rate,
                           IDLE_MIN_S)
            want = affordable
        batch = self._tx_batch
        pool = self.pool
        if cfg.pcap:
            try:
                got = self._read_pcap(batch, want)
            except (PcapError, OSError) as e:
                pool.free(batch)
                self.error = str(e)
                self.stop()
                return None
            if got == 0:
                return IDLE_MIN_S
            lens = pool.meta[batch.idx[:got], M.LEN].astype(np.int64)
            np.cumsum(lens, out=self._cum[:got])
        else:
            got = pool.alloc_into(batch, want)
            if got == 0:
                return IDLE_MIN_S  # the pool is empty: packets are still in flight elsewhere
            t = self._template
            synth_batch(pool.data, self._data64, pool.meta, batch.idx, got, t.frame, t.frame64,
                        t.layout, t.payload_sums, t.fields, self._cur, t.ip6_src, t.ip6_dst,
                        self._cum)
        cost = got if self._pps_mode else float(self._cum[got - 1] + FRAME_OVERHEAD * got)
        sent = self.port.send(batch)
        batch.n = 0
        with self.lock:
            self._tokens -= cost
            self.tx_generated += got
            self.tx_packets += sent
            if sent:
                self.tx_bytes += int(self._cum[sent - 1])
            if self.remaining:
                self.remaining -= got
                if self.remaining <= 0:
                    self.sending = False
                    self.done.set()
        return 0.0

    def _read_pcap(self, batch: Batch, want: int) -> int:
        """Stream the next `want` pcap records into `batch`, starting over at the file's
        end; 0 when the pool has no buffer free."""
        reader = self._reader
        rewound = False
        while batch.n < want:
            if reader.read_into(batch, want - batch.n):
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
                t.layout, t.payload_sums, t.fields, t.fields[:, 0].copy(), t.ip6_src,
                t.ip6_dst, cum)
    rx_account(pool.data, pool.meta, batch.idx, 1, new_rx_accumulator())
    _warm = True


class Pktgen:
    """A traffic generator on the ports of a `PortTable`, driven by Pktgen commands.

    >>> gen = Pktgen(PortTable.from_specs(["0=mem:a", "1=mem:b"]))
    >>> gen.execute("set 0 count 1000"); gen.start([0]); gen.wait_done(5); gen.stats()
    """

    def __init__(self, ports: PortTable, pool: Pool | None = None,
                 pcap: dict[int, str | Path] | None = None,
                 output=print) -> None:
        from pktflow.pktgen.commands import Interpreter

        warm_up()
        self.ports = ports
        self.pool = pool or default_pool()
        self.output = output
        self.page = "main"
        self.quit_requested = False
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
        self.interpreter = Interpreter(self)

    # ---- commands -------------------------------------------------------------------
    def execute(self, line: str) -> str:
        """Run one command line; returns its text output, raises CommandError if bad."""
        return self.interpreter.execute(line)

    def load(self, path: str | Path) -> list[str]:
        """Run a command file; bad lines are reported (file:line: why) and skipped.
        Returns the error messages."""
        return self.interpreter.run_file(path)

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

    def __enter__(self) -> Pktgen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sample_loop(self) -> None:
        while not self._closed.wait(SAMPLE_PERIOD_S):
            for w in self.workers.values():
                w.sample_rates()
