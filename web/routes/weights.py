"""`/api/v1/weights`: the pretrained weights registry (`tools.weights`).

``GET`` lists it for any signed-in user; ``POST`` (multipart: ``file``, ``model``, optional
``framework``, ``pretraining``, ``license``, ``replace``) adds a file for a catalog model and is for
administrators only (403 for anyone else; ``vision-agent users promote EMAIL`` or ADMIN_EMAILS).
The file is checked without torch (safetensors header, or a PyTorch checkpoint's zip and pickle
scan): 422 naming what is wrong; 409 when the model has an entry and ``replace`` is not set.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from tools import weights as weights_tools
from web.deps import ToolContextDep

router = APIRouter(prefix="/weights", tags=["weights"])


@router.get("", summary="The pretrained weights registry")
def list_weights(ctx: ToolContextDep) -> list[dict[str, Any]]:
    """Every entry of the pretrained weights registry, by framework and model; any signed-in user
    (401 otherwise)."""
    return weights_tools.list_weights_for(ctx)


@router.post("", status_code=201, summary="Add pretrained weights to the registry (administrators)")
async def upload_weights(
    ctx: ToolContextDep,
    file: Annotated[UploadFile, File(description=".safetensors, .pt, .pth or .bin")],
    model: Annotated[str, Form(min_length=1, max_length=200, description="catalog model, e.g. resnet50")],
    framework: Annotated[str | None, Form(pattern="^(timm|transformers|ultralytics)$")] = None,
    pretraining: Annotated[str, Form(max_length=200, description='e.g. "ImageNet-1k"')] = "",
    license: Annotated[str, Form(max_length=200)] = "",
    replace: Annotated[bool, Form()] = False,
) -> dict[str, Any]:
    """Administrators only (403 otherwise): add a weights file for a catalog model to the registry. The
    file is checked without being loaded: 422 naming what is wrong, 409 when the model already has an
    entry and `replace` is not set."""
    return await run_in_threadpool(
        weights_tools.upload_weights,
        ctx,
        file.file,
        file.filename or "",
        model=model,
        framework=framework,
        pretraining=pretraining,
        license=license,
        replace=replace,
    )
