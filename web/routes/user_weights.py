"""`/api/v1/weights/mine`: weights files a user uploads for their own jobs (`tools.user_weights`).

``POST`` (multipart: ``model``, ``file``, optional ``framework``; transformers also ``config``, the
model's config.json) stores a file for a catalog model: any signed-in user, checked without torch
like an administrator's import (422 naming ``file`` / ``model`` / ``config``; 413 over
USER_WEIGHTS_MAX_BYTES or the storage quota; nothing is kept when a check fails). ``GET`` lists the
caller's uploads (``model`` / ``framework`` filters); ``GET``/``DELETE /{weights_id}`` one of them.
Another user's upload answers 404. A job names one with ``intent.init_weights`` (its id, or
``"mine"``). The body guard (`web.bodylimit`) refuses a body without a valid token before reading
it, and bounds it by MAX_REQUEST_BODY_BYTES.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from tools import user_weights
from web.deps import ToolContextDep
from web.params import IdPath

router = APIRouter(prefix="/weights/mine", tags=["weights"])

FrameworkField = Annotated[str | None, Form(pattern="^(timm|transformers|ultralytics)$")]


@router.get("", summary="My uploaded weights")
def list_mine(
    ctx: ToolContextDep,
    model: Annotated[str | None, Query(min_length=1, max_length=200, description="only this catalog model")] = None,
    framework: Annotated[str | None, Query(pattern="^(timm|transformers|ultralytics)$")] = None,
) -> list[dict[str, Any]]:
    """The weights files you uploaded, newest first, optionally only those for one model or framework."""
    return user_weights.list_user_weights(ctx, model=model, framework=framework)


@router.post("", status_code=201, summary="Upload my own weights for a model (to start my jobs from)")
async def upload_mine(
    ctx: ToolContextDep,
    file: Annotated[UploadFile, File(description=".safetensors, .pt, .pth or .bin (Ultralytics: .pt)")],
    model: Annotated[str, Form(min_length=1, max_length=200, description="catalog model, e.g. resnet18")],
    framework: FrameworkField = None,
    config: Annotated[UploadFile | None, File(description="transformers: the model's config.json")] = None,
) -> dict[str, Any]:
    """Store a weights file for a catalog model so your jobs can start from it (`intent.init_weights`);
    it is checked without being loaded. 422 naming `file`, `model` or `config` when a check fails, 413
    over the size limit or your storage quota."""
    return await run_in_threadpool(
        user_weights.upload_user_weights,
        ctx,
        file.file,
        file.filename or "",
        model=model,
        framework=framework,
        config=config.file if config is not None else None,
    )


@router.get("/{weights_id}", summary="One of my uploaded weights")
def get_mine(weights_id: IdPath, ctx: ToolContextDep) -> dict[str, Any]:
    """One of your uploaded weights files; 404 when it does not exist or is not yours."""
    return user_weights.get_user_weights(ctx, weights_id)


@router.delete("/{weights_id}", status_code=204, summary="Delete one of my uploaded weights")
def delete_mine(weights_id: IdPath, ctx: ToolContextDep) -> Response:
    """Delete one of your uploaded weights files; a queued job that uses it then fails at start, running
    jobs keep what they loaded. 404 when it is not yours."""
    user_weights.delete_user_weights(ctx, weights_id)
    return Response(status_code=204)
