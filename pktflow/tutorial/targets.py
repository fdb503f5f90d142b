"""The tutorial's target table: a host name, or the reserved word `direct`, to the MAC
addresses of the generator's ports 0 and 1 (`examples/tutorial/config.json`)."""

from __future__ import annotations

import json
from pathlib import Path

from pktflow.packet.addr import AddressError, MACAddr

DIRECT = "direct"  # the generator of `pktflow tutorial`, in the same process as the NF


class TargetError(ValueError):
    """The target table or a target name is wrong; the message names the file and entry."""


def read_target_table(path: str | Path) -> dict[str, tuple[MACAddr, MACAddr]]:
    """Parse a target table; raises TargetError naming the file and the bad entry."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise TargetError(f"{path}: {e}") from None
    if not isinstance(doc, dict):
        raise TargetError(f'{path}: expected {{"host": ["MAC of port 0", "MAC of port 1"]}}')
    table = {}
    for host, macs in doc.items():
        if not (isinstance(macs, list) and len(macs) == 2):
            raise TargetError(f'{path}: "{host}": expected a list of two MAC addresses')
        try:
            table[host] = (MACAddr(macs[0]), MACAddr(macs[1]))
        except (AddressError, TypeError, ValueError) as e:
            raise TargetError(f'{path}: "{host}": {e}') from None
    return table


def target_macs(path: str | Path, target: str) -> tuple[MACAddr, MACAddr]:
    """The two generator MACs that `target` names in the table at `path`."""
    table = read_target_table(path)
    if target not in table:
        known = ", ".join(sorted(table)) or "none"
        raise TargetError(f'{path}: no target "{target}" (known: {known})')
    return table[target]
