"""A local stand-in for the Slack Web API, for the bot's outgoing calls (slack_sdk `base_url`).

    with FakeSlack(token=TOKEN) as slack:
        settings(..., slack={"api_base_url": slack.api_url, ...})
        slack.add_file("digit.png", png)         # served at slack.file_url("digit.png") (bot token only)
        slack.wait(lambda: slack.calls_of("chat.update"), timeout=30)
        slack.thread("C1", "1700000000.000100")  # the thread as a reader sees it now
        slack.transcript("C1", ts)               # readable, with every edit of every message

A threaded `http.server` on 127.0.0.1. It records every call (`calls`: method, params, the
Authorization header) and keeps the messages (`messages`): ``chat.postMessage`` creates one (ts
from a counter), ``chat.update`` replaces its text/blocks and keeps the older versions in
`history`, ``chat.postEphemeral`` is recorded as an ephemeral message for one user,
``files.getUploadURLExternal`` hands out an upload URL on this server, the upload stores the
bytes, ``files.completeUploadExternal`` posts the file message (initial_comment + the file) into
the thread. ``auth.test`` answers the bot's identity. `response_url` webhooks (``/response/<id>``)
are recorded as ``response_url`` calls. A postMessage to a channel in `not_in` fails with
``not_in_channel``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

T = TypeVar("T")

BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM = "T0TEST"


_clock_lock = threading.Lock()
_last_ts = 0.0


def slack_ts() -> str:
    """A Slack message timestamp ("<unix seconds>.<micro>"): now, unique and increasing in this
    process (user messages the tests send and the fake's messages share it, so ts order is time
    order, as in Slack)."""
    global _last_ts
    with _clock_lock:
        _last_ts = max(time.time(), _last_ts + 0.000001)
        return f"{_last_ts:.6f}"


class FakeSlack:
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.uploads: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.downloads: list[dict[str, Any]] = []
        self.not_in: set[str] = set()
        self.cond = threading.Condition()
        self._file_ids = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def start(self) -> FakeSlack:
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-slack", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test API
    def add_file(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return self.file_url(name)

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{name}"

    def response_url(self, name: str) -> str:
        return f"{self.url}/response/{name}"

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        with self.cond:
            return [c for c in self.calls if c["method"] == method]

    def wait(self, pred: Callable[[], T], timeout: float = 30.0, what: str = "") -> T:
        """The first truthy value of `pred()` (re-checked after every recorded call)."""
        with self.cond:
            ok = self.cond.wait_for(pred, timeout)
        if not ok:
            raise TimeoutError(f"fake Slack: timed out after {timeout}s waiting for {what or pred}")
        return ok

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self.cond:
            return next((m for m in self.messages if m["channel"] == channel and m["ts"] == ts), None)

    def thread_messages(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Root (when the bot posted it) and replies, ephemeral ones included, in order."""
        with self.cond:
            return [
                m
                for m in self.messages
                if m["channel"] == channel and (m["ts"] == thread_ts or m.get("thread_ts") == thread_ts)
            ]

    def visible_text(self, channel: str | None = None) -> str:
        """Everything anyone in the channel can read (ephemeral messages left out)."""
        with self.cond:
            out = []
            for m in self.messages:
                if m.get("ephemeral_to") or (channel and m["channel"] != channel):
                    continue
                out.append(json.dumps({k: m.get(k) for k in ("text", "blocks", "files")}, ensure_ascii=False))
                out.extend(json.dumps(h, ensure_ascii=False) for h in m.get("history", []))
            return "\n".join(out)

    def transcript(self, channel: str, thread_ts: str, user_messages: list[dict[str, Any]] | None = None) -> str:
        """The thread as text: each message with its edits; `user_messages` (what the tests sent as
        the user, {"ts", "user", "text"}) are merged in by ts."""
        items: list[tuple[float, str]] = []
        for u in user_messages or []:
            items.append((float(u["ts"]), f"[{u['ts']}] <{u['user']}> {u['text']}"))
        for m in self.thread_messages(channel, thread_ts):
            who = "BOT (only visible to " + m["ephemeral_to"] + ")" if m.get("ephemeral_to") else "BOT"
            versions = [*m.get("history", []), m]
            lines = [f"[{m['ts']}] <{who}> {_flat(versions[0])}"]
            for i, version in enumerate(versions[1:], start=1):
                lines.append(f"    (update {i}) {_flat(version)}")
            for f in m.get("files") or []:
                lines.append(f"    [file {f['id']}: {f.get('title')!r}, {f.get('bytes')} bytes PNG]")
            items.append((float(m["ts"]), "\n".join(lines)))
        return "\n".join(text for _, text in sorted(items, key=lambda x: x[0]))

    # ------------------------------------------------------------------ server
    def next_ts(self) -> str:
        return slack_ts()

    def _record(self, method: str, params: dict[str, Any], auth: str | None, **extra: Any) -> None:
        with self.cond:
            self.calls.append({"method": method, "params": params, "auth": auth, "time": time.monotonic(), **extra})
            self.cond.notify_all()

    def _api(self, method: str, params: dict[str, Any], auth: str | None) -> dict[str, Any]:
        if auth != f"Bearer {self.token}":
            self._record(method, params, auth)
            return {"ok": False, "error": "invalid_auth"}
        with self.cond:
            result = self._api_locked(method, params)
            self.calls.append(
                {"method": method, "params": params, "auth": auth, "result": result, "time": time.monotonic()}
            )
            self.cond.notify_all()
            return result

    def _api_locked(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        blocks = p.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://test.slack.com/",
                "team": "Test",
                "user": "vta",
                "team_id": TEAM,
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
            }
        if method == "chat.postMessage":
            if p.get("channel") in self.not_in:
                return {"ok": False, "error": "not_in_channel"}
            msg = {
                "channel": p["channel"],
                "ts": self.next_ts(),
                "thread_ts": p.get("thread_ts"),
                "text": p.get("text"),
                "blocks": blocks,
                "history": [],
            }
            self.messages.append(msg)
            return {"ok": True, "channel": msg["channel"], "ts": msg["ts"], "message": {"text": msg["text"]}}
        if method == "chat.postEphemeral":
            msg = {
                "channel": p["channel"],
                "ts": self.next_ts(),
                "thread_ts": p.get("thread_ts"),
                "text": p.get("text"),
                "blocks": blocks,
                "ephemeral_to": p.get("user"),
                "history": [],
            }
            self.messages.append(msg)
            return {"ok": True, "message_ts": msg["ts"]}
        if method == "chat.update":
            found = next((m for m in self.messages if m["channel"] == p["channel"] and m["ts"] == p["ts"]), None)
            if found is None:
                return {"ok": False, "error": "message_not_found"}
            found["history"].append({"text": found["text"], "blocks": found["blocks"]})
            found["text"] = p.get("text")
            found["blocks"] = blocks
            return {"ok": True, "channel": p["channel"], "ts": p["ts"], "text": p.get("text")}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._file_ids):06d}"
            return {"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"}
        if method == "files.completeUploadExternal":
            files = json.loads(p.get("files") or "[]")
            out = []
            for f in files:
                data = self.uploads.get(f["id"], b"")
                out.append(
                    {
                        "id": f["id"],
                        "title": f.get("title"),
                        "bytes": len(data),
                        "png": data[:8] == b"\x89PNG\r\n\x1a\n",
                    }
                )
            msg = {
                "channel": p.get("channel_id"),
                "ts": self.next_ts(),
                "thread_ts": p.get("thread_ts"),
                "text": p.get("initial_comment"),
                "blocks": None,
                "files": out,
                "history": [],
            }
            self.messages.append(msg)
            return {"ok": True, "files": [{"id": f["id"], "title": f["title"]} for f in out]}
        return {"ok": False, "error": "unknown_method"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path.startswith("/files/"):
                    name = path.removeprefix("/files/")
                    auth = self.headers.get("Authorization")
                    fake._record("file.download", {"name": name}, auth)
                    if auth != f"Bearer {fake.token}" or name not in fake.files:
                        # what Slack does for a request without the token: a sign-in page
                        self._send(200, b"<html>sign in</html>", "text/html; charset=utf-8")
                        return
                    self._send(200, fake.files[name], "image/png")
                    return
                self._send(404, b"{}")

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                raw = self._body()
                if parts.path.startswith("/upload/"):
                    file_id = parts.path.removeprefix("/upload/")
                    with fake.cond:
                        fake.uploads[file_id] = raw
                    fake._record("file.upload", {"file_id": file_id, "bytes": len(raw)}, None)
                    self._send(200, b"OK - " + str(len(raw)).encode(), "text/plain")
                    return
                if parts.path.startswith("/response/"):
                    payload = json.loads(raw or b"{}")
                    fake._record("response_url", payload, None, name=parts.path.removeprefix("/response/"))
                    self._send(200, b"ok", "text/plain")
                    return
                if not parts.path.startswith("/api/"):
                    self._send(404, b"{}")
                    return
                method = parts.path.removeprefix("/api/")
                params: dict[str, Any] = dict(parse_qsl(parts.query))
                ctype = self.headers.get("Content-Type") or ""
                if raw and "json" in ctype:
                    params.update(json.loads(raw))
                elif raw:
                    params.update(dict(parse_qsl(raw.decode())))
                result = fake._api(method, params, self.headers.get("Authorization"))
                self._send(200, json.dumps(result).encode())

        return Handler


def _flat(m: dict[str, Any]) -> str:
    """A message's text as a reader sees it (blocks' texts and buttons when there are blocks)."""
    blocks = m.get("blocks") or []
    if not blocks:
        return " / ".join(str(m.get("text") or "").splitlines())
    parts: list[str] = []
    for b in blocks:
        if b.get("type") == "section":
            parts.append(str(b["text"]["text"]))
        elif b.get("type") == "context":
            parts.extend(str(e.get("text")) for e in b.get("elements", []))
        elif b.get("type") == "actions":
            parts.append(" ".join(f"[{e['text']['text']}]" for e in b.get("elements", [])))
    return " / ".join(" / ".join(p.splitlines()) for p in parts)
