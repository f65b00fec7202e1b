"""Inference REST: single images, exports (ONNX, TorchScript, OpenVINO), batch test runs (`tools.inference`).

    POST /jobs/{id}/inference          multipart `file` or form `dataset_image_id`; form `conf`, `iou`,
                                       `checkpoint` (best|last); `?render=true` -> PNG with the
                                       predictions drawn, else the InferenceResult JSON
    POST /jobs/{id}/export             {"format": "onnx"|"torchscript"|"openvino", "checkpoint"?} -> 201
                                       export record with its parity report (422 naming `format`
                                       for another format, with the reason)
    GET  /jobs/{id}/exports            the job's exports
    GET  /jobs/{id}/exports/{eid}      one record;  .../download -> the file
    POST /test-runs                    {"job_id", "dataset_id" | "snapshot_id", "checkpoint"?, "conf"?,
                                       "iou"?} -> 201, runs in the background
    POST /test-runs/upload             multipart `job_id` + `file` (zip: images/ + annotations.json?)
    GET  /test-runs[?job_id=]          the caller's test runs
    GET  /test-runs/{id}               status, progress, metrics
    GET  /test-runs/{id}/events        stored progress events (`?after=SEQ`)
    GET  /test-runs/{id}/stream        the same, live (Server-Sent Events; `WS /ws/test-runs/{id}` in
                                       web.routes.ws), replayed from `after` / Last-Event-ID
    GET  /test-runs/{id}/report        the report JSON (download); .../predictions -> JSON lines

The service (worker pools) is created on first use and kept in the app's services
(`app.state.services.inference`, `tools.services`); the app's lifespan closes it. Errors are raised,
never mapped here: `web.errors` answers a worker crash or timeout (`InferenceUnavailableError`) 503,
an internal inference error (`InferenceFailedError`) 500, both with the reason.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tools.auth import decode_access_token
from tools.errors import InferenceFailedError, InferenceUnavailableError, PayloadTooLargeError, ToolError
from tools.inference import (
    InferenceConfig,
    InferenceOutcome,
    InferenceService,
    ResultFile,
    create_export,
    create_test_run,
    export_file,
    get_export,
    get_test_run,
    list_exports,
    list_test_runs,
    predict_route_async,
    run_inference_route,
    stage_test_upload,
    test_run_events,
    test_run_file,
)
from trainer_runtime.events import TERMINAL_STATUSES
from web.deps import (
    StorageDep,
    ToolContextDep,
    app_services,
    get_current_user,
    get_db,
    get_secret_key,
    get_tool_context,
    oauth2_scheme,
)
from web.params import MAX_ID, AfterSeq, IdPath, IdQuery
from web.routes.job_events import StreamRequestDep, authorize_test_run_sync, read_test_run_page, sse_response

router = APIRouter(tags=["inference"])

_service_lock = threading.Lock()


def get_inference_service(request: Request) -> InferenceService:
    """The app's InferenceService (made on first use, kept in `app.state.services`)."""
    state = request.app.state
    services = app_services(state)
    service: InferenceService | None = services.inference
    if service is not None:
        return service
    with _service_lock:
        service = services.inference
        if service is None:
            app = request.app

            def publish(channel: int, event: dict[str, Any]) -> None:
                bus = getattr(app.state, "event_bus", None)
                if bus is not None:
                    bus.publish_threadsafe(channel, event)

            config = InferenceConfig.from_settings(state.settings)
            service = InferenceService(
                config, state.storage, state.session_factory, publish, listeners=services.job_listeners
            )
            services.inference = service
    return service


def close_inference_service(app_state: Any) -> None:
    """Stop the workers (the app's lifespan calls this at shutdown)."""
    services = app_services(app_state)
    service: InferenceService | None = services.inference
    if service is not None:
        service.close()
        services.inference = None


def _stream(storage: Any, f: ResultFile, *, attachment: bool = True) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{f.filename}"'} if attachment else {}
    if f.size is not None:
        headers["Content-Length"] = str(f.size)
    return StreamingResponse(storage.internal.iter_chunks(f.key), media_type=f.content_type, headers=headers)


# ------------------------------------------------------------------------------ single image


class InferenceForm(BaseModel):
    """The form fields of `POST /jobs/{id}/inference` besides the file."""

    dataset_image_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="run an image of a dataset you can see"
    )
    conf: float | None = Field(default=None, ge=0.0, le=1.0, description="confidence threshold")
    iou: float | None = Field(default=None, ge=0.0, le=1.0, description="NMS IoU threshold")
    checkpoint: str | None = Field(default=None, pattern="^(best|last)$", description="best (default) or last")


_INFER_BODY = {
    "required": False,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "the image"},
                    **InferenceForm.model_json_schema()["properties"],
                },
            }
        }
    },
}


async def _inference_form(request: Request) -> tuple[Any, InferenceForm]:
    """(the uploaded file or None, the other fields), validated with FastAPI's 422 shape. The form is
    parsed here rather than by FastAPI's per-parameter `File`/`Form` machinery, which costs more than
    the rest of this hot route (~0.15 ms a request)."""
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError
    from starlette.datastructures import UploadFile as StarletteUpload

    ctype = request.headers.get("content-type", "")
    form = (
        await request.form(max_files=1, max_fields=8) if ctype.startswith(("multipart/", "application/x-www")) else {}
    )
    upload = form.get("file") if form else None
    if upload is not None and not isinstance(upload, StarletteUpload):
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", "file"), "msg": "Expected UploadFile", "input": str(upload)[:50]}]
        )
    try:
        fields = InferenceForm.model_validate({k: v for k, v in form.items() if k != "file" and isinstance(v, str)})
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
    return upload, fields


@router.post("/jobs/{job_id}/inference", response_model=None, openapi_extra={"requestBody": _INFER_BODY})
async def infer(
    job_id: IdPath,
    request: Request,
    render: Annotated[bool, Query(description="answer a PNG with the predictions drawn")] = False,
) -> Any:
    """Predict one image: multipart `file` (or form `dataset_image_id`), form `conf`, `iou`,
    `checkpoint` (best|last); `?render=true` answers a PNG with the predictions drawn."""
    token = await oauth2_scheme(request)
    file, form = await _inference_form(request)
    try:
        return await _infer(request, job_id, token, file, form, render)
    finally:
        if file is not None:
            await file.close()


async def _infer(request: Request, job_id: int, token: str | None, file: Any, form: InferenceForm, render: bool) -> Any:
    # The hot path. A repeated request (same token, job and checkpoint within the route cache's
    # TTL, `tools.inference.RouteCache`) skips the database and runs on the event loop: the token is
    # verified, the image read and the worker's answer awaited, no thread hop. Otherwise one thread
    # hop does the whole request (session, auth, DB lookups, the worker round trip) with the same
    # dependencies (`get_db`, `get_current_user`, `get_tool_context`) in the same order, so errors
    # and their status codes are those of any other route, and the route it resolved is cached.
    service = get_inference_service(request)
    state = request.app.state
    limit = service.config.max_image_bytes
    cacheable = bool(token) and file is not None and form.dataset_image_id is None
    route = service.routes.get(token or "", job_id, form.checkpoint) if cacheable else None

    def full() -> InferenceOutcome:
        with contextmanager(get_db)(request) as db:
            user = get_current_user(request, db, token)
            ctx = get_tool_context(request, db, user, state.storage)
            outcome, resolved = run_inference_route(
                ctx,
                service,
                job_id,
                image=_within_limit(file.file.read(limit + 1), limit) if file is not None else None,
                dataset_image_id=form.dataset_image_id,
                conf=form.conf,
                iou=form.iou,
                checkpoint=form.checkpoint,
            )
        if cacheable:
            service.routes.put(token or "", job_id, form.checkpoint, resolved)
        return outcome

    try:
        if route is None:
            outcome = await run_in_threadpool(full)
        else:
            decode_access_token(token or "", get_secret_key(request))
            image = _within_limit(await file.read(limit + 1), limit)  # Starlette reads a spooled file off the loop
            outcome = await predict_route_async(service, route, image, conf=form.conf, iou=form.iou)
    except (InferenceUnavailableError, InferenceFailedError):
        raise  # the worker's fault, not the route's: the cached route stays (web.errors maps these)
    except ToolError:
        if route is not None:
            service.routes.invalidate_job(job_id)  # the next request re-checks everything
        raise
    if render:
        from trainer_runtime.inference.render import render as draw

        font = request.app.state.settings.render_font
        png = await run_in_threadpool(draw, outcome.image, outcome.result, font_path=font)
        return Response(content=png, media_type="image/png")
    # the result is plain JSON (it came from the worker as JSON): no jsonable_encoder pass
    return JSONResponse(outcome.result)


def _within_limit(data: bytes, limit: int) -> bytes:
    if len(data) > limit:
        raise PayloadTooLargeError(
            f"the image is over the limit of {limit} bytes", detail={"field": "file", "limit_bytes": limit}
        )
    return data


# ----------------------------------------------------------------------------------- exports


class ExportRequest(BaseModel):
    """Which format to export a job's model to, and from which checkpoint (best by default)."""

    format: str = Field(
        default="onnx",
        max_length=32,
        description="onnx, torchscript or openvino (a zipped folder); every export is checked against the "
        "PyTorch model on a few images (parity.max_abs_diff, parity.ok)",
    )
    checkpoint: str | None = Field(default=None, pattern="^(best|last)$")


@router.post("/jobs/{job_id}/export", status_code=201, response_model=None)
def export(job_id: IdPath, body: ExportRequest, request: Request, ctx: ToolContextDep) -> Any:
    """Export your job's checkpoint (best by default) to ONNX, TorchScript or OpenVINO and check it
    against the PyTorch model; an identical earlier export is returned instead. 404 for a job that is
    not yours, 409 when it has no usable checkpoint, 422 for a format this model cannot export to."""
    service = get_inference_service(request)
    return create_export(ctx, service, job_id, body.format, body.checkpoint)


@router.get("/jobs/{job_id}/exports")
def exports(job_id: IdPath, ctx: ToolContextDep) -> list[dict[str, Any]]:
    """The exports of your job, oldest first; 404 when the job is not yours."""
    return list_exports(ctx, job_id)


@router.get("/jobs/{job_id}/exports/{export_id}")
def export_record(job_id: IdPath, export_id: IdPath, ctx: ToolContextDep) -> dict[str, Any]:
    """One export of your job: its format, status, file size and parity report; 404 when not yours."""
    return get_export(ctx, job_id, export_id)


@router.get("/jobs/{job_id}/exports/{export_id}/download")
def export_download(job_id: IdPath, export_id: IdPath, ctx: ToolContextDep, storage: StorageDep) -> StreamingResponse:
    """The exported file (a zipped folder for OpenVINO); 409 while the export is not completed,
    404 when it is not yours."""
    return _stream(storage, export_file(ctx, job_id, export_id))


# --------------------------------------------------------------------------------- test runs


class TestRunRequest(BaseModel):
    """A batch test of your job's checkpoint on a dataset or one of its snapshots, with optional
    confidence and IoU thresholds."""

    __test__ = False

    job_id: int = Field(ge=1, le=MAX_ID)
    dataset_id: str | None = None
    snapshot_id: str | None = None
    checkpoint: str | None = Field(default=None, pattern="^(best|last)$")
    conf: float | None = Field(default=None, ge=0.0, le=1.0)
    iou: float | None = Field(default=None, ge=0.0, le=1.0)


@router.post("/test-runs", status_code=201)
def start_test_run(body: TestRunRequest, request: Request, ctx: ToolContextDep) -> dict[str, Any]:
    """Start testing your job's model on a dataset or snapshot; it runs in the background (follow
    `/test-runs/{id}/events` or `/stream`). 404 for a job or dataset you cannot see, 409 when the job
    has no usable checkpoint, 422 when neither a dataset nor a snapshot is named."""
    service = get_inference_service(request)
    run = create_test_run(
        ctx,
        body.job_id,
        dataset_id=body.dataset_id,
        snapshot_id=body.snapshot_id,
        checkpoint=body.checkpoint,
        conf=body.conf,
        iou=body.iou,
    )
    service.submit_test_run(run["id"])
    return run


@router.post("/test-runs/upload", status_code=201)
def start_test_run_upload(
    request: Request,
    ctx: ToolContextDep,
    job_id: Annotated[int, Form()],
    file: Annotated[UploadFile, File(description="a zip: images/ (+ annotations.json) or plain images")],
    checkpoint: Annotated[str | None, Form(pattern="^(best|last)$")] = None,
    conf: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
    iou: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
) -> dict[str, Any]:
    """Start testing your job's model on an uploaded zip (images/ with an optional annotations.json,
    or plain images); it runs in the background. 413 when the upload is over the limit, 404/409 as for
    `POST /test-runs`."""
    from tools.errors import PayloadTooLargeError
    from tools.inference import job_checkpoint

    service = get_inference_service(request)
    job_checkpoint(ctx, job_id, checkpoint)  # 404/409 before reading a large upload
    limit = ctx.limits.max_upload_bytes
    with tempfile.NamedTemporaryFile(suffix=".zip", dir=_tmp_dir(service)) as tmp:
        copied = 0
        while chunk := file.file.read(1 << 20):
            copied += len(chunk)
            if copied > limit:
                raise PayloadTooLargeError(f"the upload is over {limit} bytes", detail={"limit_bytes": limit})
            tmp.write(chunk)
        tmp.flush()
        folder = stage_test_upload(ctx, service, Path(tmp.name), file.filename or "upload.zip")
    try:
        run = create_test_run(ctx, job_id, upload_dir=folder, checkpoint=checkpoint, conf=conf, iou=iou)
    except BaseException:
        shutil.rmtree(folder.parent, ignore_errors=True)
        raise
    service.submit_test_run(run["id"])
    return run


def _tmp_dir(service: InferenceService) -> Path:
    p = service.config.cache_dir / "tmp"
    p.mkdir(parents=True, exist_ok=True)
    return p


@router.get("/test-runs")
def test_runs(ctx: ToolContextDep, job_id: IdQuery = None) -> list[dict[str, Any]]:
    """Your test runs, newest first (at most 200), optionally only those of one job."""
    return list_test_runs(ctx, job_id)


@router.get("/test-runs/{run_id}")
def test_run(run_id: IdPath, ctx: ToolContextDep) -> dict[str, Any]:
    """One of your test runs: status, progress and, once finished, its metrics; 404 when not yours."""
    return get_test_run(ctx, run_id)


@router.get("/test-runs/{run_id}/events")
def test_run_event_list(run_id: IdPath, ctx: ToolContextDep, after: AfterSeq = 0) -> list[dict[str, Any]]:
    """The stored progress events of your test run with a sequence number above `after`; 404 when
    it is not yours."""
    return test_run_events(ctx, run_id, after)


@router.get(
    "/test-runs/{run_id}/stream",
    summary="Live test-run progress as Server-Sent Events (replay from `after` / Last-Event-ID, then live)",
    response_class=StreamingResponse,
)
async def stream_test_run(run_id: IdPath, request: Request, params: StreamRequestDep) -> Response:
    """The same stream as `GET /jobs/{id}/stream` (events, pings, ``event: end``, 204 when the run is
    finished with nothing after `after`), for a batch test run."""
    state = request.app.state
    status, last_seq = await run_in_threadpool(authorize_test_run_sync, state, params.token, run_id)
    if status in TERMINAL_STATUSES and last_seq <= params.after:
        return Response(status_code=204)
    return sse_response(state, -run_id, params.after, read_test_run_page)


@router.get("/test-runs/{run_id}/report")
def test_run_report(run_id: IdPath, ctx: ToolContextDep, storage: StorageDep) -> StreamingResponse:
    """Download the finished test run's report (JSON); 409 while it is not ready, 404 when not yours."""
    return _stream(storage, test_run_file(ctx, run_id, "report"))


@router.get("/test-runs/{run_id}/predictions")
def test_run_predictions(run_id: IdPath, ctx: ToolContextDep, storage: StorageDep) -> StreamingResponse:
    """Download the finished test run's predictions (JSON lines); 409 while they are not ready, 404
    when not yours."""
    return _stream(storage, test_run_file(ctx, run_id, "predictions"))
