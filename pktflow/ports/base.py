"""The port driver interface and the port table.

A port moves batches between a pool and something outside the graph: a memory wire, a
pcap file, a Linux interface. Every driver implements `Port`; the `PortTable` maps numeric
port ids to drivers from specs like `0=mem:a` or `1=pcap:in.pcap,out.pcap`, so one NF
program runs unchanged on any of them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pktflow.packet.addr import MACAddr
from pktflow.packet.pool import Batch, Pool


class PortError(RuntimeError):
    """A port cannot be opened or used; the message says what to do."""


class PortSpecError(ValueError):
    """A port spec (command line or config) is malformed; the message names it."""


@dataclass
class PortStats:
    """Counters of one port. Bytes are frame bytes without FCS."""

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    rx_dropped: int = 0  # lost before reaching the graph (ring full, kernel drops)
    tx_dropped: int = 0  # handed to send() but not transmitted (no peer, ring full)
    rx_errors: int = 0
    tx_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class TxLease:
    """Transmit slots a port lends for zero-copy sending (see `Port.lend_tx`).

    The slots look like pool buffers: frame k goes into row `idx[k]` of `data`, starting
    at `meta[idx[k], START]`, and its length goes into `meta[idx[k], LEN]`; `words` is
    `data` as one flat run of uint64 words. Only `idx[:n]` are lent."""

    data: np.ndarray  # uint8 [slots, slot bytes], the driver's own transmit memory
    words: np.ndarray  # the same memory as uint64 words
    meta: np.ndarray  # int32 [slots, meta.NCOLS]; START preset per slot
    idx: np.ndarray  # int32 slot numbers, in transmit order
    n: int  # slots lent (0: the ring is full, try again later)


class Port(ABC):
    """One numbered port. Drivers are used from worker threads: recv() and send() may be
    called concurrently from different threads, but each of them from one thread at a time.
    """

    driver: str = "?"

    def __init__(self, port_id: int, args: str) -> None:
        self.id = port_id
        self.args = args
        self.stats = PortStats()
        self.pool: Pool | None = None
        self._stats_lock = threading.Lock()

    @property
    @abstractmethod
    def mac(self) -> MACAddr:
        """The port's own MAC address."""

    @property
    def name(self) -> str:
        return f"{self.driver}:{self.args}"

    @property
    def link_up(self) -> bool:
        return True

    @property
    def at_end(self) -> bool:
        """True once a finite source (a pcap file) has no more packets to give."""
        return False

    @property
    def queued(self) -> int:
        """Packets received by the driver and waiting for recv() (0 if it cannot tell);
        the scheduler clones a receiving segment whose queue keeps filling."""
        return 0

    @property
    def queue_capacity(self) -> int | None:
        """The most packets that queue can hold (None if unknown)."""
        return None

    def open(self, pool: Pool) -> None:
        """Attach the port to the pool its received packets are allocated from."""
        self.pool = pool

    @abstractmethod
    def recv(self, batch: Batch, max_n: int) -> int:
        """Append up to `max_n` received packets to `batch` without blocking; return the
        count. The packets' metadata has START, LEN, PORT set; parsing is the caller's."""

    @abstractmethod
    def send(self, batch: Batch) -> int:
        """Transmit every packet of `batch` and take ownership of its buffers (each is
        sent or counted in tx_dropped/tx_errors, and freed); leaves `batch.n == 0`.
        Returns the number sent."""

    # Optional capability: zero-copy transmit. A driver whose transmit memory can hold
    # frames written in place (the AF_PACKET TX ring) lends slots of it, so a generator
    # writes each frame once instead of into a pool buffer and again into the ring.
    lends_tx: bool = False

    def lend_tx(self, max_n: int) -> TxLease:
        """Lend up to `max_n` free transmit slots (fewer, or none, when the ring is full:
        backpressure, nothing is dropped). The sending thread fills some of them and
        calls `commit_tx` before it lends or sends again. Only when `lends_tx`."""
        raise PortError(f"{self.name} cannot lend transmit slots; use send()")

    def commit_tx(self, lease: TxLease, n: int) -> tuple[int, int]:
        """Transmit the frames written into `lease.idx[:n]` and return the rest of the
        lease to the driver. Counts like send(): each frame is sent (tx_packets) or
        refused (tx_errors, e.g. longer than the MTU). Returns (packets, bytes) sent."""
        raise PortError(f"{self.name} cannot lend transmit slots; use send()")

    def flush(self) -> None:
        """Push out what the driver still buffers (a pcap file's tail, a TX ring), so that
        everything counted as sent is really out when a graph stops."""
        return None

    def close(self) -> None:
        """Flush and release the driver's resources. Safe to call twice."""
        return None

    def __repr__(self) -> str:
        return f"<Port {self.id} {self.name} mac={self.mac}>"


def stable_mac(key: str) -> MACAddr:
    """A locally administered unicast MAC derived from `key`: the same key gives the same
    address in every run, so scripts and target tables can name it."""
    digest = bytearray(hashlib.blake2b(key.encode(), digest_size=6).digest())
    digest[0] = (digest[0] & 0xFC) | 0x02  # locally administered, unicast
    return MACAddr(bytes(digest))


DriverFactory = Callable[[int, str], Port]
DRIVERS: dict[str, DriverFactory] = {}


def register_driver(scheme: str, factory: DriverFactory) -> None:
    """Make `scheme:args` specs create ports through `factory(port_id, args)`."""
    DRIVERS[scheme] = factory


def _load_builtin_drivers() -> None:
    # Drivers register themselves on import; import the ones this tree has.
    import importlib

    for module in ("memory", "pcap", "afpacket", "afxdp", "auto"):
        try:
            importlib.import_module(f"pktflow.ports.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"pktflow.ports.{module}":
                raise


def parse_port_spec(spec: str) -> tuple[int, str, str]:
    """'0=mem:a' -> (0, 'mem', 'a')."""
    id_text, eq, rest = spec.partition("=")
    id_text = id_text.strip()
    scheme, colon, args = rest.partition(":")
    # isdigit() alone admits '²' and other digits int() refuses: ASCII only.
    if not eq or not colon or not (id_text.isascii() and id_text.isdigit()) or not scheme:
        raise PortSpecError(
            f'bad port spec "{spec}": expected ID=DRIVER:ARGS, for example 0=mem:a '
            f"or 1=pcap:in.pcap,out.pcap"
        )
    return int(id_text), scheme.strip(), args.strip()


class PortTable:
    """Numeric port ids to open ports."""

    def __init__(self, ports: Iterable[Port] = ()) -> None:
        self._ports: dict[int, Port] = {}
        for p in ports:
            self.add(p)

    def add(self, port: Port) -> Port:
        if port.id in self._ports:
            raise PortSpecError(f"port {port.id} is given twice")
        self._ports[port.id] = port
        return port

    @classmethod
    def from_specs(cls, specs: Iterable[str]) -> PortTable:
        _load_builtin_drivers()
        table = cls()
        try:
            for spec in specs:
                port_id, scheme, args = parse_port_spec(spec)
                factory = DRIVERS.get(scheme)
                if factory is None:
                    known = ", ".join(sorted(DRIVERS))
                    raise PortSpecError(f'bad port spec "{spec}": unknown driver "{scheme}" '
                                        f"(known: {known})")
                port = factory(port_id, args)
                try:
                    table.add(port)
                except PortSpecError:
                    port.close()
                    raise
        except BaseException:
            table.close()  # a half-built table must not keep wires or sockets taken
            raise
        return table

    @classmethod
    def from_config(cls, path: str | Path) -> PortTable:
        """A JSON file with {"ports": {"0": "mem:a", "1": "pcap:in.pcap,out.pcap"}}."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
            ports = doc["ports"]
            specs = [f"{k}={v}" for k, v in ports.items()]
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
            raise PortSpecError(f"{path}: expected {{\"ports\": {{\"0\": \"mem:a\"}}}}: {e}") from e
        return cls.from_specs(specs)

    def __getitem__(self, port_id: int) -> Port:
        try:
            return self._ports[port_id]
        except KeyError:
            have = ", ".join(map(str, sorted(self._ports))) or "none"
            raise PortSpecError(f"unknown port {port_id} (configured ports: {have}); "
                                f"add one with --port {port_id}=mem:NAME") from None

    def __contains__(self, port_id: int) -> bool:
        return port_id in self._ports

    def __iter__(self):
        return iter(self._ports.values())

    def __len__(self) -> int:
        return len(self._ports)

    def ids(self) -> list[int]:
        return sorted(self._ports)

    def close(self) -> None:
        for p in self._ports.values():
            p.close()
