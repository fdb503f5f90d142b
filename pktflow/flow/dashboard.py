"""The one statistics HTTP server of pktflow: JSON, Prometheus text, the live page, its events.

A `Board` holds named sources ("nf", "pktgen"): functions that return a JSON-ready
snapshot. `StatsHTTPServer` serves them from daemon threads:

    /               the dashboard page (pktflow/flow/static)
    /stats          the first source's snapshot, fresh (`/stats/NAME` for another one)
    /snapshot       every source at once, numbered: {"seq", "time", "nf", "pktgen"};
                    `?seq=N` returns published snapshot N again (the last 64 are kept)
    /events         server-sent events: one numbered snapshot per `interval` seconds
    /metrics        Prometheus text of every source that has a renderer

Snapshots for `/events` are taken once per tick by one publisher thread, whatever the number
of clients, and only while a client listens; the same thread writes each to every stream
without blocking: the NF pays for one snapshot per tick, not one per page. Requests are
read with hard limits (request line, header block, time to send them, concurrent
connections); anything else gets a 4xx and the connection is closed, so a slow or garbage
client holds one thread for a few seconds at most, and never the NF.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import http.client
import io
import ipaddress
import json
import logging
import mimetypes
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Snapshot = Callable[[], dict[str, Any]]
Metrics = Callable[[dict[str, Any]], str]

STATIC = Path(__file__).resolve().parent / "static"
MAX_REQUEST_LINE = 8192  # bytes; longer: 414
MAX_HEAD = 16384  # request line plus headers; larger: 431
HEAD_SECONDS = 5.0  # a client must send its whole request head within this time
WRITE_SECONDS = 5.0  # a client that takes longer to take a reply (or an event) is dropped
MAX_CONNECTIONS = 256  # open connections at once (pages hold one each); beyond: 503
STREAM_SNDBUF = 256 * 1024  # kernel send buffer of one event stream, bytes
KEEP = 64  # published snapshots kept for /snapshot?seq=N
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
log = logging.getLogger(__name__)


class BindError(ValueError):
    """The statistics address is not allowed or cannot be bound; the message says why."""


def is_local(host: str) -> bool:
    """True for loopback addresses and localhost: reachable from this machine only."""
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# send(2) through ctypes.PyDLL, which keeps the GIL during the call. A non-blocking send
# takes microseconds; socket.send would release the GIL and wait to win it back from a busy
# worker after every page (up to the 5 ms switch interval each): one fan-out to 100 pages
# could then take half a second and hand the GIL over 100 times instead of once.
LIBC_SEND = ctypes.PyDLL(None, use_errno=True).send
LIBC_SEND.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int)
LIBC_SEND.restype = ctypes.c_ssize_t
SEND_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL


def send_now(fd: int, data: bytes) -> int:
    """Write what the socket takes now (0 when its buffer is full); OSError if it failed."""
    sent = LIBC_SEND(fd, data, len(data), SEND_FLAGS)
    if sent >= 0:
        return sent
    err = ctypes.get_errno()
    if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
        return 0
    raise OSError(err, os.strerror(err))


class EventStream:
    """One client of /events: its socket and the part of an event not yet written."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pending = b""
        self.stuck_since: float | None = None
        self.done = threading.Event()


class Board:
    """Named snapshot sources and the numbered snapshots published from them."""

    def __init__(self, interval: float = 0.5) -> None:
        if not 0.01 <= interval <= 1.0:
            raise ValueError(f"interval {interval}: expected 0.01 to 1 seconds")
        self.interval = interval
        self._sources: dict[str, tuple[Snapshot, Metrics | None]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._history: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=KEEP)
        self._seq = 0
        self._streams: list[EventStream] = []
        self._by_fd: dict[int, EventStream] = {}
        self._poller = select.epoll()
        self._closed = False
        self._publisher: threading.Thread | None = None

    # ---- sources --------------------------------------------------------------------
    def attach(self, name: str, snapshot: Snapshot, metrics: Metrics | None = None) -> None:
        """Serve `snapshot()` under `name` (replacing a source of that name)."""
        with self._lock:
            self._sources[name] = (snapshot, metrics)

    def detach(self, name: str) -> None:
        """Stop serving the source `name` (no error if absent)."""
        with self._lock:
            self._sources.pop(name, None)

    @property
    def names(self) -> list[str]:
        with self._lock:
            return list(self._sources)

    def collect(self, names: list[str] | None = None) -> dict[str, Any]:
        """A fresh snapshot of every source (or of `names`); a source that fails shows its
        error instead."""
        with self._lock:
            sources = [(n, s) for n, s in self._sources.items() if names is None or n in names]
        docs: dict[str, Any] = {}
        for name, (snapshot, _) in sources:
            try:
                docs[name] = snapshot()
            except Exception as e:  # a broken source must not take the server down
                docs[name] = {"error": f"{type(e).__name__}: {e}"}
        return docs

    def metrics(self) -> str:
        """Prometheus text of every source that has a renderer."""
        with self._lock:
            sources = list(self._sources.values())
        parts = []
        for snapshot, render in sources:
            if render is not None:
                try:
                    parts.append(render(snapshot()))
                except Exception as e:  # one broken source must not hide the others
                    message = f"{type(e).__name__}: {e}".replace("\n", " ")
                    parts.append(f"# pktflow: a source failed: {message}\n")
        return "".join(parts)

    # ---- numbered snapshots -----------------------------------------------------------
    def publish(self) -> tuple[int, bytes]:
        """Take a numbered snapshot of every source, keep it, wake the event streams."""
        docs = self.collect()
        with self._lock:
            self._seq += 1
            seq = self._seq
            body = json.dumps({"seq": seq, "time": round(time.time(), 3), **docs},
                              separators=(",", ":"), default=str).encode()
            self._history.append((seq, body))
            self._changed.notify_all()
        return seq, body

    def latest(self) -> tuple[int, bytes] | None:
        """The newest published snapshot (number, JSON), if any."""
        with self._lock:
            return self._history[-1] if self._history else None

    def published(self, seq: int) -> bytes | None:
        """Published snapshot `seq` as JSON, if still kept."""
        with self._lock:
            for n, body in self._history:
                if n == seq:
                    return body
        return None

    def follow(self, sock: socket.socket, first: bytes = b"") -> threading.Event:
        """Hand an event-stream connection to the publisher, which writes `first` and then
        every new snapshot to it; the returned event is set once the stream ended."""
        sock.setblocking(False)
        # A fixed send buffer: bounded kernel memory per page (autotuning could give each
        # of hundreds of pages megabytes) and a page that stops reading is found sooner.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        stream = EventStream(sock)
        with self._lock:
            if self._closed:
                stream.done.set()
                return stream.done
            # Written under the lock, so a page counted in `streams` has had its first
            # event and the publisher's next event cannot come before it.
            try:
                stream.pending = first[send_now(stream.fd, first):] if first else b""
            except OSError:
                stream.done.set()
                return stream.done
            self._streams.append(stream)
            self._by_fd[sock.fileno()] = stream
            self._poller.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
            if self._publisher is None:
                self._publisher = threading.Thread(target=self._publish_loop,
                                                   name="pktflow-dashboard", daemon=True)
                self._publisher.start()
            self._changed.notify_all()
        return stream.done

    @property
    def streams(self) -> int:
        """Event streams open now."""
        with self._lock:
            return len(self._streams)

    def _publish_loop(self) -> None:
        failed = ""
        while True:
            with self._lock:
                while not self._streams and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
            started = time.monotonic()
            try:
                seq, body = self.publish()
            except Exception as e:  # a snapshot that cannot be JSON: say so, keep serving
                if str(e) != failed:
                    failed = str(e)
                    log.warning("dashboard: snapshot failed: %s: %s", type(e).__name__, e)
            else:
                self._fan_out(b"id: %d\ndata: %s\n\n" % (seq, body))
            # Until the next tick, end the streams whose page left (or sent anything: a
            # page sends nothing after its request), so their connections are free at once.
            while (left := self.interval - (time.monotonic() - started)) > 0:
                self._end(self._departed(left))

    def _fan_out(self, event: bytes) -> None:
        """One thread writes to every stream without blocking (a woken thread per page
        would cost the NF a GIL hand-over each); a stream that took nothing for
        WRITE_SECONDS, or failed, is ended. A client still behind skips snapshots."""
        with self._lock:
            streams = list(self._streams)
        ended = []
        now = time.monotonic()
        for s in streams:
            if not s.pending:
                s.pending = event
            try:
                sent = send_now(s.fd, s.pending)
            except OSError:
                ended.append(s)
                continue
            s.pending = s.pending[sent:]
            if not s.pending:
                s.stuck_since = None
            elif s.stuck_since is None:
                s.stuck_since = now
            elif now - s.stuck_since > WRITE_SECONDS:
                ended.append(s)
        self._end(ended)

    def _departed(self, timeout: float) -> list[EventStream]:
        """Streams whose client closed, failed or wrote, waiting up to `timeout`."""
        gone = []
        for fd, _ in self._poller.poll(timeout):
            with self._lock:
                stream = self._by_fd.get(fd)
            if stream is not None:
                gone.append(stream)
        return gone

    def _end(self, streams: list[EventStream]) -> None:
        """Forget `streams` and let their handler threads close the connections."""
        if not streams:
            return
        with self._lock:
            for s in streams:
                if self._by_fd.get(s.fd) is s:
                    del self._by_fd[s.fd]
                    self._poller.unregister(s.fd)
            self._streams = [s for s in self._streams if s not in streams]
        for s in streams:
            s.done.set()

    def close(self) -> None:
        """Stop the publisher and release waiting event streams."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()
            publisher = self._publisher
            streams, self._streams = self._streams, []
            self._by_fd.clear()
        for s in streams:
            s.done.set()
        if publisher is not None:
            publisher.join(timeout=5)
        if publisher is None or not publisher.is_alive():
            self._poller.close()


def load_static() -> dict[str, tuple[bytes, str]]:
    """Every file of the page, by URL path, read once (the page is small)."""
    files = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind == "application/javascript":
                kind += "; charset=utf-8"
            files["/static/" + path.relative_to(STATIC).as_posix()] = (path.read_bytes(), kind)
    return files


class RequestError(Exception):
    """A request the server refuses: HTTP status and the reason sent back."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def read_head(sock: socket.socket, deadline: float) -> bytes | None:
    """The request line and headers, read within limits; None if the client closed."""
    buf = bytearray()
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            end = buf.find(b"\n\n")
        size = end if end >= 0 else len(buf)
        first = buf.find(b"\n", 0, size)
        if (first < 0 and size > MAX_REQUEST_LINE) or first > MAX_REQUEST_LINE:
            raise RequestError(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
        if size > MAX_HEAD:
            raise RequestError(431, f"request head larger than {MAX_HEAD} bytes")
        if end >= 0:
            return bytes(buf[:end])
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RequestError(408, f"request head not received within {HEAD_SECONDS:g} s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise RequestError(408, f"request head not received within "
                                    f"{HEAD_SECONDS:g} s") from None
        if not chunk:
            return None
        buf += chunk


class Handler(BaseHTTPRequestHandler):
    """Serves one request per connection from the server's board and static files."""

    server: StatsHTTPServer
    server_version = "pktflow"
    default_request_version = "HTTP/1.0"  # errors found while parsing get a status line
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s: %(explain)s\n"

    def handle(self) -> None:
        self.close_connection = True
        self.request_version = "HTTP/1.0"
        self.command = None  # type: ignore[assignment]
        self.requestline = ""
        try:
            head = read_head(self.connection, time.monotonic() + HEAD_SECONDS)
            if head is None:
                return
            self.connection.settimeout(WRITE_SECONDS)
            self.serve(head)
        except RequestError as e:
            self.refuse(e.status, str(e))
        except OSError:
            pass  # the client went away or stopped reading: nothing to tell it
        finally:
            self.close_connection = True

    def refuse(self, status: int, reason: str) -> None:
        try:
            self.connection.settimeout(WRITE_SECONDS)
            self.send_error(status, None, reason)
        except OSError:
            pass

    def serve(self, head: bytes) -> None:
        line, _, headers = head.partition(b"\n")
        if len(line) > MAX_REQUEST_LINE:
            raise RequestError(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
        if any(b < 0x20 or b > 0x7e for b in line.rstrip(b"\r")):
            raise RequestError(400, "request line has control or non-ASCII bytes")
        words = line.rstrip(b"\r").split(b" ")
        if len(words) != 3 or not all(words):
            raise RequestError(400, "expected METHOD PATH HTTP/1.x separated by single spaces")
        if not words[2].startswith(b"HTTP/1."):
            if words[2].startswith(b"HTTP/"):
                raise RequestError(505, "only HTTP/1.0 and HTTP/1.1 are served")
            raise RequestError(400, "expected METHOD PATH HTTP/1.x separated by single spaces")
        for field in headers.split(b"\n") if headers.strip() else []:
            name, colon, _ = field.partition(b":")
            if not colon or not name or name != name.strip() or b" " in name:
                raise RequestError(400, "a header line is not NAME: VALUE")
        self.raw_requestline = line.rstrip(b"\r") + b"\r\n"
        self.rfile = io.BytesIO(headers + b"\r\n\r\n")
        try:
            ok = self.parse_request()  # sends 400/431/505 itself
        except http.client.HTTPException:
            raise RequestError(431, "malformed headers") from None
        self.close_connection = True
        if not ok:
            return
        if self.command not in ("GET", "HEAD"):
            raise RequestError(405, f"{self.command} is not served: use GET or HEAD")
        if not self.server.host_allowed(self.headers.get("Host")):
            raise RequestError(421, "Host header names another machine; open the page "
                                    "as http://127.0.0.1:PORT/")
        if not self.path.startswith("/"):
            raise RequestError(400, "the path must start with /")
        self.route()

    def route(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        board = self.server.board
        if path == "/":
            body, kind = self.server.static["/static/index.html"]
            self.reply(body, kind)
        elif path in self.server.static:
            body, kind = self.server.static[path]
            self.reply(body, kind, cache=True)
        elif path == "/stats" or path.startswith("/stats/"):
            names = board.names
            name = path[len("/stats/"):] if path.startswith("/stats/") else \
                (names[0] if names else "")
            if name not in names:
                raise RequestError(404, f"no statistics source {name!r}; sources: "
                                        f"{', '.join(names) or 'none yet'}")
            doc = board.collect([name]).get(name, {})
            self.reply(json.dumps(doc, indent=1, default=str).encode(), "application/json")
        elif path == "/snapshot":
            seq_text = parse_qs(url.query).get("seq", [None])[0]
            if seq_text is None:
                _, body = board.publish()
            else:
                if not seq_text.isdigit() or len(seq_text) > 18:
                    raise RequestError(400, "seq: expected a snapshot number")
                found = board.published(int(seq_text))
                if found is None:
                    raise RequestError(404, f"snapshot {seq_text} is no longer kept (only "
                                            f"the last {KEEP} are)")
                body = found
            self.reply(body, "application/json")
        elif path == "/metrics":
            self.reply(board.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/events":
            self.stream()
        else:
            raise RequestError(404, "try / (the page), /stats, /snapshot, /events or /metrics")

    def reply(self, body: bytes, kind: str, cache: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def stream(self) -> None:
        """Server-sent events until the client leaves or the server closes."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.write(b"retry: 1000\n\n")
        self.wfile.flush()
        latest = self.server.board.latest()
        # The page draws at once, not at the next tick.
        first = b"id: %d\ndata: %s\n\n" % latest if latest is not None else b""
        # The publisher writes the events; this thread only waits for the stream to end.
        self.server.board.follow(self.connection, first).wait()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return None  # keep the NF's log for the NF


class StatsHTTPServer(ThreadingHTTPServer):
    """The board's HTTP server on `address`, serving from a daemon thread once started.

    A non-local address needs `public=True`: the page and the counters would otherwise be
    open to the network without the user having asked for it."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, board: Board, address: tuple[str, int], *, public: bool = False,
                 ) -> None:
        host, port = address
        if not public and not is_local(host):
            raise BindError(f"stats: {host}:{port} is reachable from other machines; bind "
                            f"127.0.0.1 (the default) or say --stats-public to serve the "
                            f"statistics and the dashboard to the network")
        self.board = board
        self.public = public
        self.static = load_static()
        self.closing = threading.Event()
        self._open = 0
        self._open_lock = threading.Lock()
        if ":" in host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host, port), Handler)
        except OSError as e:
            raise BindError(f"stats: cannot listen on {host}:{port}: {e.strerror or e}") from None
        if not is_local(host):
            log.warning("statistics and dashboard open to the network on %s (asked for with "
                        "--stats-public): anyone who reaches it sees the counters", self.url)
        self.thread = threading.Thread(target=self.serve_forever, name="pktflow-stats",
                                       daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def host_allowed(self, host_header: str | None) -> bool:
        """On a local bind, only Host names of this machine (pages of other sites that
        rename themselves to 127.0.0.1 by DNS cannot read the counters)."""
        if self.public or host_header is None:
            return True
        name = host_header.strip()
        if name.startswith("["):
            name = name[1:name.find("]")] if "]" in name else name
        else:
            name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
        return is_local(name)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            full = self._open >= MAX_CONNECTIONS
            if not full:
                self._open += 1
        if full:
            try:
                request.setblocking(False)
                request.send(b"HTTP/1.0 503 Service Unavailable\r\nConnection: close\r\n"
                             b"Content-Length: 0\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open -= 1

    @property
    def connections(self) -> int:
        """Connections open now (event streams included)."""
        with self._open_lock:
            return self._open

    def close(self) -> None:
        """Stop serving, end the event streams, release the address."""
        self.closing.set()
        self.board.close()
        self.shutdown()
        self.server_close()
        self.thread.join()
