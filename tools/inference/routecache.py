"""`RouteCache`: the single-image hot path's memory of recently authorised requests, and
`InferenceRoute`, what such a request runs (job, framework, model key, local checkpoint file).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class InferenceRoute:
    """What an authorised single-image request runs: resolved from the database by
    `resolve_inference` (visibility, job status, checkpoint row, local copy of the file)."""

    job_id: int
    framework: str
    model_key: str
    path: Path
    checkpoint: str  # best | last
    dataset_id: str | None = None
    snapshot_id: str | None = None
    model_name: str = ""  # the job's model (yolo11n, resnet18, ...)


class RouteCache:
    """Recently authorised ``(token, job, checkpoint)`` -> `InferenceRoute`, for `ttl_s` seconds.

    The single-image hot path: a repeated request skips the database (user row, job row,
    checkpoint rows, about 1-2 ms on SQLite) and goes straight to the worker. The token's signature
    and expiry are still checked on every request (`tools.auth.decode_access_token`); what may be
    up to `ttl_s` old is the rest: a user deactivated, a job deleted or a checkpoint replaced in that
    window is still served its previous route (a deletion through this process drops the job's
    entries at once: `invalidate_job`). ``ttl_s`` <= 0 turns the cache off. Thread-safe; bounded
    (oldest entries dropped first)."""

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 4096) -> None:
        self.ttl_s = float(ttl_s)
        self.max_entries = max(1, int(max_entries))
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[tuple[str, int, str], tuple[float, InferenceRoute]] = (
            collections.OrderedDict()
        )
        self.hits = 0

    def get(self, token: str, job_id: int, checkpoint: str | None) -> InferenceRoute | None:
        if self.ttl_s <= 0:
            return None
        key = (token, int(job_id), checkpoint or "")
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] < time.monotonic():
                if hit is not None:
                    del self._entries[key]
                return None
            self.hits += 1
            return hit[1]

    def put(self, token: str, job_id: int, checkpoint: str | None, route: InferenceRoute) -> None:
        if self.ttl_s <= 0:
            return
        key = (token, int(job_id), checkpoint or "")
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl_s, route)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate_job(self, job_id: int) -> None:
        with self._lock:
            for key in [k for k, (_, r) in self._entries.items() if r.job_id == int(job_id)]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
