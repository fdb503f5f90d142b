"""Run configurations for `pktflow kpktgen run`: threads, devices and their parameters in
TOML, YAML (if PyYAML is installed) or JSON, checked field by field before anything is
written, so an error names the file and the field.

    dir = "/proc/net/pktgen"      # optional; --dir overrides it
    [[devices]]
    name = "veth0"                # IFACE or IFACE@N
    thread = 0                    # kpktgend_0 (default 0)
    count = 100000
    pkt_size = 60
    dst = "10.0.0.2"
    dst_mac = "02:00:00:00:00:02"
    flags = ["UDPSRC_RND", "NO_TIMESTAMP"]
    udp_src_min = 9
    udp_src_max = 109
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pktflow.kpktgen.control import check_command, check_flag

_DEVICE_KEYS = ("name", "thread")


class ConfigError(ValueError):
    """A run configuration is wrong; the message names the file and the field."""


@dataclass
class DeviceSpec:
    """One device of a run: the interface (file name), its thread, its parameters in the
    order the file gives them (the kernel applies commands in order: pkt_size before rate)."""

    name: str
    thread: int = 0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    devices: list[DeviceSpec]
    dir: str | None = None
    path: Path | None = None

    def by_thread(self) -> dict[int, dict[str, dict[str, Any]]]:
        """`{thread: {device: params}}`, the shape `Pktgen.configure` takes."""
        out: dict[int, dict[str, dict[str, Any]]] = {}
        for d in self.devices:
            out.setdefault(d.thread, {})[d.name] = d.params
        return out

    def where(self, device: str) -> str:
        """`FILE: devices[i] (NAME)` for error messages about one device."""
        for i, d in enumerate(self.devices):
            if d.name == device:
                return f"{self.path}: devices[{i}] ({device})"
        return f"{self.path}: {device}"


def _load(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError(f"{path}: YAML needs PyYAML (pip install pyyaml); or write "
                                  "the same in TOML or JSON") from None
            return yaml.safe_load(text)
        if suffix == ".json":
            return json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {e}") from None
    except Exception as e:  # yaml's own error types (PyYAML is optional)
        if type(e).__module__.startswith("yaml"):
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        raise
    raise ConfigError(f"{path}: unknown format {suffix or '(no suffix)'}: name it .toml, "
                      ".yaml/.yml or .json")


def _check_value(where: str, name: str, value: Any) -> None:
    if name in ("flags", "flag"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(f, str) for f in items):
            raise ConfigError(f"{where}.{name}: expected a list of flag names, got {value!r}")
        for f in items:
            try:
                check_flag(f)
            except ValueError as e:
                raise ConfigError(f"{where}.{name}: {e}") from None
        return
    try:
        check_command(name)
    except ValueError as e:
        raise ConfigError(f"{where}.{name}: {e}") from None
    ok = (isinstance(value, int | str) or
          (name in ("mpls", "imix_weights") and isinstance(value, list)))
    if not ok:
        raise ConfigError(f"{where}.{name}: expected a number or a string, got {value!r}")


def parse_config(doc: Any, path: Path) -> RunConfig:
    """Check a loaded document; every error names `path` and the field."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a table with a `devices` list at the top level")
    unknown = set(doc) - {"devices", "dir"}
    if unknown:
        raise ConfigError(f"{path}: {sorted(unknown)[0]}: unknown setting (known: devices, "
                          "dir)")
    raw = doc.get("devices")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: devices: expected a non-empty list of devices "
                          "([[devices]] tables in TOML)")
    if "dir" in doc and not isinstance(doc["dir"], str):
        raise ConfigError(f"{path}: dir: expected a path, got {doc['dir']!r}")
    devices, seen = [], set()
    for i, d in enumerate(raw):
        where = f"{path}: devices[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a table, got {d!r}")
        name = d.get("name")
        if not isinstance(name, str) or not name or "/" in name or len(name) > 31:
            raise ConfigError(f"{where}.name: expected an interface name (IFACE or IFACE@N), "
                              f"got {name!r}")
        if name in seen:
            raise ConfigError(f"{where}.name: device {name} is listed twice")
        seen.add(name)
        thread = d.get("thread", 0)
        if isinstance(thread, bool) or not isinstance(thread, int) or thread < 0:
            raise ConfigError(f"{where}.thread: expected a thread number (0 for kpktgend_0), "
                              f"got {thread!r}")
        params = {k: v for k, v in d.items() if k not in _DEVICE_KEYS}
        for k, v in params.items():
            _check_value(where, k, v)
        devices.append(DeviceSpec(name, thread, params))
    return RunConfig(devices, doc.get("dir"), path)


def load_config(path: str | Path) -> RunConfig:
    """Read and check a run configuration (format by suffix)."""
    path = Path(path)
    return parse_config(_load(path), path)
