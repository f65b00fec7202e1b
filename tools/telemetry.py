"""Prometheus metrics: one `Telemetry` (its own CollectorRegistry) per app, exposed at `/metrics`.

Series
    vta_jobs{status}                      gauge, jobs per status, counted in the database at scrape time
    vta_job_queue_length                  gauge, jobs waiting for a slot (the supervisor's queue when
                                          it reports one, else jobs in status ``queued``)
    vta_events_ingested_total{type}       counter, events stored from trainers (duplicates excluded)
    vta_events_duplicate_total            counter, trainer events skipped as already stored
    vta_ws_connections                    gauge, open progress WebSockets
    vta_sse_connections                   gauge, open progress SSE streams
    vta_stream_slow_disconnects_total{transport}  counter, watchers dropped for not keeping up
    vta_llm_guard_discards_total{kind,reason}     counter, LLM-mode output the guard discarded
                                          (agent.llm: kind call / slot / reply, reason a fixed word)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tools.db.models import Job
from trainer_runtime.events import JOB_STATUSES

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _queue_length_from(supervisor: Any) -> int | None:
    """The supervisor's own queue length, when it offers one (`queue_length()` or `queue_length`)."""
    if supervisor is None:
        return None
    for name in ("queue_length", "queued_count", "queue_size"):
        value = getattr(supervisor, name, None)
        if value is None:
            continue
        try:
            return int(value() if callable(value) else value)
        except Exception:
            return None
    return None


class _JobCollector(Collector):
    def __init__(self, session_factory: Callable[[], Session | None], supervisor: Callable[[], Any]) -> None:
        self._session_factory = session_factory
        self._supervisor = supervisor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = dict.fromkeys(JOB_STATUSES, 0)
        db = None
        try:
            db = self._session_factory()
            if db is not None:
                for status, n in db.execute(select(Job.status, func.count()).group_by(Job.status)):
                    counts[str(status)] = int(n)
        except Exception as exc:  # a scrape must not fail because the database blinked
            log.warning("metrics: could not count jobs: %s", exc)
        finally:
            if db is not None:
                db.close()
        jobs = GaugeMetricFamily("vta_jobs", "Jobs per status", labels=["status"])
        for status, n in counts.items():
            jobs.add_metric([status], n)
        yield jobs
        queue = _queue_length_from(self._supervisor())
        if queue is None:
            queue = counts.get("queued", 0)
        yield GaugeMetricFamily("vta_job_queue_length", "Jobs waiting for an execution slot", value=queue)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class Telemetry:
    """The metric objects of one app. `bind(session_factory, supervisor)` wires the scrape-time
    collector (callables, so the lifespan may set them up after the app is created)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.events_ingested = Counter(
            "vta_events_ingested", "Progress events stored from trainers", ["type"], registry=self.registry
        )
        self.events_duplicate = Counter(
            "vta_events_duplicate", "Trainer events skipped as already stored", registry=self.registry
        )
        self.ws_connections = Gauge("vta_ws_connections", "Open progress WebSockets", registry=self.registry)
        self.sse_connections = Gauge("vta_sse_connections", "Open progress SSE streams", registry=self.registry)
        self.slow_disconnects = Counter(
            "vta_stream_slow_disconnects",
            "Progress watchers dropped for not keeping up",
            ["transport"],
            registry=self.registry,
        )
        self.llm_guard_discards = Counter(
            "vta_llm_guard_discards",
            "Language-model output discarded in favour of the rules (agent.llm_guard)",
            ["kind", "reason"],
            registry=self.registry,
        )
        self._collector: _JobCollector | None = None

    def bind(self, session_factory: Callable[[], Session | None], supervisor: Callable[[], Any]) -> None:
        if self._collector is not None:
            self.registry.unregister(self._collector)
        self._collector = _JobCollector(session_factory, supervisor)
        self.registry.register(self._collector)

    def record_ingested(self, events: list[dict[str, Any]], duplicates: int = 0) -> None:
        for event in events:
            self.events_ingested.labels(type=str(event.get("type"))).inc()
        if duplicates:
            self.events_duplicate.inc(duplicates)

    def record_llm_guard(self, kind: str, reason: str) -> None:
        """One discard of the LLM guard (`agent.llm.LLMPlanner.on_guard`)."""
        self.llm_guard_discards.labels(kind=kind, reason=reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
