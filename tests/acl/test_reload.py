"""Watched rule files: pick-up of edits, atomic swaps under load, invalid edits kept out."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest
from acl_helpers import Pkt, parsed_batch

from pktflow.acl import L3Rules, RuleError
from pktflow.packet import Packet

RULES1 = ("111.2.0.0/31 ANY ANY ANY ANY Accept\n"
          "111.2.0.2/32 ANY ANY ANY ANY Reject\n"
          "ANY ANY ANY ANY ANY Accept\n")
RULES1_EDITED = RULES1.replace("111.2.0.2/32", "111.2.0.2/31")
WAIT = 5.0  # generous bound for a 100 ms poll on a busy machine; not a speed check


def _wait_for(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _write_by_rename(path: Path, text: str) -> None:
    """How editors save: write a new file, rename it over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def tutorial_batch(pool):
    sources = [0x6F020000 + i for i in range(4)]
    return parsed_batch(pool, [Pkt(4, s, 0x0A000001).frame() for s in sources])


@pytest.mark.parametrize("write", [Path.write_text, _write_by_rename],
                         ids=["in-place", "rename"])
def test_watched_table_picks_up_an_edit(tmp_path, tutorial_batch, write):
    path = tmp_path / "rules1.conf"
    path.write_text(RULES1)
    with L3Rules.load(path).watch(interval=0.05) as rules:
        assert rules.watching
        assert rules.classify(tutorial_batch).tolist() == [1, 1, 0, 1]
        write(path, RULES1_EDITED)
        assert _wait_for(lambda: rules.version == 2)
        assert rules.classify(tutorial_batch).tolist() == [1, 1, 0, 0]
        status = rules.status()
        assert status["version"] == 2 and status["file"] == str(path)
        assert status["rules"] == 3 and status["last_error"] is None
        assert status["loaded_at"] <= time.time() and status["load_ms"] > 0
    assert not rules.watching


def test_invalid_edit_keeps_the_old_rules_and_reports_file_and_line(tmp_path, tutorial_batch,
                                                                    caplog):
    path = tmp_path / "rules2.conf"
    path.write_text("111.2.0.0/31 ANY ANY ANY ANY 1\n111.2.0.2/32 ANY ANY ANY ANY 0\n"
                    "ANY ANY ANY ANY ANY 2\n")
    caplog.set_level(logging.INFO, logger="pktflow.acl")
    with L3Rules.load(path).watch(interval=0.05) as rules:
        _write_by_rename(path, path.read_text() + "111.2.0.300/31 ANY ANY ANY ANY 1\n")
        assert _wait_for(lambda: rules.status()["last_error"] is not None)
        assert rules.version == 1
        assert rules.classify(tutorial_batch).tolist() == [1, 1, 0, 2]
        error = rules.status()["last_error"]
        assert f'{path}:4: bad CIDR "111.2.0.300/31"' in error
        assert _wait_for(lambda: any(r.levelname == "ERROR" and "keeping version 1"
                                     in r.getMessage() and "rules2.conf:4" in r.getMessage()
                                     for r in caplog.records))
        # Fixing the file loads it and clears the error.
        _write_by_rename(path, "ANY ANY ANY ANY ANY 2\n")
        assert _wait_for(lambda: rules.version == 2)
        assert rules.classify(tutorial_batch).tolist() == [2, 2, 2, 2]
        # The watcher swaps the rules in first, then clears the error and logs: wait for
        # those too rather than read them in the same instant as the swap.
        assert _wait_for(lambda: rules.status()["last_error"] is None)
        assert _wait_for(lambda: any(r.levelname == "INFO" and "loaded version 2"
                                     in r.getMessage() for r in caplog.records))
        assert rules.status()["failed_reloads"] == 1


def test_deleted_file_keeps_rules_until_it_returns(tmp_path, tutorial_batch):
    path = tmp_path / "rules.conf"
    path.write_text(RULES1)
    with L3Rules.load(path).watch(interval=0.05) as rules:
        path.unlink()
        assert _wait_for(lambda: "missing" in (rules.status()["last_error"] or ""))
        assert rules.classify(tutorial_batch).tolist() == [1, 1, 0, 1]
        path.write_text(RULES1_EDITED)
        assert _wait_for(lambda: rules.version == 2)


def test_reload_without_watching_and_unchanged_file(tmp_path):
    path = tmp_path / "r.conf"
    path.write_text(RULES1)
    rules = L3Rules.load(path)
    assert rules.reload() is False  # same text: no new version
    path.write_text(RULES1_EDITED)
    assert rules.reload() is True and rules.version == 2
    path.write_text("garbage\n")
    assert rules.reload() is False and rules.version == 2
    with pytest.raises(ValueError, match="needs a table loaded from a file"):
        L3Rules.parse(RULES1).watch()
    with pytest.raises(ValueError, match="not bound to a file"):
        L3Rules.parse(RULES1).reload()


def test_no_batch_is_classified_by_a_mix_of_versions(tmp_path, pool):
    """A classifier thread runs batches while the file flips between two tables whose
    outputs differ for every packet; each batch must show exactly one table's outputs."""
    table_a = "".join(f"111.2.{i}.0/24 ANY ANY ANY ANY 1\n" for i in range(200)) + \
        "ANY ANY ANY ANY ANY 1\n"
    table_b = "".join(f"111.2.{i}.0/24 ANY tcp ANY ANY 2\n" for i in range(200)) + \
        "ANY ANY ANY ANY ANY 2\n"
    path = tmp_path / "flip.conf"
    path.write_text(table_a)
    batch = parsed_batch(pool, [Pkt(4, 0x6F020000 | (i << 8) | i, 1).frame()
                                for i in range(256)])
    views = [Packet(pool, b) for b in batch.idx[:16]]
    mixed, seen, batches = [], set(), [0]
    stop = threading.Event()

    def classify_forever() -> None:
        while not stop.is_set():
            out = rules.classify(batch)
            values = set(out.tolist())
            snap = rules.snapshot()  # the interpreted path pins one version per batch too
            per_packet = {snap.output(v) for v in views}
            if len(values) != 1 or len(per_packet) != 1:
                mixed.append((values, per_packet))
            seen.update(values)
            batches[0] += 1

    with L3Rules.load(path).watch(interval=0.01) as rules:
        worker = threading.Thread(target=classify_forever, daemon=True)
        worker.start()
        try:
            deadline = time.monotonic() + 20
            flips = 0
            while flips < 30 and time.monotonic() < deadline:
                before = rules.version
                text = table_b if flips % 2 == 0 else table_a
                (_write_by_rename if flips % 3 else Path.write_text)(path, text)
                _wait_for(lambda v=before: rules.version > v, timeout=2)
                flips += 1
        finally:
            stop.set()
            worker.join(5)
    assert not mixed
    assert seen == {1, 2}
    assert rules.version >= 20 and batches[0] > 30


def test_replace_swaps_in_rules_built_in_code(tutorial_batch):
    rules = L3Rules.parse(RULES1)
    old = rules.snapshot()
    version = rules.replace(L3Rules.parse("ANY ANY ANY ANY ANY 7").rules)
    assert version == 2 == rules.version
    assert rules.classify(tutorial_batch).tolist() == [7] * 4
    assert old.classify(tutorial_batch).tolist() == [1, 1, 0, 1]  # a snapshot never changes


def test_load_errors_raise_and_install_nothing(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("ANY ANY ANY ANY ANY Accept\nANY ANY tcp 99999 ANY 1\n")
    with pytest.raises(RuleError, match=r"bad\.conf:2: bad source port \"99999\""):
        L3Rules.load(path)


def test_a_table_too_large_to_compile_is_refused_like_a_bad_file(tmp_path, tutorial_batch,
                                                                monkeypatch):
    path = tmp_path / "big.conf"
    path.write_text(RULES1)
    rules = L3Rules.load(path)
    monkeypatch.setattr("pktflow.acl.build.MAX_TABLE_BYTES", 256)
    path.write_text("".join(f"10.0.{i}.0/24 ANY ANY ANY {i} 1\n" for i in range(100)))
    assert rules.reload() is False
    assert "need more than" in rules.status()["last_error"]
    assert rules.version == 1 and rules.classify(tutorial_batch).tolist() == [1, 1, 0, 1]
    with pytest.raises(RuleError, match=r"big\.conf: 100 rules"):
        L3Rules.load(path)
