"""Configuration of a flow system: cores, batch and ring sizes, scheduler, pool, statistics.

A `FlowConfig` comes from keyword arguments, a JSON or TOML file (`--config FILE`, the same
file may also hold the port table under "ports") or the command line. Every bad value gets
a `ConfigError` naming the field (and the file).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MODES = ("auto", "compiled", "interpreted")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and, if any, the file."""


def parse_cores(text: str | int | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """'0-3,6' or [0, 1] -> (0, 1, 2, 3, 6); an int N means the first N allowed CPUs."""
    allowed = sorted(os.sched_getaffinity(0))
    if isinstance(text, bool):
        raise ConfigError(f"cores: expected a CPU list like 0-1,3 or a count, got {text!r}")
    if isinstance(text, int):
        if not 1 <= text <= len(allowed):
            raise ConfigError(f"cores: {text} cores asked for, this process may use "
                              f"{len(allowed)} ({_fmt(allowed)})")
        return tuple(allowed[:text])
    if isinstance(text, list | tuple):
        cores = {int(c) for c in text}
    else:
        cores = set()
        for part in str(text).split(","):
            part = part.strip()
            lo, dash, hi = part.partition("-")
            try:
                cores.update(range(int(lo), int(hi) + 1) if dash else [int(lo)])
            except ValueError:
                raise ConfigError(f'cores: bad CPU list "{text}": expected for example '
                                  f"0-1,3") from None
    bad = sorted(cores - set(allowed))
    if bad or not cores:
        raise ConfigError(f"cores: CPU(s) {_fmt(bad) or 'none'} not available to this "
                          f"process (allowed: {_fmt(allowed)})")
    return tuple(sorted(cores))


def _fmt(cpus: list[int]) -> str:
    return ",".join(map(str, cpus))


def parse_address(text: str | int | None) -> tuple[str, int] | None:
    """'8080' -> ('127.0.0.1', 8080); 'HOST:PORT' as given; None or '' -> disabled."""
    if text is None or text == "":
        return None
    host, colon, port = str(text).rpartition(":")
    host = host.strip("[]") if colon else ""
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f'stats: bad address "{text}": expected PORT or HOST:PORT') from None
    if not 0 <= number <= 65535:
        raise ConfigError(f'stats: port {number} in "{text}" is out of range 0-65535')
    return (host or "127.0.0.1", number)


@dataclass(frozen=True)
class FlowConfig:
    """Settings of one `System`; see docs/flow.md for each field."""

    cores: tuple[int, ...] = field(default_factory=lambda: tuple(sorted(os.sched_getaffinity(0))))
    batch_size: int = 256  # packets per receive, kernel call and send
    ring_size: int = 16384  # packets a ring between graph segments holds
    ring_wait: float = 0.05  # seconds a producer waits on a full ring before queue-full drops
    scheduler_interval: float = 0.2  # seconds between the scheduler's scaling decisions
    pool_size: int | None = None  # buffers of a private pool; None shares default_pool()
    stats: tuple[str, int] | None = None  # HTTP statistics address, None = off
    stats_public: bool = False  # let `stats` be a non-loopback address (open to the network)
    log_interval: float = 0.0  # seconds between one-line logs, 0 = off
    mode: str = "auto"  # compile user functions: auto, compiled, interpreted

    def __post_init__(self) -> None:
        object.__setattr__(self, "cores", parse_cores(self.cores))
        if isinstance(self.stats, str | int):
            object.__setattr__(self, "stats", parse_address(self.stats))
        checks = (
            ("batch_size", 1 <= self.batch_size <= 65536, "a whole number from 1 to 65536"),
            ("ring_size", 1 <= self.ring_size <= 1 << 24, "a whole number from 1 to 2**24"),
            ("ring_wait", 0 <= self.ring_wait <= 60, "seconds from 0 to 60"),
            ("scheduler_interval", 0.01 <= self.scheduler_interval <= 3600,
             "seconds from 0.01 to 3600"),
            ("pool_size", self.pool_size is None or self.pool_size >= 64,
             "a number of buffers >= 64, or null for the shared pool"),
            ("log_interval", 0 <= self.log_interval <= 86400, "seconds >= 0 (0 = off)"),
            ("mode", self.mode in MODES, f"one of {', '.join(MODES)}"),
            ("stats_public", isinstance(self.stats_public, bool), "true or false"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{name}: {getattr(self, name)!r} is wrong: expected {expected}")
        if self.ring_size < self.batch_size:
            raise ConfigError(f"ring_size: {self.ring_size} is smaller than batch_size "
                              f"{self.batch_size}; a ring must hold at least one batch")

    @property
    def max_clones(self) -> int:
        """Most clones the scheduler makes of one segment: one per allowed core."""
        return len(self.cores)

    def with_values(self, **values: Any) -> FlowConfig:
        """A copy with some fields changed (None values are ignored)."""
        return make_config(self, {k: v for k, v in values.items() if v is not None})

    @classmethod
    def from_file(cls, path: str | Path) -> FlowConfig:
        """Read a JSON or TOML (by suffix) file; a "ports" table in it is left for PortTable."""
        path = Path(path)
        try:
            text = path.read_text()
            doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: cannot read config: {e}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: expected an object of settings at the top level")
        doc = {k: v for k, v in doc.items() if k != "ports"}
        try:
            return make_config(cls(), doc)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


def make_config(base: FlowConfig, values: dict[str, Any]) -> FlowConfig:
    """`base` with `values` applied, each checked by name and type."""
    known = {f.name: f for f in fields(FlowConfig)}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f'unknown setting "{key}" (known: {", ".join(known)})')
        if key in ("batch_size", "ring_size", "pool_size") and value is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{key}: {value!r} is not a whole number")
        if key in ("ring_wait", "scheduler_interval", "log_interval"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{key}: {value!r} is not a number of seconds")
        clean[key] = value
    return replace(base, **clean)
