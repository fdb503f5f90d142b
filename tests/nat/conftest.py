"""Fixtures: a running NAT on memory ports (see nat_helpers.NatRig)."""

from __future__ import annotations

from typing import Any

import pytest
from nat_helpers import NatRig


@pytest.fixture
def rig():
    """rig(doc=None, mode=None) -> NatRig; every rig is stopped and closed after the test,
    and its accounting must add up."""
    made: list[NatRig] = []

    def make(doc: dict[str, Any] | None = None, mode: str | None = None) -> NatRig:
        r = NatRig(doc, mode)
        made.append(r)
        return r

    yield make
    for r in made:
        final = r.close()
        cons = final["conservation"]
        assert cons["balanced"] and cons["exact"], cons
