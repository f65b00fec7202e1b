"""Progress reporting (contract 4 in docs/architecture.md): where a trainer's events go.

    EventReporter           base: ``emit(type, data) -> ProgressEvent``, ``close(timeout)``
    ├── StdoutReporter      no callback URL: one JSON line per event on stdout, ``seq`` 1, 2, 3 …
    │                       gapless per process (human logs go to stderr)
    └── HttpReporter        callback URL + per-job bearer token: durable spool, background
                            delivery in order, retries with backoff + jitter, exactly-once from the
                            server's view (it deduplicates on ``event_id``)

HttpReporter in detail
    * Every event gets a trainer-side ``event_id`` and is appended to ``<spool_dir>/events.jsonl``
      before ``emit`` returns; ``<spool_dir>/events.acked`` holds how many spooled events were
      acknowledged (or dropped). A trainer that restarts with the same spool dir re-sends what was
      not acknowledged, first, in the original order.
    * A background thread POSTs ``{"events": [ProgressEvent, ...]}`` (up to `batch_max` per request)
      with ``Authorization: Bearer <token>``. 2xx: acknowledged. 408, 429, 5xx and connection
      errors: retried with exponential backoff (``backoff_base_s`` doubling up to ``backoff_max_s``,
      full jitter), forever while the reporter is open. Any other 4xx is permanent: the batch is
      dropped with a line on stderr (a retry could never succeed).
    * ``seq`` is not set: the server assigns the gapless per-job numbers.
    * ``close(timeout)`` stops accepting events and waits up to `timeout` seconds for the queue to
      drain; what is left stays in the spool for the next attempt of the job.

Throttling of ``batch`` events is the caller's job (`runner` sends at most 2 per second); the
reporters never drop ``epoch``, ``status``, ``checkpoint``, ``done`` or ``error`` events.

Only the standard library is used (``urllib``), so a per-framework venv needs nothing extra.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from trainer_runtime.events import EVENT_TYPES, ProgressEvent

logger = logging.getLogger("trainer_runtime.reporting")

SPOOL_FILE = "events.jsonl"
ACK_FILE = "events.acked"


class EventReporter:
    """Base class: builds `ProgressEvent`s; subclasses deliver them."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self._lock = threading.Lock()
        self.emitted = 0

    def make_event(self, type: str, data: dict[str, Any]) -> ProgressEvent:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}; expected one of {', '.join(EVENT_TYPES)}")
        return ProgressEvent(job_id=self.job_id, type=type, data=data)

    def emit(self, type: str, data: dict[str, Any] | None = None) -> ProgressEvent:
        event = self.make_event(type, dict(data or {}))
        with self._lock:
            self._deliver(event)
            self.emitted += 1
        return event

    def _deliver(self, event: ProgressEvent) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self, _timeout: float = 30.0) -> bool:
        """Flush; True when everything emitted was delivered."""
        return True

    def reported_epochs(self) -> set[int]:
        """Epochs whose ``epoch`` event a previous attempt of this job already delivered durably
        (HttpReporter: from the spool). Empty when unknown."""
        return set()


class StdoutReporter(EventReporter):
    """JSON lines on `stream` (default: the process's stdout), seq 1, 2, 3 … in this process."""

    def __init__(self, job_id: int, stream: IO[str] | None = None, *, start_seq: int = 1) -> None:
        super().__init__(job_id)
        self._stream = stream
        self._seq = start_seq - 1

    def _deliver(self, event: ProgressEvent) -> None:
        self._seq += 1
        event.seq = self._seq
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(event.model_dump_json() + "\n")
        stream.flush()

    @classmethod
    def on_private_stdout(cls, job_id: int) -> StdoutReporter:
        """A reporter that owns the real stdout: file descriptor 1 is duplicated for the events
        and then pointed at stderr, so that anything else printing to stdout (frameworks' own
        progress bars and logs) lands on stderr and never corrupts the JSON lines."""
        sys.stdout.flush()
        events_fd = os.dup(1)
        os.dup2(2, 1)
        stream = os.fdopen(events_fd, "w", buffering=1, encoding="utf-8", closefd=True)
        return cls(job_id, stream)


class _PermanentError(Exception):
    pass


class _RetryableError(Exception):
    pass


def _default_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(Exception):
            exc.read()
        return int(exc.code)


class HttpReporter(EventReporter):
    """Durable, ordered, retried delivery to the server's callback URL (see the module doc)."""

    def __init__(
        self,
        job_id: int,
        url: str,
        token: str | None,
        spool_dir: Path,
        *,
        batch_max: int = 100,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 10.0,
        request_timeout_s: float = 10.0,
        post: Callable[[str, bytes, dict[str, str], float], int] | None = None,
    ) -> None:
        super().__init__(job_id)
        self.url = url
        self._token = token
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.batch_max = max(1, batch_max)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.request_timeout_s = request_timeout_s
        self._post = post or _default_post
        self.delivered = 0
        self.dropped = 0
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, str]] = deque()  # (spool index, json line)
        self._closing = False
        self._abort = False
        self._previous_epochs: set[int] = set()
        self._acked = self._read_ack()
        self._next_index = self._load_spool()
        self._spool = open(self.spool_dir / SPOOL_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self._thread = threading.Thread(target=self._run, name="event-sender", daemon=True)
        self._thread.start()

    # spool ------------------------------------------------------------------------------------
    def _read_ack(self) -> int:
        try:
            return int((self.spool_dir / ACK_FILE).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _write_ack(self, count: int) -> None:
        tmp = self.spool_dir / f".{ACK_FILE}.tmp"
        tmp.write_text(str(count))
        os.replace(tmp, self.spool_dir / ACK_FILE)

    def _load_spool(self) -> int:
        """Queue the spooled events that were not acknowledged; returns the next spool index."""
        path = self.spool_dir / SPOOL_FILE
        if not path.exists():
            return 0
        index = 0
        valid_bytes = 0
        with open(path, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # a line cut by a kill: never sent (emit had not returned), drop it
                try:
                    event = json.loads(raw)
                except json.JSONDecodeError:
                    break
                valid_bytes += len(raw)
                if event.get("type") == "epoch":
                    with contextlib.suppress(TypeError, ValueError):
                        self._previous_epochs.add(int(event["data"]["epoch"]))
                if index >= self._acked:
                    self._queue.append((index, raw.decode("utf-8").rstrip("\n")))
                index += 1
        if valid_bytes != path.stat().st_size:
            with open(path, "r+b") as fh:
                fh.truncate(valid_bytes)
        if self._queue:
            logger.info("re-sending %d unacknowledged events from %s", len(self._queue), path)
        return index

    def reported_epochs(self) -> set[int]:
        return set(self._previous_epochs)

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    # emit -------------------------------------------------------------------------------------
    def _deliver(self, event: ProgressEvent) -> None:
        line = event.model_dump_json(exclude={"seq"})
        with self._cond:
            if self._closing:
                raise RuntimeError("reporter is closed")
            self._spool.write(line + "\n")
            self._spool.flush()
            self._queue.append((self._next_index, line))
            self._next_index += 1
            self._cond.notify_all()

    # sender -----------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _send(self, lines: list[str]) -> None:
        body = ('{"events":[' + ",".join(lines) + "]}").encode("utf-8")
        try:
            status = self._post(self.url, body, self._headers(), self.request_timeout_s)
        except (OSError, urllib.error.URLError) as exc:  # connection refused, reset, timeout
            raise _RetryableError(str(exc)) from exc
        if 200 <= status < 300:
            return
        if status in (408, 429) or status >= 500:
            raise _RetryableError(f"HTTP {status}")
        raise _PermanentError(f"HTTP {status}")

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue and self._closing:
                    return
                batch = list(self._queue)[: self.batch_max]
            try:
                self._send([line for _, line in batch])
            except _RetryableError as exc:
                failures += 1
                delay = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(failures - 1, 16)))
                delay = random.uniform(delay / 2, delay)  # jitter
                if failures == 1 or failures % 10 == 0:
                    logger.warning(
                        "event delivery to %s failed (%s); %d events waiting, retry in %.1fs",
                        self.url,
                        exc,
                        len(self._queue),
                        delay,
                    )
                with self._cond:
                    if self._cond.wait_for(lambda: self._abort, timeout=delay):
                        return
                continue
            except _PermanentError as exc:
                self.dropped += len(batch)
                print(
                    f"trainer: the server refused {len(batch)} events of job {self.job_id} ({exc}); "
                    "dropped (a retry cannot succeed)",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                self.delivered += len(batch)
                if failures:
                    logger.info("event delivery to %s recovered after %d failed attempts", self.url, failures)
            failures = 0
            with self._cond:
                for _ in batch:
                    self._queue.popleft()
                self._write_ack(batch[-1][0] + 1)
                self._cond.notify_all()

    def close(self, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        done = not self._thread.is_alive()
        if not done:
            with self._cond:
                self._abort = True
                left = len(self._queue)
                self._cond.notify_all()
            self._thread.join(self.request_timeout_s + 1)
            print(
                f"trainer: {left} events of job {self.job_id} not delivered to {self.url} within "
                f"{timeout:.0f}s; they stay in {self.spool_dir / SPOOL_FILE} for the next attempt",
                file=sys.stderr,
                flush=True,
            )
        with contextlib.suppress(OSError):
            self._spool.close()
        return done


def make_reporter(
    job_id: int,
    callback_url: str | None,
    callback_token: str | None,
    spool_dir: Path,
    *,
    stream: IO[str] | None = None,
    private_stdout: bool = False,
) -> EventReporter:
    """HttpReporter when a callback URL is given, else StdoutReporter. The token is the spec's
    ``callback_token``: the server writes it into the job's spec file (mode 0600; on Kubernetes a
    mounted Secret), never into the environment (docs/security.md, How trainers authenticate)."""
    if callback_url:
        return HttpReporter(job_id, callback_url, callback_token or None, spool_dir)
    if private_stdout and stream is None:
        return StdoutReporter.on_private_stdout(job_id)
    return StdoutReporter(job_id, stream)


__all__ = ["EventReporter", "HttpReporter", "StdoutReporter", "make_reporter"]
