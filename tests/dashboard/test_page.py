"""The dashboard page in a real headless Chromium (Debian's, driven by Playwright): a running
tutorial step (step 7: NF with a watched rules file, generator on memory wires) shown live;
the numbers on the page are the JSON endpoint's, and a rules-file edit shows up within 2 s."""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from pktflow.flow.dashboard import Board, StatsHTTPServer
from pktflow.tutorial.cli import show_rig
from pktflow.tutorial.runner import STEPS, StepRig

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STEP = 7  # rules1.conf, watched and edited while traffic runs
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} missing (Debian package chromium)")

# Every counter cell of the page, by its place in the snapshot, and the snapshot number.
READ_PAGE = """() => ({
  seq: Number(document.getElementById("seq").textContent),
  cells: Object.fromEntries([...document.querySelectorAll("[data-k]")]
                            .map((e) => [e.dataset.k, e.textContent])),
})"""


@pytest.fixture(scope="module")
def live_step(tmp_path_factory):
    """Step 7 running with traffic at 20 kpps and its dashboard on an ephemeral port."""
    workdir = tmp_path_factory.mktemp("step")
    with StepRig(STEPS[STEP], workdir) as rig:
        server = StatsHTTPServer(Board(interval=0.25), ("127.0.0.1", 0))
        try:
            show_rig(server.board, rig)
            rig.gen.execute("set 0 count 0")
            rig.gen.execute("set 0 pps 20000")
            rig.gen.start([0])
            yield rig, server
        finally:
            rig.gen.stop([0])
            server.close()


@pytest.fixture(scope="module")
def page(live_step):
    from playwright.sync_api import sync_playwright

    _, server = live_step
    with tempfile.TemporaryDirectory(prefix="pktflow-chromium-") as profile, \
            sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 1000})
        try:
            tab = context.new_page()
            tab.requests = []
            tab.errors = []
            tab.on("request", lambda r: tab.requests.append(r.url))
            tab.on("pageerror", lambda e: tab.errors.append(str(e)))
            tab.goto(server.url)
            yield tab
        finally:
            context.close()


def value_at(doc, key: str):
    for part in key.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def shown(value) -> str:
    """How the page writes a JSON value."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def fetch(server: StatsHTTPServer, path: str) -> dict:
    with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=5) as reply:
        return json.loads(reply.read())


def test_page_shows_the_json_endpoint_numbers(live_step, page):
    rig, server = live_step
    page.wait_for_function(
        "() => Number((document.querySelector('[data-k=\"nf.ports.0.rx_packets\"]') || "
        "{textContent: '0'}).textContent.replaceAll(',', '')) > 0", timeout=15000)
    first = page.evaluate(READ_PAGE)
    page.wait_for_function(f"() => Number(document.getElementById('seq').textContent) > "
                           f"{first['seq'] + 1}", timeout=5000)
    now = page.evaluate(READ_PAGE)  # one JS turn: the cells all come from snapshot `seq`
    doc = fetch(server, f"/snapshot?seq={now['seq']}")
    assert doc["seq"] == now["seq"]
    cells = now["cells"]
    for key in ("nf.ports.0.rx_packets", "nf.ports.1.tx_packets", "nf.nodes.1.in",
                "nf.tables.0.version", "nf.tables.0.file", "pktgen.page.5.1.0"):
        assert key in cells, f"{key} is not on the page"
    mismatches = {k: (text, shown(value_at(doc, k))) for k, text in cells.items()
                  if text != shown(value_at(doc, k))}
    assert not mismatches, mismatches
    assert len(cells) > 40
    # Counters moved between the two readings (the page is live, not a still).
    rx = "nf.ports.0.rx_packets"
    assert int(cells[rx].replace(",", "")) > int(first["cells"][rx].replace(",", ""))
    # Rates are drawn (uPlot canvases, one per port of the NF and of the generator).
    assert page.locator(".chart canvas").count() >= 4
    assert page.locator("#graph svg .node").count() == len(doc["nf"]["nodes"])
    edges = sum(len(n["inputs"]) for n in doc["nf"]["nodes"])
    assert edges >= len(doc["nf"]["nodes"]) - 1
    assert page.locator("#graph svg path.edge").count() == edges
    assert page.locator("#graph svg .node.compiled").count() >= 1
    # Offline: every request the page made went to the dashboard server itself.
    assert page.requests and all(u.startswith(server.url) for u in page.requests)
    assert not page.errors
    out = Path(os.environ.get("PKTFLOW_ARTEFACTS", tempfile.gettempdir())) / \
        "pktflow-dashboard.png"
    page.screenshot(path=str(out), full_page=True)
    print(f"screenshot: {out}")


def test_rules_edit_shows_new_version_within_2s(live_step, page):
    rig, _ = live_step
    cell = page.locator('[data-k="nf.tables.0.version"]')
    cell.wait_for(timeout=15000)
    before = int(cell.text_content())
    text = STEPS[STEP].edit.apply(rig.rules_path.read_text())
    tmp = rig.rules_path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, rig.rules_path)  # as editors save
    edited = time.monotonic()
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-k=\"nf.tables.0.version\"]')"
        f".textContent) > {before}", timeout=2000)
    assert time.monotonic() - edited <= 2.0
    assert int(cell.text_content()) == before + 1
    assert page.locator('[data-k="nf.tables.0.last_error"]').text_content() == "none"
