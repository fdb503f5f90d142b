"""The statistics server under bad clients (raw sockets on loopback), its endpoints, and
where it may listen. Each refusal is a 4xx the client can read, and the NF keeps forwarding
and the server keeps answering afterwards."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from pktflow.cli import main as cli_main
from pktflow.flow import dashboard as dash
from pktflow.flow.dashboard import BindError, Board, StatsHTTPServer


def raw(address: tuple[str, int], data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` as is and return everything the server answers until it closes."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


def status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def get(address: tuple[str, int], path: str) -> tuple[int, bytes]:
    host, port = address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def assert_still_serving(fw) -> None:
    before = fw.forwarded()
    code, body = get(fw.address, "/stats")
    assert code == 200 and json.loads(body)["running"] is True
    deadline = time.monotonic() + 5
    while fw.forwarded() == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fw.forwarded() > before, "the NF stopped forwarding"


BAD_REQUESTS = [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),
    (b"GET /stats HTTP/1.1\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (k, b"b" * 200)
                                           for k in range(90)) + b"\r\n", 431),
    (b"POST /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}", 405),
    (b"DELETE / HTTP/1.0\r\n\r\n", 405),
    (b"BREW /pot HTTP/1.1\r\n\r\n", 405),
    (b"GET /stats HTTP/2.0\r\n\r\n", 505),
    (b"GET /stats HTTP/1.x\r\n\r\n", 400),
    (b"GET /stats FTP/1.0\r\n\r\n", 400),
    (b"GET /stats\r\n\r\n", 400),  # HTTP/0.9: no version, no headers
    (b"GET  /stats HTTP/1.1\r\n\r\n", 400),
    (b"GET http://example.com/stats HTTP/1.1\r\n\r\n", 400),
    (b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 404),
    (b"GET /static/../server.py HTTP/1.1\r\n\r\n", 404),
    (b"GET /stats/other HTTP/1.1\r\n\r\n", 404),
    (b"GET /snapshot?seq=abc HTTP/1.1\r\n\r\n", 400),
    (b"GET /snapshot?seq=999999 HTTP/1.1\r\n\r\n", 404),
    (b"GET /stats HTTP/1.1\r\nHost: attacker.example\r\n\r\n", 421),
    (b"GET /stats HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n", 400),
    (b"GET /st\x00ats HTTP/1.1\r\n\r\n", 400),
]


@pytest.mark.parametrize("request_bytes,expected", BAD_REQUESTS,
                         ids=[str(code) + ":" + repr(r[:24]) for r, code in BAD_REQUESTS])
def test_bad_request_gets_4xx_and_server_keeps_serving(forwarder, request_bytes, expected):
    reply = raw(forwarder.address, request_bytes)
    assert status(reply) == expected, reply[:300]
    assert b"\r\n\r\n" in reply  # a whole response, with a reason the user can read
    assert_still_serving(forwarder)


def test_slow_client_is_dropped_and_others_are_served_meanwhile(forwarder, monkeypatch):
    monkeypatch.setattr(dash, "HEAD_SECONDS", 0.6)
    slow = [socket.create_connection(forwarder.address, timeout=5) for _ in range(5)]
    try:
        for s in slow:
            s.sendall(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # then nothing
        started = time.monotonic()
        code, _ = get(forwarder.address, "/stats")
        assert code == 200 and time.monotonic() - started < 0.5  # not queued behind them
        for s in slow:
            reply = s.recv(4096)
            assert status(reply) == 408
            assert time.monotonic() - started < 3
    finally:
        for s in slow:
            s.close()
    assert_still_serving(forwarder)


def test_connection_flood_gets_503_then_service_resumes(forwarder, monkeypatch):
    monkeypatch.setattr(dash, "MAX_CONNECTIONS", 20)
    idle = []
    try:
        for _ in range(20):
            idle.append(socket.create_connection(forwarder.address, timeout=5))
        codes = []
        deadline = time.monotonic() + 5
        while 503 not in codes and time.monotonic() < deadline:  # the accepts are queued
            codes.append(status(raw(forwarder.address, b"GET /stats HTTP/1.0\r\n\r\n")))
        assert codes[-1] == 503
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 5
    while get(forwarder.address, "/stats")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_still_serving(forwarder)


def test_page_that_stops_reading_is_dropped(forwarder, monkeypatch):
    monkeypatch.setattr(dash, "STREAM_SNDBUF", 4096)
    monkeypatch.setattr(dash, "WRITE_SECONDS", 0.5)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(forwarder.address)
        s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(10)  # reads nothing: both buffers fill within a few snapshots
        s.settimeout(3)
        received = b""
        while chunk := s.recv(65536):  # the server ended the stream: EOF, not a timeout
            received += chunk
    assert b"\nid: " in received
    assert_still_serving(forwarder)


def test_head_and_endpoints(forwarder):
    forwarder.wait_moving()
    reply = raw(forwarder.address, b"HEAD /stats HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status(reply) == 200 and reply.endswith(b"\r\n\r\n")  # headers, no body
    code, page = get(forwarder.address, "/")
    assert code == 200 and b'src="/static/dashboard.js"' in page
    for path in ("/static/dashboard.js", "/static/dashboard.css",
                 "/static/vendor/uPlot.iife.min.js", "/static/vendor/uPlot.min.css"):
        code, body = get(forwarder.address, path)
        assert code == 200 and len(body) > 500, path
    code, body = get(forwarder.address, "/metrics")
    assert code == 200 and b'pktflow_node_in_packets_total{node="0",op="receiver"' in body
    code, body = get(forwarder.address, "/snapshot")
    snap = json.loads(body)
    assert snap["nf"]["ports"]["1"]["tx_packets"] > 0
    code, again = get(forwarder.address, f"/snapshot?seq={snap['seq']}")
    assert code == 200 and again == body  # the same numbered snapshot, byte for byte


def test_event_stream_sends_numbered_snapshots(forwarder):
    forwarder.wait_moving()
    with socket.create_connection(forwarder.address, timeout=5) as s:
        s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"\ndata: ") < 3 and time.monotonic() < deadline:
            data += s.recv(65536)
    head, _, stream = data.partition(b"\r\n\r\n")
    assert b"text/event-stream" in head
    events = [e for e in stream.split(b"\n\n") if e.startswith(b"id: ")]
    seqs = [int(e.split(b"\n")[0][4:]) for e in events]
    assert len(seqs) >= 2 and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    docs = [json.loads(e.split(b"\ndata: ", 1)[1]) for e in events[:2]]
    assert docs[0]["nf"]["ports"]["1"]["tx_packets"] <= docs[1]["nf"]["ports"]["1"][
        "tx_packets"]


def test_a_page_that_leaves_frees_its_connection_at_once():
    board = Board(interval=1.0)
    board.attach("n", lambda: {"n": 1})
    server = StatsHTTPServer(board, ("127.0.0.1", 0))
    try:
        pages = [socket.create_connection(server.address, timeout=5) for _ in range(20)]
        for s in pages:
            s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while b"\nid: " not in data:  # the newest snapshot comes at once
                data += s.recv(65536)
        assert board.streams == 20
        for s in pages:
            s.close()
        left = time.monotonic()
        while server.connections and time.monotonic() - left < 5:
            time.sleep(0.01)
        assert server.connections == 0 and board.streams == 0
        assert time.monotonic() - left < 0.5  # not at the next snapshot, 1 s later
    finally:
        server.close()


def test_a_failing_source_shows_its_error_and_the_others_still_serve():
    def broken() -> dict:
        raise RuntimeError("counters gone")

    board = Board(interval=0.05)
    board.attach("good", lambda: {"n": 1}, lambda doc: f"good_total {doc['n']}\n")
    board.attach("bad", broken, lambda doc: "never\n")
    board.attach("odd", lambda: {"not json": {1, 2}})  # a set: shown as text
    server = StatsHTTPServer(board, ("127.0.0.1", 0))
    try:
        code, body = get(server.address, "/stats/bad")
        assert code == 200 and "counters gone" in json.loads(body)["error"]
        code, body = get(server.address, "/metrics")
        assert code == 200 and b"good_total 1" in body and b"counters gone" in body
        code, body = get(server.address, "/snapshot")
        doc = json.loads(body)
        assert code == 200 and doc["good"] == {"n": 1} and doc["odd"] == {"not json": "{1, 2}"}
    finally:
        server.close()


def test_non_local_bind_needs_public_flag_and_warns(caplog):
    with pytest.raises(BindError, match="--stats-public"):
        StatsHTTPServer(Board(), ("0.0.0.0", 0))
    for host in ("127.0.0.1", "localhost", "::1"):
        assert dash.is_local(host)
    assert not dash.is_local("0.0.0.0") and not dash.is_local("example.com")
    with caplog.at_level(logging.WARNING, logger="pktflow.flow.dashboard"):
        server = StatsHTTPServer(Board(), ("0.0.0.0", 0), public=True)
        server.close()
    assert "open to the network" in caplog.text


def test_cli_refuses_non_local_stats_without_flag(tmp_path, capsys):
    program = tmp_path / "nf.py"
    program.write_text("def build(nf):\n    nf.sender(nf.receiver(0), 0)\n")
    assert cli_main(["flow", "run", str(program), "--port", "0=mem:dashcli", "--duration",
                     "0.2", "--stats", "0.0.0.0:0"]) == 2
    assert "--stats-public" in capsys.readouterr().err
    assert cli_main(["pktgen", "--port", "0=mem:dashg", "--run-for", "0.1", "--stats",
                     "0.0.0.0:0"]) == 2
    assert "--stats-public" in capsys.readouterr().err


def test_pktgen_cli_serves_its_ports(tmp_path):
    """`pktflow pktgen --stats` serves the generator's counters and Main Page rows."""
    proc = subprocess.Popen([sys.executable, "-m", "pktflow", "pktgen", "--port", "0=mem:dashp",
                             "--port", "1=mem:dashp",
                             "--run-for", "30", "--stats", "127.0.0.1:0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = proc.stderr.readline()
        assert "dashboard on http://127.0.0.1:" in line, line
        url = line.split("dashboard on ")[1].split()[0]
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        deadline = time.monotonic() + 20
        doc: dict = {}
        while time.monotonic() < deadline:
            code, body = get((host, int(port)), "/snapshot")
            doc = json.loads(body)["pktgen"]
            if doc["ports"]["0"]["tx_packets"] > 0:
                break
            time.sleep(0.1)
        assert doc["ports"]["0"]["tx_packets"] > 0
        labels = [row[0] for row in doc["page"]]
        assert "Pkts/s Rx:Tx" in labels and "Total Rx Pkts" in labels
        code, body = get((host, int(port)), "/metrics")
        assert code == 200 and b'pktflow_pktgen_tx_packets_total{port="0"}' in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_every_page_file_ships_with_the_package():
    """pyproject's package-data covers each file of the page (a wheel without them would
    serve no page)."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["pktflow.flow"]
    static = root / "pktflow" / "flow" / "static"
    files = [p.relative_to(static.parent).as_posix() for p in static.rglob("*") if p.is_file()]
    assert "static/vendor/uPlot.iife.min.js" in files

    def covered(name: str, pattern: str) -> bool:  # setuptools' glob: * stays in one folder
        parts, globs = name.split("/"), pattern.split("/")
        return len(parts) == len(globs) and all(map(fnmatch.fnmatchcase, parts, globs))

    missing = [f for f in files if not any(covered(f, pat) for pat in patterns)]
    assert not missing, f"add to [tool.setuptools.package-data]: {missing}"
