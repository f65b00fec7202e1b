"""No 500 from a number out of range (ids and seqs are INTEGER columns: 32-bit
on PostgreSQL, so 2**31 is already out of range there).

Integers of 10**30 in a path or query gave 500 on 21 routes (SQLite's OverflowError), the
unauthenticated trainer route included, and `5.7e35` in a JSON body too. The cases below are
generated from the app's own route table: every integer path/query parameter of every HTTP and
WebSocket route gets 10**30, 2**63, -1 and 5.7e35, from a signed-in user and from nobody, and must
answer 4xx (a WebSocket: a policy/data close code, never 1011). A structural test makes sure every
integer parameter declares both bounds (`web.params`), so a new route cannot forget them.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.conftest import make_settings
from tests.security.conftest import Actor, register
from web.main import create_app

# Out of range: 422 (a WebSocket closes 1008). 2**31 is past PostgreSQL's INTEGER id columns.
BAD_VALUES = [str(10**30), str(2**63), str(2**63 - 1), str(2**31), "-1", "5.7e35"]
# In range but no such row: anything but a server error (404, 200 with an empty list, close 4404).
EDGE_VALUES = [str(2**31 - 1)]
HUGE = 10**30


def _int_params(dependant: Any) -> list[tuple[str, str, Any]]:
    """(location, name, field_info) of every int path/query parameter, dependencies included."""
    found: list[tuple[str, str, Any]] = []
    for where, params in (("path", dependant.path_params), ("query", dependant.query_params)):
        for param in params:
            annotation = param.field_info.annotation
            if annotation is int or int in typing.get_args(annotation):
                found.append((where, param.name, param.field_info))
    for sub in dependant.dependencies:
        found.extend(_int_params(sub))
    return found


def _route_table() -> list[tuple[str, str, list[str], list[tuple[str, str, Any]]]]:
    """(kind, path, methods, int params) of every route that has an int path/query parameter."""
    app = create_app(make_settings("sqlite://", Path("/nonexistent-route-table")))
    table = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute):
            kind, methods = "http", sorted(m for m in (route.methods or ()) if m != "HEAD")
        elif isinstance(route, APIWebSocketRoute):
            kind, methods = "ws", ["WS"]
        else:
            continue
        ints = _int_params(route.dependant)
        if ints:
            table.append((kind, str(ctx.path), methods, ints))
    return table


ROUTES = _route_table()
CASES = [
    pytest.param(kind, method, path, where, name, id=f"{method} {path} {where}:{name}")
    for kind, path, methods, ints in ROUTES
    for method in methods
    for where, name, _info in ints
]


def test_the_route_table_has_the_routes_of_the_issue() -> None:
    paths = {path for _kind, path, _methods, _ints in ROUTES}
    assert "/internal/jobs/{job_id}/events" in paths and "/ws/jobs/{job_id}" in paths
    assert len(CASES) >= 30


@pytest.mark.parametrize(("kind", "method", "path", "where", "name"), CASES)
def test_every_int_parameter_declares_both_bounds(kind: str, method: str, path: str, where: str, name: str) -> None:
    info = next(i for k, p, _m, ints in ROUTES if (k, p) == (kind, path) for w, n, i in ints if (w, n) == (where, name))
    kinds = {type(m).__name__ for m in info.metadata}
    assert kinds & {"Ge", "Gt"} and kinds & {"Le", "Lt"}, f"{path} {name}: bounds {info.metadata}"
    uppers = [getattr(m, "le", None) or getattr(m, "lt", None) for m in info.metadata]
    assert all(u <= 2**31 - 1 for u in uppers if u is not None)  # INTEGER columns: 32-bit on PostgreSQL


@pytest.fixture(scope="module")
def world(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Actor]]:
    settings = make_settings(module_db_url, tmp_path_factory.mktemp("bounds"))
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, register(client)
        app.state.supervisor.kill_all()


def _url(path: str, where: str, name: str, value: str) -> tuple[str, dict[str, str]]:
    """`path` with `value` in parameter `name` (other placeholders: "1", or "x" for strings)."""
    params: dict[str, str] = {}
    filled = path
    for _kind, p, _methods, ints in ROUTES:
        if p != path:
            continue
        int_names = {n for w, n, _i in ints if w == "path"}
        for part in path.split("/"):
            if part.startswith("{") and part.endswith("}"):
                key = part[1:-1]
                if where == "path" and key == name:
                    filled = filled.replace(part, value)
                else:
                    filled = filled.replace(part, "1" if key in int_names else "x")
        break
    if where == "query":
        params[name] = value
    return filled, params


@pytest.mark.parametrize("signed_in", [True, False], ids=["owner", "anonymous"])
@pytest.mark.parametrize(("kind", "method", "path", "where", "name"), CASES)
def test_out_of_range_integers_answer_4xx(
    world: tuple[TestClient, Actor], signed_in: bool, kind: str, method: str, path: str, where: str, name: str
) -> None:
    client, actor = world
    headers = actor.headers if signed_in else {}
    for value in BAD_VALUES + EDGE_VALUES:
        bad = value in BAD_VALUES
        url, params = _url(path, where, name, value)
        if kind == "ws":
            if signed_in:
                params["token"] = actor.token
            query = "&".join(f"{k}={v}" for k, v in params.items())
            with (
                pytest.raises(WebSocketDisconnect) as info,
                client.websocket_connect(f"{url}?{query}" if query else url) as ws,
            ):
                ws.receive_text()
                ws.receive_text()
            code = info.value.code
            assert code in (1003, 1008, 4422) if bad else code != 1011, f"{url} {params}: close {code}"
            continue
        resp = client.request(method, url, params=params, headers=headers)
        low = 400 if bad else 200
        assert low <= resp.status_code < 500, f"{method} {url} {params}: {resp.status_code} {resp.text[:200]}"


# --- bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "intent",
    [
        {"epochs": HUGE},
        {"epochs": 5.7e35},
        {"batch_size": HUGE},
        {"image_size": 5.7e35},
        {"learning_rate": 5.7e35},
    ],
    ids=lambda v: f"{next(iter(v))}={next(iter(v.values()))}",
)
def test_job_intent_numbers_are_bounded(world: tuple[TestClient, Actor], intent: dict[str, Any]) -> None:
    client, actor = world
    body = {"intent": {"dataset": "digits", "framework": "timm", **intent}}
    resp = client.post(
        "/api/v1/jobs", content=json.dumps(body), headers={**actor.headers, "Content-Type": "application/json"}
    )
    assert resp.status_code == 422, resp.text
    field = next(iter(intent))
    assert any(field in err["loc"] for err in resp.json()["detail"])


def test_infinite_learning_rate_is_refused(world: tuple[TestClient, Actor]) -> None:
    client, actor = world
    raw = b'{"intent": {"dataset": "digits", "learning_rate": Infinity}}'
    resp = client.post("/api/v1/jobs", content=raw, headers={**actor.headers, "Content-Type": "application/json"})
    assert 400 <= resp.status_code < 500, resp.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/jobs", {"intent": {"dataset": "digits"}, "project_id": HUGE}),
        ("/api/v1/test-runs", {"job_id": HUGE}),
        ("/api/v1/test-runs", {"job_id": 5.7e35}),
    ],
)
def test_ids_in_json_bodies_are_bounded(world: tuple[TestClient, Actor], path: str, body: dict[str, Any]) -> None:
    client, actor = world
    resp = client.post(path, content=json.dumps(body), headers={**actor.headers, "Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text


def test_dataset_image_id_in_the_inference_form_is_bounded(world: tuple[TestClient, Actor]) -> None:
    client, actor = world
    resp = client.post("/api/v1/jobs/1/inference", data={"dataset_image_id": str(HUGE)}, headers=actor.headers)
    assert 400 <= resp.status_code < 500, resp.text


def test_trainer_event_body_ids_are_bounded(world: tuple[TestClient, Actor]) -> None:
    from tests.event_helpers import make_job

    client, actor = world
    job_id, token = make_job(client.app.state.session_factory, actor.id)  # type: ignore[attr-defined]
    for field in ("job_id", "seq"):
        event = {"type": "log", "data": {"message": "x"}, "event_id": f"e-{field}", field: HUGE}
        resp = client.post(f"/internal/jobs/{job_id}/events", json=event, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 422, resp.text


def test_an_out_of_range_last_event_id_is_ignored(world: tuple[TestClient, Actor]) -> None:
    """`Last-Event-ID: 10**30` reads as no Last-Event-ID (the stream starts at `after`)."""
    from tests.event_helpers import make_job
    from tools.db.models import Job

    client, actor = world
    state: Any = client.app.state  # type: ignore[attr-defined]
    job_id, token = make_job(state.session_factory, actor.id)
    event = {"type": "log", "data": {"message": "hello"}, "event_id": "e-last-event-id"}
    resp = client.post(f"/internal/jobs/{job_id}/events", json=event, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    with state.session_factory() as db:
        job = db.get(Job, job_id)
        job.status = "completed"
        db.commit()
    headers = {**actor.headers, "Last-Event-ID": str(HUGE)}
    with client.stream("GET", f"/api/v1/jobs/{job_id}/stream", headers=headers) as resp:
        assert resp.status_code == 200
        body = b"".join(resp.iter_bytes())
    assert b"hello" in body


@pytest.mark.parametrize(
    "message", [f"stop job {HUGE}", f"how is job #{HUGE} doing", f"resume job {HUGE}", f"stop job {2**31}"]
)
def test_a_huge_job_number_in_a_chat_message_is_not_found(world: tuple[TestClient, Actor], message: str) -> None:
    """Ids parsed from text reach the tools unbounded: the tools treat one past any id column as no row."""
    client, actor = world
    resp = client.post("/api/v1/chat", json={"message": message}, headers=actor.headers)
    assert resp.status_code == 200, resp.text
    assert "not found" in resp.json()["reply"]
