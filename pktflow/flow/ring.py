"""Rings between graph segments: bounded multi-producer multi-consumer queues of buffer
indices. Producers and consumers take one lock per batch; the copying is compiled."""

from __future__ import annotations

import threading

import numpy as np

from pktflow.flow.batchops import ring_get, ring_put


class Ring:
    """Up to `size` packet indices in arrival order."""

    def __init__(self, size: int, name: str) -> None:
        self.name = name
        self.slots = np.empty(size, dtype=np.int32)
        self.head = 0  # packets ever pushed
        self.tail = 0  # packets ever popped
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self.slots)

    def __len__(self) -> int:
        return self.head - self.tail

    def push(self, idx: np.ndarray, start: int, n: int) -> int:
        """Append as many of `idx[start:start+n]` as fit; returns how many went in."""
        with self._lock:
            take = min(n, len(self.slots) - (self.head - self.tail))
            if take > 0:
                ring_put(self.slots, self.head, idx[start:], take)
                self.head += take
        return take

    def pop(self, out: np.ndarray, at: int, max_n: int) -> int:
        """Move up to `max_n` indices into `out[at:]`; returns how many."""
        if self.head == self.tail:
            return 0
        with self._lock:
            take = min(max_n, self.head - self.tail)
            if take > 0:
                ring_get(self.slots, self.tail, out, at, take)
                self.tail += take
        return take

    def __repr__(self) -> str:
        return f"<Ring {self.name} {len(self)}/{self.size}>"
