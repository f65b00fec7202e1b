"""GET /metrics: Prometheus series for jobs by status, queue length, events ingested, connections."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import MakeUser
from tests.event_helpers import event, make_job


def sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_expose_the_series(app: FastAPI, client: TestClient, make_user: MakeUser) -> None:
    user, _ = make_user()
    job_id, token = make_job(app.state.session_factory, int(user["id"]))
    make_job(app.state.session_factory, int(user["id"]), status="completed")
    make_job(app.state.session_factory, int(user["id"]), status="failed")
    resp = client.post(
        f"/internal/jobs/{job_id}/events",
        json={"events": [event("log"), event("log"), event("epoch", {"epoch": 1})]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 200
    dup = resp.request  # the same batch again: duplicates only
    client.post(dup.url, content=dup.content, headers={"Authorization": f"Bearer {token}", **dict(dup.headers)})

    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert sample(text, 'vta_jobs{status="running"}') == 1
    assert sample(text, 'vta_jobs{status="completed"}') == 1
    assert sample(text, 'vta_jobs{status="failed"}') == 1
    assert sample(text, 'vta_jobs{status="queued"}') == 0
    assert sample(text, 'vta_events_ingested_total{type="log"}') == 2
    assert sample(text, 'vta_events_ingested_total{type="epoch"}') == 1
    assert sample(text, "vta_events_duplicate_total") == 3
    assert sample(text, "vta_ws_connections") == 0
    assert sample(text, "vta_sse_connections") == 0
    assert sample(text, "vta_job_queue_length") is not None
    assert "# TYPE vta_jobs gauge" in text


def test_queue_length_comes_from_the_supervisor_when_it_reports_one(app: FastAPI, client: TestClient) -> None:
    class FakeSupervisor:
        def queue_length(self) -> int:
            return 7

    previous: Any = getattr(app.state, "supervisor", None)
    app.state.supervisor = FakeSupervisor()
    try:
        assert sample(client.get("/metrics").text, "vta_job_queue_length") == 7
    finally:
        app.state.supervisor = previous


def test_each_app_has_its_own_registry(settings: Any) -> None:
    from web.main import create_app

    a, b = create_app(settings), create_app(settings)
    assert a.state.telemetry.registry is not b.state.telemetry.registry
    a.state.telemetry.events_ingested.labels(type="log").inc()
    assert b"vta_events_ingested_total" in a.state.telemetry.render()
