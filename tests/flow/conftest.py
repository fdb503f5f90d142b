"""Fixtures for flow tests: an NF on memory ports plus the peer ends a test drives."""

from __future__ import annotations

import pytest

from tests.memrig import Rig


@pytest.fixture
def rig():
    """rig(nports, **config) -> Rig; every rig is closed after the test."""
    made: list[Rig] = []

    def make(nports: int = 2, **config) -> Rig:
        r = Rig(nports, **config)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
