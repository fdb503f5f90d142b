"""Shared fixtures. Root-only tests are marked `root` and skip with the reason elsewhere."""

from __future__ import annotations

import os

import pytest

from pktflow.packet import Pool

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    skip_root = pytest.mark.skip(reason="needs root (network namespaces, AF_PACKET, AF_XDP)")
    for item in items:
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(skip_root)


@pytest.fixture
def pool() -> Pool:
    """A small private pool, so tests do not share buffers."""
    return Pool(buffers=4096, name="test")
