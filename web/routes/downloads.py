"""Downloads: checkpoints, model cards and signed links (`tools.downloads`).

GET  /jobs/{id}/checkpoints/{best|last}   the stored checkpoint (owner only; completed, stopped
                                          or failed jobs), ``job-12-resnet18-best.pt``
GET  /jobs/{id}/model-card                the ModelCard JSON
POST /downloads                           {"job_id", "object": best|last|model-card|export,
                                          "export_id"?} -> 201 {"url", "expires_at", ...}: a
                                          signed link valid DOWNLOAD_LINK_TTL_S seconds
GET  /dl/{signed}                         the file, without an Authorization header (a browser
                                          tab, Slack): 401 expired/tampered, 404 when the user
                                          no longer owns the object
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tools.context import ToolContext
from tools.downloads import (
    MAX_LINK_TOKEN_CHARS,
    ModelCard,
    create_link,
    link_filename,
    link_user,
    model_card,
    open_link,
    verify_link,
)
from tools.downloads import checkpoint_file as checkpoint_result
from tools.inference import ResultFile
from web.deps import StorageDep, ToolContextDep, app_services, link_signer, upload_limits
from web.params import MAX_ID, IdPath

router = APIRouter(tags=["downloads"])

CheckpointName = Annotated[Literal["best", "last"], Path(description="best or last")]


def _stream(storage: Any, f: ResultFile) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{f.filename}"', "Cache-Control": "no-store"}
    if f.size is not None:
        headers["Content-Length"] = str(f.size)
    return StreamingResponse(storage.internal.iter_chunks(f.key), media_type=f.content_type, headers=headers)


@router.get("/jobs/{job_id}/checkpoints/{name}", response_class=StreamingResponse)
def download_checkpoint(job_id: IdPath, name: CheckpointName, ctx: ToolContextDep, storage: StorageDep) -> Any:
    """The job's best.pt or last.pt, as stored (completed, stopped or failed jobs that have it)."""
    return _stream(storage, checkpoint_result(ctx, job_id, name))


@router.get("/jobs/{job_id}/model-card")
def job_model_card(job_id: IdPath, ctx: ToolContextDep) -> ModelCard:
    """What the job's files need to be used elsewhere: intent, hyper-parameters, dataset snapshot,
    pretrained source, metrics, classes in order, input size and preprocessing, checkpoints."""
    return model_card(ctx, job_id)


class LinkRequest(BaseModel):
    """What to make a signed download link for: one of your job's checkpoints, its model card or
    one of its exports."""

    job_id: int = Field(ge=1, le=MAX_ID)
    object: Literal["best", "last", "model-card", "export"] = Field(
        description="best / last checkpoint, the model card, or an export (with export_id)"
    )
    export_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class LinkOut(BaseModel):
    """A signed download link (the full `url`, and its `path` on this server), its file name and when
    it expires."""

    url: str
    path: str
    expires_at: str
    expires_in_s: int
    filename: str
    object: str
    job_id: int


@router.post("/downloads", status_code=201)
def make_link(body: LinkRequest, ctx: ToolContextDep) -> LinkOut:
    """A short-lived signed link to one of your downloads; it opens in a browser without a token."""
    assert ctx.links is not None
    return LinkOut(**create_link(ctx, ctx.links, body.job_id, body.object, body.export_id).as_dict())


@router.get("/dl/{signed}", response_model=None)
async def signed_download(
    signed: Annotated[str, Path(max_length=MAX_LINK_TOKEN_CHARS, description="the signed link token")],
    request: Request,
) -> Any:
    """Download what a signed link names (no Authorization header: the link is the credential)."""
    state = request.app.state
    signer = link_signer(state)
    claim = verify_link(signer.secret, signed, signer.clock())

    def resolve() -> tuple[ResultFile | ModelCard, str]:
        with state.session_factory() as db:
            ctx = ToolContext(
                db=db,
                user=None,
                storage=state.storage,
                work_dir=state.work_dir,
                limits=upload_limits(state.settings),
                services=app_services(state),
            )
            ctx.user = link_user(ctx, claim)
            target = open_link(ctx, claim)
            name = link_filename(ctx, claim) if isinstance(target, ModelCard) else ""
            return target, name

    target, name = await run_in_threadpool(resolve)
    if isinstance(target, ModelCard):
        return JSONResponse(
            target.model_dump(mode="json"),
            headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
        )
    return _stream(state.storage, target)
