"""Reporters: stdout JSON lines, and HTTP delivery against a real local server that goes down and
comes back (durable spool, ordering, dedup by event_id, permanent errors, restart of the trainer)."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from trainer_runtime.events import ProgressEvent
from trainer_runtime.reporting import ACK_FILE, SPOOL_FILE, HttpReporter, StdoutReporter, make_reporter


class EventServer:
    """A server like ``POST /internal/jobs/{id}/events``: checks the bearer token, dedups on
    event_id, can be stopped and restarted on the same port, can be told to answer an error."""

    def __init__(self, token: str = "tok") -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.token = token
        self.received: list[dict[str, Any]] = []  # every event of every accepted POST
        self.accepted: dict[str, dict[str, Any]] = {}  # event_id -> event (dedup)
        self.order: list[str] = []
        self.posts = 0
        self.fail_next: list[int] = []  # status codes to answer next (then 200)
        self._httpd: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/internal/jobs/7/events"

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server._lock:
                    server.posts += 1
                    code = server.fail_next.pop(0) if server.fail_next else 200
                    if self.headers.get("Authorization") != f"Bearer {server.token}":
                        code = 401
                    if code == 200:
                        for ev in json.loads(body)["events"]:
                            server.received.append(ev)
                            if ev["event_id"] not in server.accepted:
                                server.accepted[ev["event_id"]] = ev
                                server.order.append(ev["event_id"])
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def numbers(self) -> list[int]:
        return [self.accepted[i]["data"]["n"] for i in self.order]


@pytest.fixture
def server() -> Any:
    srv = EventServer()
    yield srv
    srv.stop()


def reporter(server: EventServer, spool: Path, **kw: Any) -> HttpReporter:
    kw.setdefault("backoff_base_s", 0.05)
    kw.setdefault("backoff_max_s", 0.2)
    kw.setdefault("request_timeout_s", 2.0)
    return HttpReporter(7, server.url, server.token, spool, **kw)


def test_stdout_reporter_numbers_events_gaplessly() -> None:
    out = io.StringIO()
    rep = StdoutReporter(3, out)
    rep.emit("status", {"status": "preparing"})
    for i in range(5):
        rep.emit("log", {"level": "info", "message": str(i)})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, 7))
    for e in lines:
        assert set(e) == {"job_id", "seq", "ts", "type", "data", "event_id"}
        ProgressEvent.model_validate(e)
    with pytest.raises(ValueError, match="unknown event type"):
        rep.emit("progress", {})


def test_make_reporter_picks_by_callback_url(tmp_path: Path, server: EventServer) -> None:
    assert isinstance(make_reporter(1, None, None, tmp_path, stream=io.StringIO()), StdoutReporter)
    rep = make_reporter(1, server.url, "t", tmp_path)
    assert isinstance(rep, HttpReporter)
    rep.close(0.1)


def test_delivers_in_order_through_an_outage(tmp_path: Path, server: EventServer) -> None:
    server.start()
    rep = reporter(server, tmp_path)
    for n in range(10):
        rep.emit("epoch" if n % 3 == 0 else "batch", {"n": n, "epoch": n})
    deadline = time.monotonic() + 5
    while rep.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rep.pending() == 0
    server.stop()  # outage
    for n in range(10, 40):
        rep.emit("log", {"n": n})
        time.sleep(0.01)
    time.sleep(0.5)  # several failed attempts with backoff
    assert rep.pending() > 0
    server.start()  # back on the same port
    assert rep.close(10) is True
    assert server.numbers() == list(range(40))  # everything, in order, once after dedup
    assert all(e.get("seq") is None for e in server.received)  # the server numbers them
    assert (tmp_path / ACK_FILE).read_text() == "40"


def test_retries_5xx_and_429_but_drops_permanent_4xx(
    tmp_path: Path, server: EventServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.start()
    server.fail_next = [503, 429, 500]
    rep = reporter(server, tmp_path / "a")
    rep.emit("status", {"n": 0})
    assert rep.close(5)
    assert server.numbers() == [0] and server.posts == 4

    bad = HttpReporter(7, server.url, "wrong-token", tmp_path / "b", backoff_base_s=0.05)
    bad.emit("status", {"n": 1})
    assert bad.close(5)
    assert bad.dropped == 1 and server.numbers() == [0]
    assert "refused 1 events" in capsys.readouterr().err


def test_a_restarted_trainer_resends_what_was_not_acknowledged(tmp_path: Path, server: EventServer) -> None:
    first = reporter(server, tmp_path)  # server down the whole time
    for n in range(5):
        first.emit("epoch", {"n": n, "epoch": n + 1})
    assert first.close(0.3) is False
    assert len((tmp_path / SPOOL_FILE).read_text().splitlines()) == 5
    with open(tmp_path / SPOOL_FILE, "a") as fh:
        fh.write('{"job_id": 7, "type": "log", "da')  # a line cut by kill -9
    server.start()
    second = reporter(server, tmp_path)
    assert second.reported_epochs() == {1, 2, 3, 4, 5}
    second.emit("status", {"n": 5})
    assert second.close(5)
    assert server.numbers() == [0, 1, 2, 3, 4, 5]
    assert len((tmp_path / SPOOL_FILE).read_text().splitlines()) == 6

    third = reporter(server, tmp_path)  # nothing left to send
    assert third.pending() == 0
    assert third.close(1)
    assert len(server.received) == 6  # nothing was sent twice


def test_emit_never_blocks_on_the_network(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that accepts nothing
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rep = HttpReporter(7, f"http://127.0.0.1:{port}/x", None, tmp_path, backoff_base_s=0.05)
    started = time.monotonic()
    for n in range(200):
        rep.emit("batch", {"n": n})
    assert time.monotonic() - started < 1.0
    assert rep.close(0.2) is False
