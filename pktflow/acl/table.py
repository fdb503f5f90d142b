"""Rule tables: loaded versions, the kernel-bound object protocol, live reload.

A `RuleSet` is one immutable compiled version of a table. A `RuleTable` is the live
object a program holds: it points at its current RuleSet and, when bound to a file and
watched, swaps in a new RuleSet when the file changes. The swap is one reference
assignment, so `kernel_state()` always returns one whole version; callers take it once
per batch, and every batch is classified by exactly one version. An invalid file never
replaces good rules: the table keeps its version and records the error.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pktflow.acl import kernels as K
from pktflow.acl.build import TableTooLarge, build_l2, build_l3
from pktflow.acl.rules import (
    L2Rule,
    L3Rule,
    RuleError,
    RuleLineError,
    is_json,
    parse_l2_json,
    parse_l2_text,
    parse_l3_json,
    parse_l3_text,
    read_rules_file,
)
from pktflow.packet.pool import Batch
from pktflow.packet.view import Packet

log = logging.getLogger("pktflow.acl")

DEFAULT_POLL = 0.1  # seconds between looks at a watched file


class RuleSet:
    """One compiled version of a rule table; immutable, safe to share between threads."""

    kernel_methods: ClassVar[dict[str, Callable]] = {}
    batch_kernel: ClassVar[Callable]

    def __init__(self, rules: Sequence[Any], source: str = "<rules>", version: int = 1,
                 loaded_at: float | None = None, load_seconds: float = 0.0) -> None:
        self.rules = tuple(rules)
        self.source = source
        self.version = version
        self.loaded_at = time.time() if loaded_at is None else loaded_at
        self.load_seconds = load_seconds
        try:
            self.state = self._build(self.rules)
        except TableTooLarge as e:
            raise RuleError([RuleLineError(source, None, str(e))]) from None

    @staticmethod
    def _build(rules: tuple) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def kernel_state(self) -> tuple[np.ndarray, ...]:
        """Arrays the Numba kernels walk (this version's; it never changes)."""
        return self.state

    def snapshot(self) -> RuleSet:
        """This version itself (a RuleSet never changes)."""
        return self

    def match(self, pkt: Packet) -> int:
        """Index in `rules` of the first rule the parsed packet matches, -1 if none."""
        return int(self.kernel_methods["match"](self.state, pkt.pool.data, pkt.pool.meta,
                                                pkt.b))

    def output(self, pkt: Packet) -> int:
        """Flow number of the first matching rule: Accept 1, Reject 0; 0 when none match."""
        return int(self.kernel_methods["output"](self.state, pkt.pool.data, pkt.pool.meta,
                                                 pkt.b))

    def permit(self, pkt: Packet) -> bool:
        """Whether the first matching rule's output is non-zero; False when none match."""
        return bool(self.kernel_methods["permit"](self.state, pkt.pool.data, pkt.pool.meta,
                                                  pkt.b))

    def classify(self, batch: Batch, out: np.ndarray | None = None) -> np.ndarray:
        """Outputs of every packet of a parsed batch (int32), in one native call."""
        if out is None:
            out = np.empty(batch.n, dtype=np.int32)
        type(self).batch_kernel(self.state, batch.pool.data, batch.pool.meta, batch.idx,
                                batch.n, out)
        return out

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source} v{self.version}: {len(self.rules)} rules>"


class L3RuleSet(RuleSet):
    """A compiled L3/L4 table (IPv4 and IPv6 5-tuple rules)."""

    kernel_methods: ClassVar[dict[str, Callable]] = {
        "permit": K.l3_permit, "output": K.l3_output, "match": K.l3_match,
    }
    batch_kernel = staticmethod(K.l3_classify_batch)

    @staticmethod
    def _build(rules: tuple) -> tuple[np.ndarray, ...]:
        return build_l3(rules)


class L2RuleSet(RuleSet):
    """A compiled Ethernet table (MACs, ethertype, VLAN id)."""

    kernel_methods: ClassVar[dict[str, Callable]] = {
        "permit": K.l2_permit, "output": K.l2_output, "match": K.l2_match,
    }
    batch_kernel = staticmethod(K.l2_classify_batch)

    @staticmethod
    def _build(rules: tuple) -> tuple[np.ndarray, ...]:
        return build_l2(rules)


class RuleTable:
    """A live rule table: the current RuleSet, optionally bound to a file and watched.

    Use `L3Rules` or `L2Rules`. The methods `permit`, `output`, `match`, `classify` and
    `kernel_state` act on the version current at the call; for a batch classified
    packet by packet in Python, take `snapshot()` once and use its methods.
    """

    set_class: ClassVar[type[RuleSet]]
    kernel_methods: ClassVar[dict[str, Callable]]
    batch_kernel: ClassVar[Callable]

    def __init__(self, rules: Sequence[Any] = (), source: str = "<rules>",
                 path: str | os.PathLike | None = None) -> None:
        self._current = self.set_class(rules, source)
        self.path = Path(path) if path is not None else None
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._reloads = 0
        self._failures = 0
        self._lock = threading.Lock()  # one reload at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: tuple | None = None
        self._text: str | None = None

    # Construction
    @staticmethod
    def parse_text(text: str, source: str) -> list:
        """Rules of `text` in either form (JSON when it starts with `{`)."""
        raise NotImplementedError

    @classmethod
    def parse(cls, text: str, source: str = "<string>") -> RuleTable:
        """A table from rules text (text table or JSON); raises RuleError."""
        return cls(cls.parse_text(text, source), source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RuleTable:
        """A table bound to a rules file; raises RuleError naming every bad line."""
        started = time.perf_counter()
        signature = _signature(Path(path))
        text = read_rules_file(path)
        table = cls(cls.parse_text(text, str(path)), str(path), path)
        table._current.load_seconds = time.perf_counter() - started
        table._seen, table._text = signature, text
        log.info("%s: loaded version 1 (%d rules) in %.1f ms", path, len(table._current),
                 1000 * table._current.load_seconds)
        return table

    # The current version
    @property
    def current(self) -> RuleSet:
        """The RuleSet in use now."""
        return self._current

    @property
    def version(self) -> int:
        """Number of the active version: 1 at load, +1 at each successful reload."""
        return self._current.version

    @property
    def rules(self) -> tuple:
        return self._current.rules

    def snapshot(self) -> RuleSet:
        """The current version, to classify a whole batch with one version."""
        return self._current

    def kernel_state(self) -> tuple[np.ndarray, ...]:
        """The current version's arrays (one whole version; read once per batch)."""
        return self._current.state

    def match(self, pkt: Packet) -> int:
        """Index of the first rule the parsed packet matches, -1 if none."""
        return self._current.match(pkt)

    def output(self, pkt: Packet) -> int:
        """Flow number of the first matching rule: Accept 1, Reject 0; 0 when none match."""
        return self._current.output(pkt)

    def permit(self, pkt: Packet) -> bool:
        """Whether the first matching rule's output is non-zero; False when none match."""
        return self._current.permit(pkt)

    def classify(self, batch: Batch, out: np.ndarray | None = None) -> np.ndarray:
        """Outputs of every packet of a parsed batch, all by the same version."""
        return self._current.classify(batch, out)

    def __len__(self) -> int:
        return len(self._current)

    def __repr__(self) -> str:
        cur = self._current
        watching = " watched" if self.watching else ""
        return f"<{type(self).__name__} {cur.source} v{cur.version}{watching}: {len(cur)} rules>"

    # Reloading
    def replace(self, rules: Sequence[Any], source: str | None = None) -> int:
        """Install new rules as the next version (atomic swap); returns its number."""
        with self._lock:
            return self._install(rules, source or self._current.source, 0.0)

    def _install(self, rules: Sequence[Any], source: str, started: float) -> int:
        new = self.set_class(rules, source, self._current.version + 1)
        if started:
            new.load_seconds = time.perf_counter() - started
        self._current = new  # the swap: one reference assignment, seen whole by readers
        self._reloads += 1
        return new.version

    def reload(self) -> bool:
        """Read the bound file again now; True if a new version is active.

        An unreadable or invalid file keeps the current rules and is logged and recorded
        in `status()`; an unchanged file is not reloaded.
        """
        if self.path is None:
            raise ValueError("this rule table is not bound to a file")
        with self._lock:
            started = time.perf_counter()
            self._seen = _signature(self.path)
            try:
                text = read_rules_file(self.path)
                if text == self._text:
                    self._last_error = None  # back to the active rules' text
                    return False
                rules = self.parse_text(text, str(self.path))
                version = self._install(rules, str(self.path), started)
            except RuleError as e:
                self._failures += 1
                self._last_error, self._last_error_at = str(e), time.time()
                log.error("%s: reload failed, keeping version %d:\n%s", self.path,
                          self._current.version, e)
                return False
            self._text = text
            self._last_error = None
            log.info("%s: loaded version %d (%d rules) in %.1f ms", self.path, version,
                     len(rules), 1000 * self._current.load_seconds)
            return True

    def watch(self, interval: float = DEFAULT_POLL) -> RuleTable:
        """Reload the bound file whenever it changes, from a daemon thread; returns self.

        The file is polled every `interval` seconds (inode, size, times: a rename-replace
        counts too) and read once it has stayed unchanged for one more poll, so a file
        caught half-written is not loaded.
        """
        if self.path is None:
            raise ValueError("watch() needs a table loaded from a file (use load(path))")
        if self.watching:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch_loop, args=(interval,),
                                        name=f"acl-watch:{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop watching (waits for the watcher thread to end)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def watching(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> RuleTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch_loop(self, interval: float) -> None:
        assert self.path is not None
        pending: tuple | None = None
        while not self._stop.wait(interval):
            try:
                sig = _signature(self.path)
                if sig == self._seen:
                    pending = None
                elif sig is None:
                    self._note_missing()
                    pending = None
                elif sig == pending:
                    self.reload()
                    pending = None
                else:
                    pending = sig  # changed: wait one poll for the writer to finish
            except Exception:  # the watcher must survive anything and keep the rules
                log.exception("%s: watcher error; keeping version %d", self.path,
                              self._current.version)

    def _note_missing(self) -> None:
        message = f"{self.path}: file is missing; keeping version {self._current.version}"
        if self._last_error != message:
            self._failures += 1
            self._last_error, self._last_error_at = message, time.time()
            log.warning("%s", message)
        self._seen = None

    def status(self) -> dict[str, Any]:
        """Statistics: file, active version, its load time, rule count, last error."""
        cur = self._current
        return {
            "file": str(self.path) if self.path else cur.source,
            "version": cur.version,
            "rules": len(cur),
            "loaded_at": cur.loaded_at,
            "load_ms": round(1000 * cur.load_seconds, 3),
            "reloads": self._reloads,
            "failed_reloads": self._failures,
            "last_error": self._last_error,
            "last_error_at": self._last_error_at,
            "watching": self.watching,
        }


def _signature(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class L3Rules(RuleTable):
    """An L3/L4 rule table (NFF-Go's L3 text table or its JSON form)."""

    set_class = L3RuleSet
    kernel_methods = L3RuleSet.kernel_methods
    batch_kernel = staticmethod(K.l3_classify_batch)

    @staticmethod
    def parse_text(text: str, source: str) -> list[L3Rule]:
        return parse_l3_json(text, source) if is_json(text) else parse_l3_text(text, source)


class L2Rules(RuleTable):
    """An Ethernet rule table (NFF-Go's L2 table, optional VLAN column, or JSON)."""

    set_class = L2RuleSet
    kernel_methods = L2RuleSet.kernel_methods
    batch_kernel = staticmethod(K.l2_classify_batch)

    @staticmethod
    def parse_text(text: str, source: str) -> list[L2Rule]:
        return parse_l2_json(text, source) if is_json(text) else parse_l2_text(text, source)
