"""`/internal`: endpoints for trainers, not for people (not under /api/v1).

`POST /internal/jobs/{job_id}/events` — a trainer's progress events (contract 4).

    Authorization: Bearer <the job's callback token>
    body: {"events": [{"job_id", "ts", "type", "data", "event_id"}, ...]}  (or one event object)
    200:  {"accepted": n, "duplicates": m, "last_seq": k}

* Auth: sha256(token) is compared with the job's `token_hash` by `hmac.compare_digest`. A missing
  or wrong token, another job's token, a job without a token, and an unknown job all answer the
  same 401 (an unauthenticated caller learns nothing about which jobs exist). The trainer's
  HttpReporter treats 401 as permanent.
* Validation (after auth): at most `MAX_BATCH` events and `MAX_BODY_BYTES` bytes (413); a body
  that is not JSON, an event that is not a ProgressEvent, or a `job_id` other than the URL's
  answers 422 with FastAPI's shape, naming the place: ``loc = ["body", "events", <index>, <field>]``.
  Nothing of a refused batch is stored.
* Storage: one transaction (`tools.events.ingest_batch`): seq assigned gapless, events whose
  `event_id` is already stored are skipped (counted in `duplicates`), side effects on the job.
  Then, after the commit, the new events are published on the event bus in seq order.
  A 2xx means stored: retrying the same batch is harmless.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from tools import events as event_store
from tools.db.models import Job
from tools.errors import AuthenticationError, PayloadTooLargeError
from trainer_runtime.events import EventType, utc_ts
from web.params import MAX_ID, IdPath
from web.routes.job_events import get_bus

log = logging.getLogger(__name__)

router = APIRouter(prefix="/internal", tags=["internal"])

MAX_BATCH = 1000
MAX_BODY_BYTES = 8 * 1024 * 1024
_DUMMY_HASH = hashlib.sha256(b"no such job").hexdigest()


class IngestEvent(BaseModel):
    """One event as a trainer sends it (`trainer_runtime.events.ProgressEvent`; `seq` is ignored)."""

    job_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    seq: int | None = Field(default=None, ge=0, le=MAX_ID)
    ts: str = Field(default_factory=utc_ts, max_length=event_store.MAX_TS_LEN)
    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)
    event_id: str | None = Field(default=None, min_length=1, max_length=event_store.MAX_EVENT_ID_LEN)


class IngestResponse(BaseModel):
    """How many events of the batch were stored, how many were already stored, and the job's last seq."""

    accepted: int
    duplicates: int
    last_seq: int


def token_hash(token: str) -> str:
    """What `Job.token_hash` stores for a callback token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_job_token(state: Any, job_id: int, token: str | None) -> None:
    """AuthenticationError unless `token` is the job's callback token (same answer for unknown jobs)."""
    with state.session_factory() as db:
        job = db.get(Job, job_id)
        has_token = job is not None and bool(job.token_hash)
        expected = job.token_hash if job is not None and has_token else _DUMMY_HASH
    # Compared even when there is nothing to match, so an unknown job takes the same time.
    ok = hmac.compare_digest(token_hash(token or "").encode(), expected.encode())
    if not (ok and has_token and token):
        raise AuthenticationError("invalid job token")


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _validate(job_id: int, payload: Any) -> list[IngestEvent]:
    if isinstance(payload, dict) and "events" in payload:
        raw, base = payload["events"], ["body", "events"]
        if not isinstance(raw, list):
            raise RequestValidationError(
                [{"type": "list_type", "loc": base, "msg": "Input should be a valid list", "input": None}]
            )
    elif isinstance(payload, dict):
        raw, base = [payload], ["body"]
    else:
        raise RequestValidationError(
            [{"type": "model_type", "loc": ["body"], "msg": "expected {'events': [...]} or one event", "input": None}]
        )
    if len(raw) > MAX_BATCH:
        raise PayloadTooLargeError(
            f"at most {MAX_BATCH} events per request, got {len(raw)}", detail={"max_batch": MAX_BATCH}
        )
    errors: list[dict[str, Any]] = []
    events: list[IngestEvent] = []
    for i, item in enumerate(raw):
        loc = [*base, i] if base[-1] == "events" else base
        try:
            event = IngestEvent.model_validate(item)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                errors.append({**err, "loc": [*loc, *err["loc"]], "input": None})
            continue
        if event.job_id is not None and event.job_id != job_id:
            errors.append(
                {
                    "type": "value_error",
                    "loc": [*loc, "job_id"],
                    "msg": f"job_id {event.job_id} does not match the job of the URL ({job_id})",
                    "input": event.job_id,
                }
            )
        events.append(event)
    if errors:
        raise RequestValidationError(errors)
    return events


def _ingest_sync(state: Any, job_id: int, token: str | None, payload: Any) -> event_store.IngestResult:
    """Auth, validation, storage: one trip to the thread pool per request."""
    check_job_token(state, job_id, token)
    events = _validate(job_id, payload)
    with state.session_factory() as db:
        items = [e.model_dump(exclude={"seq"}) | {"job_id": job_id} for e in events]
        return event_store.ingest_batch(db, job_id, items)


@router.post(
    "/jobs/{job_id}/events",
    response_model=IngestResponse,
    summary="Progress events from a job's trainer (per-job bearer token)",
    responses={401: {"description": "bad token or unknown job"}, 413: {}, 422: {}},
)
async def ingest_events(
    job_id: IdPath,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> IngestResponse:
    """For trainers, not people: store a batch of the job's progress events (`{"events": [...]}` or
    one event) and publish them; resending a batch is harmless. 401 for a bad token or unknown job
    (alike), 413 over 1000 events or 8 MiB, 422 for an invalid event (nothing of it is stored)."""
    state = request.app.state
    token = _bearer(authorization)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        await run_in_threadpool(check_job_token, state, job_id, token)  # 401 before 413
        raise PayloadTooLargeError(f"request body over {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            await run_in_threadpool(check_job_token, state, job_id, token)
            raise PayloadTooLargeError(f"request body over {MAX_BODY_BYTES} bytes")
    try:
        payload: Any = json.loads(body)
    except ValueError as exc:
        await run_in_threadpool(check_job_token, state, job_id, token)
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ["body"], "msg": f"JSON decode error: {exc}", "input": None}]
        ) from None
    result = await run_in_threadpool(_ingest_sync, state, job_id, token, payload)
    telemetry = getattr(state, "telemetry", None)
    if telemetry is not None:
        telemetry.record_ingested(result.stored, result.duplicates)
    try:
        await event_store.publish_events(get_bus(state), result.stored)
    except Exception as exc:  # stored is what counts: watchers fill gaps from the store
        log.warning("job %s: events stored but not published: %s", job_id, exc)
    return IngestResponse(accepted=len(result.stored), duplicates=result.duplicates, last_seq=result.last_seq)
