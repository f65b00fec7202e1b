"""The app's shared services: what tools need from the running app besides the database.

One `AppServices` is built by the app's lifespan (`web.main`, kept on ``app.state.services``) and
handed to every `tools.context.ToolContext` it makes (REST routes, chat WebSocket, Slack): the job
supervisor (`JobNotifier`, set while it runs), the listeners told about resumed or deleted jobs
(`JobListeners`: the inference caches), the inference service (made on first use), the event bus
and the pretrained-weights download policy (`WeightsPolicy`). A ToolContext made without one (a
script, a test) gets a fresh, empty `AppServices`: no supervisor to wake, no listeners, the
default policy. Nothing here is a module global; see docs/architecture.md ("State").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from tools.eventbus import EventBus
from trainer_runtime.weights import DEFAULT_ULTRALYTICS_ASSETS_URL

JobListener = Callable[[int], None]


class JobNotifier(Protocol):
    """What the job functions need from a supervisor (see `tools.supervisor.Supervisor`)."""

    def submit(self, job_id: int) -> None: ...

    def wake(self) -> None: ...

    def publish(self, job_id: int, event: dict[str, Any]) -> None: ...

    def forget(self, job_id: int) -> None: ...

    def queue_positions(self, db: Session) -> dict[int, int]: ...


class JobListeners:
    """Callbacks told the id of a job that any caller (REST, agent, Slack) resumed or deleted:
    what caches a job's state in memory registers here (the inference route cache, the inference
    checkpoint cache). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[JobListener] = []

    def add(self, listener: JobListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove(self, listener: JobListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def notify(self, job_id: int) -> None:
        """Call every listener with `job_id` (outside the lock)."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(job_id)


@dataclass(frozen=True)
class WeightsPolicy:
    """The settings WEIGHTS_DOWNLOAD, WEIGHTS_DOWNLOAD_TIMEOUT_S, WEIGHTS_DOWNLOAD_MAX_S,
    WEIGHTS_MAX_BYTES, ULTRALYTICS_ASSETS_URL (`tools.weights.plan_for`)."""

    download: str = "auto"
    timeout_s: float = 5.0
    max_s: float = 120.0
    max_bytes: int = 2 * 1024**3
    ultralytics_assets_url: str = DEFAULT_ULTRALYTICS_ASSETS_URL

    def __post_init__(self) -> None:
        if self.download not in ("auto", "on", "off"):
            raise ValueError(f"WEIGHTS_DOWNLOAD must be auto, on or off, not {self.download!r}")


@dataclass
class AppServices:
    """The services of one app (module doc). `notifier` is the app's supervisor while it runs
    (None before it starts, after it stops, and outside an app); `inference` is the app's
    `tools.inference.InferenceService` once made (`web.routes.inference.get_inference_service`)."""

    weights: WeightsPolicy = field(default_factory=WeightsPolicy)
    notifier: JobNotifier | None = None
    job_listeners: JobListeners = field(default_factory=JobListeners)
    event_bus: EventBus | None = None
    inference: Any = None  # tools.inference.InferenceService (typed loosely: tools.inference imports this)


__all__ = ["AppServices", "JobListener", "JobListeners", "JobNotifier", "WeightsPolicy"]
