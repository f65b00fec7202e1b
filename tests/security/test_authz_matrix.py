"""Who may call what: every route of the app against anonymous callers, bad tokens, another user
and the owner, generated from the app's own route table (`app.routes`).

`ROUTES` declares, for each (method, path) the app serves, its access class:

    public   anyone (health, sign-up/in, the page and its assets, the OpenAPI document...)
    user     a signed-in user; another user's resources answer 404 exactly like unknown ones
    trainer  the per-job callback token of that job (the internal events route)
    slack    a request signed with the Slack signing secret (/slack/*)
    signed   a signed download link: the token in the path is the credential (no Authorization
             header); it names one user and one object and expires

and, for the others, what the owner gets and how another user is refused. A route the app serves
without an entry here FAILS `test_every_route_is_declared` (and so does an entry for a route that
is gone): adding a route means saying who may call it, and these tests then check it.

Method "WS" keys a WebSocket route; "MOUNT" a mounted sub-application; HEAD is left out where GET
is there (Starlette answers HEAD with the GET handler).

Per authenticated route (each its own test id):
    anonymous        401 (WebSocket: close 1008, or 4401)
    bad token        a JWT for the owner's id signed with another secret: 401 (WS 1008/4401)
    other user       B sends the owner's request (the owner's ids in the path or body): 404 when
                     it names the owner's resource (WS 4404 / an error frame), and in every case
                     nothing of the owner's (email, names, class names, chat text) in the answer;
                     the owner's resources are still there afterwards
    owner            the declared status (2xx, or 409/422 where the resource's state says so)
Trainer route: the same with the job's own token as the owner and another job's token as the other
user. Slack routes: unsigned / wrongly signed 401, signed 200, and a Slack user linked to B never
sees A's job or dataset (events, slash command, a click on A's confirmation).

Resources are made once per module (one app, one database per backend): a private labelled
dataset (+ snapshot), a project, a job created through POST /jobs (a fake trainer that sleeps: it
never trains), a finished job, a test run and an export (database rows: no model is run), a chat
session and a Slack link. Routes that change or delete a resource get a throwaway one for the
owner's call.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from tests.agent.chat_helpers import named_classification
from tests.dataset_builders import png
from tests.live_server import API, upload_dataset
from tests.security.conftest import Actor, fake_trainer_settings_for, open_app, register
from tests.web.slack.fake_slack import FakeSlack
from tests.web.slack.slack_helpers import SECRET, TOKEN, SlackSender

PUBLIC, USER, TRAINER, SLACK, SIGNED = "public", "user", "trainer", "slack", "signed"
WS_UNAUTHENTICATED = {1008, 4401}  # web.errors.ws_close_code(AuthenticationError); 4401 if streams move to it
WS_NOT_FOUND = 4404
WS_FINISHED = 1000

Ids = dict[str, Any]


# ------------------------------------------------------------------------------------ the world


@dataclass
class World:
    """One app with two users; `ids` are the owner's resources, `secrets` strings only the owner's
    data contains (they must never reach another user)."""

    client: TestClient
    fake_slack: FakeSlack
    owner: Actor
    other: Actor
    ids: Ids
    secrets: list[str]
    job_token: str  # the callback token of ids["trainer_job"] (the trainer route's owner)
    other_job_token: str  # the callback token of a job of the other user
    _n: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**6)))

    @property
    def app(self) -> Any:
        return self.client.app

    def db(self) -> Any:
        return self.app.state.session_factory()

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._n)}-{uuid.uuid4().hex[:6]}"

    # throwaway resources of the owner, for routes that change or delete what they name
    def fresh(self, kind: str) -> Ids:
        c, h = self.client, self.owner.headers
        if kind == "project":
            r = c.post(f"{API}/projects", json={"name": self.unique("tmp")}, headers=h)
            assert r.status_code == 201, r.text
            return {"project_id": r.json()["id"]}
        if kind == "dataset":
            r = c.post(f"{API}/datasets", json={"name": self.unique("tmp")}, headers=h)
            assert r.status_code == 201, r.text
            return {"dataset_id": r.json()["id"]}
        if kind == "image":
            did = upload_dataset(c, h, self.unique("tmp"), {f"img/{i}.png": png() for i in range(2)})
            items = c.get(f"{API}/datasets/{did}/images", headers=h).json()["items"]
            return {"dataset_id": did, "image_id": items[0]["id"]}
        if kind == "queued_job":  # the slot is taken by ids["job_id"]: this one waits in the queue
            r = c.post(f"{API}/jobs", json={"intent": job_intent(self.ids)}, headers=h)
            assert r.status_code == 201, r.text
            return {"job_id": r.json()["id"]}
        if kind == "finished_job":
            return {"job_id": db_job(self, self.owner.id, status="completed")[0]}
        if kind == "user_weights":
            return {"weights_id": upload_weights(c, h, self.unique("tmp") + ".safetensors")}
        if kind == "link":
            from tools.db.models import SlackLink

            with self.db() as db:
                link = SlackLink(team_id="", slack_user_id=self.unique("U").upper()[:30], user_id=self.owner.id)
                db.add(link)
                db.commit()
                return {"link_id": link.id}
        raise AssertionError(kind)


def db_job(w: World, owner_id: int, **fields: Any) -> tuple[int, str]:
    """A job row made directly (not queued: the supervisor leaves it alone), with a known callback
    token."""
    from tests.event_helpers import make_job

    if owner_id == w.owner.id:
        fields.setdefault("dataset_id", w.ids.get("dataset_id"))
        fields.setdefault("dataset_name", w.ids.get("dataset_name", ""))
    return make_job(w.app.state.session_factory, owner_id, **fields)


def upload_weights(client: TestClient, headers: dict[str, str], name: str) -> int:
    """One of the user's own weights files (`POST /weights/mine`); returns its id."""
    from tests.tools.test_weights import small_safetensors

    r = client.post(
        f"{API}/weights/mine",
        data={"model": "resnet18"},
        files={"file": (name, small_safetensors(), "application/octet-stream")},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def job_intent(ids: Ids) -> dict[str, Any]:
    return {"dataset": ids["dataset_id"], "model_name": "resnet18", "epochs": 1, "image_size": 32}


def tiny_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("images/a.png", png())
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from tools.db.models import ChatSession, ModelExport, SlackLink, TestRun

    folder = tmp_path_factory.mktemp("authz")
    with FakeSlack(token=TOKEN) as fake_slack:
        settings = fake_trainer_settings_for(
            module_db_url,
            folder,
            slack={"bot_token": TOKEN, "signing_secret": SECRET, "api_base_url": fake_slack.api_url},
        )
        with open_app(settings) as client:
            tag = uuid.uuid4().hex[:8]
            owner = register(client, f"owner-{tag}@example.com")
            other = register(client)
            h = owner.headers
            ds_name = f"ownerdata-{tag}"
            classes = (f"whisker{tag}", f"paw{tag}")
            did = upload_dataset(client, h, ds_name, named_classification(12, ds_name, classes))
            image_id = client.get(f"{API}/datasets/{did}/images", headers=h).json()["items"][0]["id"]
            snap = client.post(f"{API}/datasets/{did}/snapshots", json={"name": "s1"}, headers=h)
            assert snap.status_code == 201, snap.text
            project_name = f"ownerproject-{tag}"
            project = client.post(f"{API}/projects", json={"name": project_name}, headers=h)
            assert project.status_code == 201, project.text
            ids: Ids = {
                "dataset_id": did,
                "dataset_name": ds_name,
                "image_id": image_id,
                "snapshot_id": snap.json()["id"],
                "project_id": project.json()["id"],
            }
            job = client.post(
                f"{API}/jobs", json={"intent": job_intent(ids), "project_id": ids["project_id"]}, headers=h
            )
            assert job.status_code == 201, job.text
            ids["job_id"] = job.json()["id"]
            weights_name = f"ownerweights-{tag}.safetensors"
            ids["weights_id"] = upload_weights(client, h, weights_name)
            chat_text = f"ownerchat-{tag} train resnet18 on {ds_name} for 1 epoch, image size 32"
            turn = client.post(f"{API}/chat", json={"message": chat_text}, headers=h)
            assert turn.status_code == 200, turn.text
            ids["session_id"] = turn.json()["session_id"]
            w = World(
                client,
                fake_slack,
                owner,
                other,
                ids,
                [owner.email, ds_name, *classes, project_name, f"ownerchat-{tag}", weights_name],
                "",
                "",
            )
            ids["done_job"], _ = db_job(w, owner.id, status="completed")
            ids["checkpoint_name"] = "best"
            ids["trainer_job"], w.job_token = db_job(w, owner.id, status="running")
            _, w.other_job_token = db_job(w, other.id, status="completed")
            with w.db() as db:
                run = TestRun(owner_id=owner.id, job_id=ids["done_job"], dataset_id=did, status="completed")
                export = ModelExport(owner_id=owner.id, job_id=ids["done_job"], status="completed")
                link = SlackLink(team_id="", slack_user_id=f"UOWNER{tag}".upper(), user_id=owner.id)
                db.add_all([run, export, link, SlackLink(team_id="", slack_user_id="UOTHER", user_id=other.id)])
                db.commit()
                ids.update(run_id=run.id, export_id=export.id, link_id=link.id)
                session = db.get(ChatSession, ids["session_id"])
                assert session is not None and session.state == "confirming", "the chat should ask to confirm"
                ids["session_turns"] = int(session.turns or 0)
            yield w


# ------------------------------------------------------------------------------ expectations


Body = Callable[[World], dict[str, Any]]


@dataclass(frozen=True)
class Expect:
    """What one route is. `owner`: the statuses the owner's call may answer (WS: close codes, or
    200 for a reply frame). `cross`: "404" when the request names the owner's resource (the other
    user gets 404), "hidden" when it does not (any 2xx/4xx answer, never the owner's data), "admin"
    for an administrators' route (neither user is one: both get 403).
    `body(w)`: request kwargs (json/data/files/params). `use`: path parameter -> key of
    `World.ids` when not the same name. `fresh`: kind of throwaway resource for the owner's call."""

    access: str
    owner: tuple[int, ...] = (200,)
    cross: str = "404"
    body: Body | None = None
    use: dict[str, str] = field(default_factory=dict)
    fresh: str | None = None
    why: str = ""


def E(access: str, *owner: int, **kw: Any) -> Expect:
    return Expect(access, owner or (200,), **kw)


def _parse(w: World) -> dict[str, Any]:
    return {"json": {"text": "train resnet18 on digits"}}


def _register(w: World) -> dict[str, Any]:
    return {"json": {"email": f"{w.unique('new')}@example.com", "password": "correct horse battery staple"}}


def _token(w: World) -> dict[str, Any]:
    return {"data": {"username": w.other.email, "password": "correct horse battery staple"}}


def _small_safetensors() -> bytes:
    from tests.tools.test_weights import small_safetensors

    return small_safetensors()


DONE = {"job_id": "done_job"}
A = API

ROUTES: dict[tuple[str, str], Expect] = {
    # ---- public
    ("GET", "/health"): E(PUBLIC, why="readiness probe; no paths or names in it"),
    ("GET", "/metrics"): E(PUBLIC, why="Prometheus counts only, no names or ids"),
    ("GET", "/"): E(PUBLIC, why="the chat page"),
    ("GET", "/static/{name:path}"): E(PUBLIC, why="the page's assets"),
    ("GET", "/openapi.json"): E(PUBLIC),
    ("GET", "/docs"): E(PUBLIC),
    ("GET", "/docs/oauth2-redirect"): E(PUBLIC),
    ("GET", "/redoc"): E(PUBLIC),
    ("GET", f"{A}/ui/config"): E(PUBLIC, why="version and MLflow UI URL for the page"),
    ("POST", f"{A}/agent/parse"): E(PUBLIC, body=_parse, why="pure text parser, touches no data"),
    ("POST", f"{A}/auth/register"): E(PUBLIC, 201, body=_register),
    ("POST", f"{A}/auth/token"): E(PUBLIC, body=_token),
    # ---- trainers
    ("POST", "/internal/jobs/{job_id}/events"): E(TRAINER, use={"job_id": "trainer_job"}),
    # ---- Slack
    ("POST", "/slack/events"): E(SLACK),
    ("POST", "/slack/commands"): E(SLACK),
    ("POST", "/slack/interactions"): E(SLACK),
    # ---- signed-in users
    ("GET", f"{A}/auth/me"): E(USER, cross="hidden"),
    ("POST", f"{A}/projects"): E(USER, 201, cross="hidden", body=lambda w: {"json": {"name": w.unique("p")}}),
    ("GET", f"{A}/projects"): E(USER, cross="hidden"),
    ("GET", f"{A}/projects/{{project_id}}"): E(USER),
    ("PATCH", f"{A}/projects/{{project_id}}"): E(USER, body=lambda w: {"json": {"description": "changed"}}),
    ("DELETE", f"{A}/projects/{{project_id}}"): E(USER, 204, fresh="project"),
    ("POST", f"{A}/datasets"): E(USER, 201, cross="hidden", body=lambda w: {"json": {"name": w.unique("d")}}),
    ("GET", f"{A}/datasets"): E(USER, cross="hidden"),
    ("GET", f"{A}/datasets/{{dataset_id}}"): E(USER),
    ("PATCH", f"{A}/datasets/{{dataset_id}}"): E(USER, body=lambda w: {"json": {"description": "changed"}}),
    ("DELETE", f"{A}/datasets/{{dataset_id}}"): E(USER, fresh="dataset"),
    ("POST", f"{A}/datasets/{{dataset_id}}/upload"): E(
        USER, 200, fresh="dataset", body=lambda w: {"files": [("files", ("x/a.png", png(), "image/png"))]}
    ),
    ("GET", f"{A}/datasets/{{dataset_id}}/images"): E(USER),
    ("GET", f"{A}/datasets/{{dataset_id}}/images/{{image_id}}"): E(USER),
    ("GET", f"{A}/datasets/{{dataset_id}}/images/{{image_id}}/file"): E(USER),
    ("GET", f"{A}/datasets/{{dataset_id}}/images/{{image_id}}/thumbnail"): E(USER),
    ("DELETE", f"{A}/datasets/{{dataset_id}}/images/{{image_id}}"): E(USER, fresh="image"),
    ("GET", f"{A}/datasets/{{dataset_id}}/annotations"): E(USER),
    ("GET", f"{A}/datasets/{{dataset_id}}/compatibility"): E(USER),
    ("POST", f"{A}/datasets/{{dataset_id}}/snapshots"): E(USER, 201, body=lambda w: {"json": {}}),
    ("GET", f"{A}/datasets/{{dataset_id}}/snapshots"): E(USER),
    ("GET", f"{A}/datasets/{{dataset_id}}/snapshots/{{snapshot_id}}"): E(USER),
    ("GET", f"{A}/datasets/{{dataset_id}}/snapshots/{{snapshot_id}}/annotations"): E(USER),
    ("POST", f"{A}/jobs"): E(USER, 201, body=lambda w: {"json": {"intent": job_intent(w.ids)}}),
    ("GET", f"{A}/jobs"): E(USER, cross="hidden"),
    ("GET", f"{A}/weights"): E(USER, cross="hidden", why="the registry is shared: no user's data in it"),
    ("POST", f"{A}/weights"): E(
        USER,
        403,
        cross="admin",
        body=lambda w: {"data": {"model": "resnet18"}, "files": {"file": ("w.safetensors", b"x" * 16)}},
        why="administrators only: a signed-in user who is not one gets 403 before the file is read",
    ),
    ("GET", f"{A}/weights/mine"): E(USER, cross="hidden", why="lists the caller's own uploads only"),
    ("POST", f"{A}/weights/mine"): E(
        USER,
        201,
        cross="hidden",
        body=lambda w: {
            "data": {"model": "resnet18"},
            "files": {"file": (w.unique("w") + ".safetensors", _small_safetensors())},
        },
        why="any signed-in user stores weights for their own jobs",
    ),
    ("GET", f"{A}/weights/mine/{{weights_id}}"): E(USER),
    ("DELETE", f"{A}/weights/mine/{{weights_id}}"): E(USER, 204, fresh="user_weights"),
    ("GET", f"{A}/jobs/{{job_id}}"): E(USER),
    ("POST", f"{A}/jobs/{{job_id}}/stop"): E(USER, fresh="queued_job"),
    ("POST", f"{A}/jobs/{{job_id}}/resume"): E(USER, 409, use=DONE, why="a completed job has nothing to resume"),
    ("DELETE", f"{A}/jobs/{{job_id}}"): E(USER, 204, fresh="finished_job"),
    ("GET", f"{A}/jobs/{{job_id}}/metrics"): E(USER),
    ("GET", f"{A}/jobs/{{job_id}}/events"): E(USER),
    ("GET", f"{A}/jobs/{{job_id}}/stream"): E(USER, 204, use=DONE, why="finished, nothing after `after`"),
    ("POST", f"{A}/jobs/{{job_id}}/inference"): E(
        USER, 409, use=DONE, body=lambda w: {"files": {"file": ("a.png", png(), "image/png")}}, why="no checkpoints"
    ),
    ("POST", f"{A}/jobs/{{job_id}}/export"): E(
        USER, 409, use=DONE, body=lambda w: {"json": {"format": "onnx"}}, why="no checkpoints"
    ),
    ("GET", f"{A}/jobs/{{job_id}}/exports"): E(USER, use=DONE),
    ("GET", f"{A}/jobs/{{job_id}}/exports/{{export_id}}"): E(USER, use=DONE),
    ("GET", f"{A}/jobs/{{job_id}}/exports/{{export_id}}/download"): E(USER, 409, use=DONE, why="no file stored"),
    ("GET", f"{A}/jobs/{{job_id}}/checkpoints/{{name}}"): E(
        USER, 409, use={**DONE, "name": "checkpoint_name"}, why="no checkpoints"
    ),
    ("GET", f"{A}/jobs/{{job_id}}/model-card"): E(USER, use=DONE),
    ("POST", f"{A}/downloads"): E(
        USER,
        201,
        body=lambda w: {"json": {"job_id": w.ids["done_job"], "object": "model-card"}},
        why="a signed link to my job's model card",
    ),
    # ---- signed download links (test_signed_link_route)
    ("GET", f"{A}/dl/{{signed}}"): E(SIGNED, why="the link is the credential: one user, one object, until it expires"),
    ("POST", f"{A}/test-runs"): E(
        USER,
        409,
        body=lambda w: {"json": {"job_id": w.ids["done_job"], "dataset_id": w.ids["dataset_id"]}},
        why="the job has no checkpoints",
    ),
    ("POST", f"{A}/test-runs/upload"): E(
        USER,
        409,
        body=lambda w: {"data": {"job_id": str(w.ids["done_job"])}, "files": {"file": ("t.zip", tiny_zip())}},
        why="the job has no checkpoints",
    ),
    ("GET", f"{A}/test-runs"): E(USER, cross="hidden"),
    ("GET", f"{A}/test-runs/{{run_id}}"): E(USER),
    ("GET", f"{A}/test-runs/{{run_id}}/events"): E(USER),
    ("GET", f"{A}/test-runs/{{run_id}}/stream"): E(USER, 204, why="finished, nothing after `after`"),
    ("GET", f"{A}/test-runs/{{run_id}}/report"): E(USER, 409, why="no report stored"),
    ("GET", f"{A}/test-runs/{{run_id}}/predictions"): E(USER, 409, why="no predictions stored"),
    ("POST", f"{A}/chat"): E(
        USER, body=lambda w: {"json": {"session_id": w.ids["session_id"], "message": "what datasets do I have?"}}
    ),
    ("GET", f"{A}/chat/sessions"): E(USER, cross="hidden"),
    ("GET", f"{A}/chat/sessions/{{session_id}}"): E(USER),
    ("POST", f"{A}/slack/link"): E(USER, 201, cross="hidden"),
    ("GET", f"{A}/slack/links"): E(USER, cross="hidden"),
    ("DELETE", f"{A}/slack/links/{{link_id}}"): E(USER, 204, fresh="link"),
    ("POST", f"{A}/stream-tickets"): E(
        USER, 201, body=lambda w: {"json": {"kind": "job", "id": w.ids["job_id"]}}, why="a ticket for one of my streams"
    ),
    # ---- WebSockets (owner: 1000 = a finished stream's normal close; 200 = a reply frame)
    ("WS", "/ws/jobs/{job_id}"): E(USER, WS_FINISHED, use=DONE),
    ("WS", "/ws/test-runs/{run_id}"): E(USER, WS_FINISHED),
    ("WS", "/ws/chat"): E(USER, why="the session id of the first message is what is checked"),
}


def route_keys(app: Any) -> set[tuple[str, str]]:
    """(method, path) of everything the app serves. FastAPI >= 0.16x keeps included routers as
    branches in `app.routes`; `fastapi.routing.iter_route_contexts` flattens them (full paths)."""
    keys: set[tuple[str, str]] = set()
    for ctx in iter_route_contexts(app.routes):
        route, path = ctx.original_route, ctx.path
        assert path, f"a route without a path: {route!r}"
        if isinstance(route, APIWebSocketRoute | WebSocketRoute):
            keys.add(("WS", path))
        elif isinstance(route, Mount):
            keys.add(("MOUNT", path))
        elif isinstance(route, APIRoute | Route):
            methods = set(ctx.methods or ())
            if "GET" in methods:
                methods.discard("HEAD")
            keys.update((m, path) for m in methods)
        else:
            raise AssertionError(f"a route of an unknown kind: {route!r}")
    return keys


def _ids(*classes: str) -> list[Any]:
    return [pytest.param(k, id=f"{k[0]} {k[1]}") for k, e in ROUTES.items() if e.access in classes]


# -------------------------------------------------------------------------------- one call


@dataclass
class Outcome:
    status: int  # HTTP status, or the WebSocket close code (200: a frame came)
    text: str


def _url(w: World, key: tuple[str, str], ids: Ids) -> str:
    values = {**ids, **{p: ids[k] for p, k in ROUTES[key].use.items()}}
    return key[1].replace("{name:path}", "js/main.js").format(**values)


def call(w: World, key: tuple[str, str], headers: dict[str, str], ids: Ids | None = None) -> Outcome:
    ids = ids or w.ids
    method, _ = key
    e = ROUTES[key]
    url = _url(w, key, ids)
    if method == "WS":
        return ws_call(w, key, url, headers, ids)
    kwargs = e.body(w) if e.body else {}
    r = w.client.request(method, url, headers=headers, **kwargs)
    return Outcome(r.status_code, r.text)


def ws_call(w: World, key: tuple[str, str], url: str, headers: dict[str, str], ids: Ids) -> Outcome:
    token = headers.get("Authorization", "").removeprefix("Bearer ")
    full = f"{url}?token={token}" if token else url
    with w.client.websocket_connect(full) as ws:
        try:
            if key[1] == "/ws/chat":
                ws.send_json(
                    {"type": "message", "session_id": ids["session_id"], "message": "what datasets do I have?"}
                )
            frames = []
            while True:
                frame = ws.receive_json()
                if frame.get("type") in ("reply", "error"):
                    status = (
                        200 if frame["type"] == "reply" else (404 if frame.get("error") == "NotFoundError" else 400)
                    )
                    return Outcome(status, json.dumps(frame))
                frames.append(frame)
        except WebSocketDisconnect as exc:
            return Outcome(exc.code, json.dumps(frames) + str(exc.reason))


def forged_token(w: World) -> dict[str, str]:
    """A well-formed access token for the owner, signed with a secret that is not the server's."""
    now = int(time.time())
    payload = {"sub": str(w.owner.id), "type": "access", "iat": now, "exp": now + 600}
    return {"Authorization": "Bearer " + jwt.encode(payload, "not-the-server-secret-" + "x" * 40, algorithm="HS256")}


def confirmation_message(value: str) -> dict[str, Any]:
    """A bot message with the Confirm button (as tests.web.slack.fake_slack records one)."""
    button = {"type": "button", "action_id": "vta_confirm", "text": {"type": "plain_text", "text": "Confirm"}}
    return {
        "ts": "1700000000.000100",
        "channel": "C0CHANNEL",
        "text": "confirm?",
        "blocks": [{"type": "actions", "block_id": "vta_confirmation", "elements": [{**button, "value": value}]}],
    }


class _Recorder:
    """Stands in for the HTTP client of a SlackSender: keeps the request instead of sending it."""

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> tuple[str, bytes, dict[str, str]]:
        return path, content, headers


def slack_post(w: World, path: str, *, secret: str | None = SECRET) -> Any:
    """A well-formed Slack request to `path` (events: url_verification; commands: `/train help`;
    interactions: a Confirm click on a session that does not exist), signed with `secret`, or not
    signed at all (None)."""
    recorder = SlackSender(_Recorder(), secret=secret or "unused")
    url = w.fake_slack.response_url("signed")
    if path == "/slack/events":
        body = json.dumps({"token": "x", "challenge": "chal-123", "type": "url_verification"})
        _, content, headers = recorder.post(path, body, "application/json")
    elif path == "/slack/commands":
        _, content, headers = recorder.command("help", user="UNOBODY", response_url=url)
    else:
        _, content, headers = recorder.click(
            confirmation_message("nosuch:1"), "vta_confirm", user="UNOBODY", response_url=url
        )
    if secret is None:
        headers = {"Content-Type": headers["Content-Type"]}
    return w.client.post(path, content=content, headers=headers)


# ------------------------------------------------------------------------------------- tests


def test_every_route_is_declared(world: World) -> None:
    """A new route without an entry in ROUTES fails here; so does an entry for a route that is gone."""
    served = route_keys(world.app)
    missing = sorted(served - ROUTES.keys())
    stale = sorted(ROUTES.keys() - served)
    assert not missing, f"routes without an access declaration in {__name__}.ROUTES: {missing}"
    assert not stale, f"ROUTES entries for routes the app does not serve: {stale}"
    assert all(e.access in (PUBLIC, USER, TRAINER, SLACK, SIGNED) for e in ROUTES.values())
    assert all(e.cross in ("404", "hidden", "admin") for e in ROUTES.values())


@pytest.mark.parametrize("key", _ids(PUBLIC))
def test_public_route_answers_anonymous_callers(world: World, key: tuple[str, str]) -> None:
    out = call(world, key, {})
    assert out.status in ROUTES[key].owner, out.text[:500]
    for secret in world.secrets[1:]:  # (sign-in echoes nothing either)
        assert secret not in out.text


@pytest.mark.parametrize("key", _ids(USER, TRAINER))
def test_anonymous_is_refused(world: World, key: tuple[str, str]) -> None:
    out = call(world, key, {})
    expected = WS_UNAUTHENTICATED if key[0] == "WS" else {401}
    assert out.status in expected, out.text[:500]


@pytest.mark.parametrize("key", _ids(USER, TRAINER))
def test_bad_token_is_refused(world: World, key: tuple[str, str]) -> None:
    out = call(world, key, forged_token(world))
    expected = WS_UNAUTHENTICATED if key[0] == "WS" else {401}
    assert out.status in expected, out.text[:500]
    if ROUTES[key].access == TRAINER:  # a user's real access token is no trainer token either
        assert call(world, key, world.owner.headers).status == 401


@pytest.mark.parametrize("key", _ids(USER))
def test_other_user_cannot_see_or_touch_the_owners_resource(world: World, key: tuple[str, str]) -> None:
    e = ROUTES[key]
    out = call(world, key, world.other.headers)
    if e.cross == "404":
        assert out.status == (WS_NOT_FOUND if key[0] == "WS" and key[1] != "/ws/chat" else 404), out.text[:500]
    elif e.cross == "admin":  # neither user is an administrator: both are refused alike
        assert out.status == 403, out.text[:500]
    else:
        assert out.status < 500 and out.status not in (401, 403), out.text[:500]
    leaked = [s for s in world.secrets if s in out.text]
    assert not leaked, f"{key} showed another user's data: {leaked}"


def test_owner_resources_survive_the_other_users_calls(world: World) -> None:
    """Runs after the matrix above: everything B tried to change or delete is still the owner's."""
    c, h, ids = world.client, world.owner.headers, world.ids
    for url in (
        f"{API}/projects/{ids['project_id']}",
        f"{API}/datasets/{ids['dataset_id']}",
        f"{API}/datasets/{ids['dataset_id']}/images/{ids['image_id']}",
        f"{API}/jobs/{ids['job_id']}",
        f"{API}/jobs/{ids['done_job']}",
        f"{API}/chat/sessions/{ids['session_id']}",
        f"{API}/test-runs/{ids['run_id']}",
    ):
        assert c.get(url, headers=h).status_code == 200, url
    assert ids["link_id"] in [x["id"] for x in c.get(f"{API}/slack/links", headers=h).json()]
    assert c.get(f"{API}/projects/{ids['project_id']}", headers=h).json()["description"] == ""


@pytest.mark.parametrize("key", _ids(USER))
def test_owner_gets_through(world: World, key: tuple[str, str]) -> None:
    e = ROUTES[key]
    ids = {**world.ids, **world.fresh(e.fresh)} if e.fresh else world.ids
    out = call(world, key, world.owner.headers, ids)
    assert out.status in e.owner, out.text[:500]


# ---- signed download links: the token in the path, never a header


def _signed_for(w: World, user_id: int, job_id: int, *, secret: str | None = None) -> str:
    from tools.downloads import LinkClaim, sign_token

    claim = LinkClaim(user_id, job_id, "model-card", None, time.time() + 300)
    return sign_token(secret or w.app.state.secret_key, claim)


@pytest.mark.parametrize("key", _ids(SIGNED))
def test_signed_link_route(world: World, key: tuple[str, str]) -> None:
    c, ids = world.client, world.ids
    url = key[1].replace("{signed}", "{}")
    for bad in ("garbage", _signed_for(world, world.owner.id, ids["done_job"], secret="another-secret-" + "x" * 40)):
        assert c.get(url.format(bad)).status_code == 401  # anonymous, and forged with another secret
        assert c.get(url.format(bad), headers=world.owner.headers).status_code == 401  # a bearer token adds nothing
    made = c.post(
        f"{API}/downloads", json={"job_id": ids["done_job"], "object": "model-card"}, headers=world.owner.headers
    )
    assert made.status_code == 201, made.text
    owner = c.get(made.json()["url"])  # no Authorization header
    assert owner.status_code in ROUTES[key].owner and owner.json()["job_id"] == ids["done_job"], owner.text[:500]
    # a genuine link of the other user that names the owner's job: the object is checked for its user
    cross = c.get(url.format(_signed_for(world, world.other.id, ids["done_job"])))
    assert cross.status_code == 404, cross.text[:500]
    leaked = [s for s in world.secrets if s in cross.text]
    assert not leaked


# ---- the trainer route: the job's own token only


def test_trainer_route_takes_only_that_jobs_token(world: World) -> None:
    url = f"/internal/jobs/{world.ids['trainer_job']}/events"
    event = {"events": [{"type": "log", "data": {"line": "hello"}, "event_id": uuid.uuid4().hex}]}
    other = world.client.post(url, json=event, headers={"Authorization": f"Bearer {world.other_job_token}"})
    assert other.status_code == 401, other.text
    own = world.client.post(url, json=event, headers={"Authorization": f"Bearer {world.job_token}"})
    assert own.status_code == 200 and own.json()["accepted"] == 1, own.text
    # an unknown job answers like a wrong token
    unknown = world.client.post(
        "/internal/jobs/999999999/events", json=event, headers={"Authorization": f"Bearer {world.job_token}"}
    )
    assert unknown.status_code == 401


# ---- Slack: the signature is the credential


@pytest.mark.parametrize("path", ["/slack/events", "/slack/commands", "/slack/interactions"])
def test_slack_routes_need_the_signature(world: World, path: str) -> None:
    assert ROUTES[("POST", path)].access == SLACK
    assert slack_post(world, path, secret=None).status_code == 401
    assert slack_post(world, path, secret="not-the-signing-secret").status_code == 401
    ok = slack_post(world, path)
    assert ok.status_code == 200, ok.text


def _slack_said(w: World) -> str:
    bot = w.app.state.slack
    assert bot.wait_idle(30)
    return json.dumps(w.fake_slack.calls, ensure_ascii=False)


def test_slack_user_linked_to_another_account_never_sees_the_owners_job(world: World) -> None:
    sender = SlackSender(world.client)
    job_id = world.ids["job_id"]
    before = len(world.fake_slack.calls)
    sender.mention(f"how is job {job_id} going?", user="UOTHER")
    sender.mention(f"train resnet18 on {world.ids['dataset_name']} for 1 epoch", user="UOTHER")
    sender.mention("what datasets do I have?", user="UOTHER")
    url = world.fake_slack.response_url("other-cmd")
    sender.command(f"how is job {job_id} going?", user="UOTHER", response_url=url)
    said = _slack_said(world)
    new = json.dumps(world.fake_slack.calls[before:], ensure_ascii=False)
    assert f"Job {job_id} not found." in new, new[-2000:]
    # (the dataset name may be echoed back: the caller typed it)
    leaked = [s for s in world.secrets if s in said and s != world.ids["dataset_name"]]
    assert not leaked, leaked


def test_slack_click_on_the_owners_confirmation_is_refused(world: World) -> None:
    """The owner's chat session waits for "yes"; a Slack user linked to B clicks Confirm with its
    value: "only the person who asked", and no job starts for anyone."""
    from tools.db.models import Job

    with world.db() as db:
        jobs_before = db.query(Job).count()
    before = len(world.fake_slack.calls)
    sender = SlackSender(world.client)
    message = confirmation_message(f"{world.ids['session_id']}:{world.ids['session_turns']}")
    r = sender.click(message, "vta_confirm", user="UOTHER", response_url=world.fake_slack.response_url("click"))
    assert r.status_code == 200, r.text
    _slack_said(world)
    said = json.dumps(world.fake_slack.calls[before:], ensure_ascii=False)
    assert "Only the person who asked can answer this confirmation." in said
    with world.db() as db:
        assert db.query(Job).count() == jobs_before
    assert not [s for s in world.secrets if s in said]


# ---- chat tools: naming another user's things reveals nothing


# (probe, the job it names when the dialogue must answer "Job N not found.")
CHAT_PROBES = [
    ("how is job {job_id} going?", "job_id"),
    ("metrics of job {job_id}", "job_id"),
    ("stop job {job_id}", "job_id"),
    ("resume job {job_id}", "job_id"),
    ("export job {done_job} to ONNX", "done_job"),
    ("test job {done_job} on this image", "done_job"),
    ("run a test on {dataset_name} with job {done_job}", "done_job"),
    ("show job {job_id}", None),  # not a command of the dialogue: still nothing may show
    ("delete job {job_id}", None),
    ("train resnet18 on {dataset_name} for 1 epoch", None),
    ("train resnet18 on {dataset_id} for 1 epoch", None),
    ("can I train detection on {dataset_name}?", None),
    ("what datasets do I have?", None),
]


@pytest.mark.parametrize(("probe", "names_job"), CHAT_PROBES, ids=[p for p, _ in CHAT_PROBES])
def test_chat_tools_do_not_reveal_another_users_resources(world: World, probe: str, names_job: str | None) -> None:
    from tools.db.models import Job

    message = probe.format(**world.ids)
    with world.db() as db:
        before = {(j.id, j.status) for j in db.query(Job).filter(Job.owner_id == world.owner.id)}
    r = world.client.post(f"{API}/chat", json={"message": message}, headers=world.other.headers)
    assert r.status_code == 200, r.text
    leaked = [s for s in world.secrets if s in r.text and s not in message]  # echoing the caller's words is fine
    assert not leaked, (message, leaked, r.json()["reply"])
    if names_job:
        assert f"Job {world.ids[names_job]} not found." in r.json()["reply"], r.json()["reply"]
    with world.db() as db:  # and nothing of the owner's changed
        after = {(j.id, j.status) for j in db.query(Job).filter(Job.owner_id == world.owner.id)}
    assert {i for i, _ in before} <= {i for i, _ in after}


def test_chat_websocket_refuses_the_owners_session_and_jobs(world: World) -> None:
    token = world.other.token
    with world.client.websocket_connect(f"/ws/chat?token={token}") as ws:
        ws.send_json({"type": "message", "session_id": world.ids["session_id"], "message": "yes"})
        frame = ws.receive_json()
        assert frame["type"] == "error" and frame["error"] == "NotFoundError", frame
        ws.send_json({"type": "message", "message": f"how is job {world.ids['job_id']} going?"})
        frame = ws.receive_json()
        assert frame["type"] == "reply" and frame["reply"] == f"Job {world.ids['job_id']} not found.", frame
        assert not [s for s in world.secrets if s in json.dumps(frame)]


def test_sse_streams_refuse_other_users_and_bad_tokens(world: World) -> None:
    """The SSE routes also take `?token=` (EventSource cannot set headers): the same answers."""
    for path in (f"{API}/jobs/{world.ids['done_job']}/stream", f"{API}/test-runs/{world.ids['run_id']}/stream"):
        assert world.client.get(path, params={"token": "garbage"}).status_code == 401
        forged = forged_token(world)["Authorization"].removeprefix("Bearer ")
        assert world.client.get(path, params={"token": forged}).status_code == 401
        assert world.client.get(path, params={"token": world.other.token}).status_code == 404
        assert world.client.get(path, params={"token": world.owner.token}).status_code == 204


def _ws_close(w: World, url: str) -> int:
    with w.client.websocket_connect(url) as ws:
        try:
            while True:
                ws.receive_json()
        except WebSocketDisconnect as exc:
            return int(exc.code)


def test_stream_tickets_open_one_stream_of_their_owner_once(world: World) -> None:
    """The ticket way into the streams: a ticket opens the one stream it was issued for, once; a
    made-up ticket, a used one and one for another stream are refused like a bad token."""
    c, done, run_id = world.client, world.ids["done_job"], world.ids["run_id"]

    def ticket(kind: str, ident: int | None, actor: Actor) -> Any:
        return c.post(f"{API}/stream-tickets", json={"kind": kind, "id": ident}, headers=actor.headers)

    assert ticket("job", done, world.other).status_code == 404  # another user's job: like REST
    assert ticket("test_run", run_id, world.other).status_code == 404
    t = ticket("job", done, world.owner).json()["ticket"]
    assert _ws_close(world, f"/ws/jobs/{done}?ticket={t}") == WS_FINISHED
    assert _ws_close(world, f"/ws/jobs/{done}?ticket={t}") in WS_UNAUTHENTICATED  # used up
    assert _ws_close(world, f"/ws/jobs/{done}?ticket=made-up") in WS_UNAUTHENTICATED
    t = ticket("test_run", run_id, world.owner).json()["ticket"]
    assert _ws_close(world, f"/ws/jobs/{done}?ticket={t}") in WS_UNAUTHENTICATED  # not for this stream
    t = ticket("job", done, world.owner).json()["ticket"]
    assert c.get(f"{API}/jobs/{done}/stream", params={"ticket": t}).status_code == 204
    assert c.get(f"{API}/jobs/{done}/stream", params={"ticket": t}).status_code == 401
