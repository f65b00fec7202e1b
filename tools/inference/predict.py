"""Single-image inference: input checks, the authorised route of a request (`resolve_inference`,
cached by `RouteCache` on the hot path), the worker round trip and the InferenceResult it answers
(`run_inference`, `predict_route`, `predict_route_async`). Worker error answers become
`tools.errors` errors here (`_raise_worker_error`).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from tools.context import ToolContext
from tools.datasets import get_dataset_row
from tools.db.models import DatasetImage
from tools.errors import ConflictError, InferenceFailedError, InvalidInputError, NotFoundError, PayloadTooLargeError
from tools.inference.access import job_checkpoint, model_key
from tools.inference.routecache import InferenceRoute
from trainer_runtime.errors import ObjectNotFoundError, StorageError
from trainer_runtime.inference.protocol import WorkerError
from trainer_runtime.storage import dataset_annotations_key, dataset_image_key, snapshot_annotations_key

if TYPE_CHECKING:
    from tools.inference.service import InferenceService


ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF", "MPO"})


def check_image_bytes(data: bytes, max_pixels: int, max_bytes: int) -> tuple[int, int]:
    """Cheap header check in the server: size, identifiable image of an allowed format, pixel
    limit (413). The full decode (corrupt/truncated files, 422) happens in the worker."""
    if not data:
        raise InvalidInputError("the uploaded file is empty", detail={"field": "file"})
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"the image is {len(data)} bytes, over the limit of {max_bytes}",
            detail={"field": "file", "limit_bytes": max_bytes},
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            patched = sys.modules.get("ultralytics.utils.patches")  # see predictors._pil_open
            opener = getattr(patched, "_image_open", None) or Image.open
            with opener(io.BytesIO(data)) as im:
                fmt = im.format or ""
                w, h = im.size
    except Image.DecompressionBombError:
        raise PayloadTooLargeError(
            f"the image is over the limit of {max_pixels} pixels", detail={"field": "file", "limit_pixels": max_pixels}
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError):
        raise InvalidInputError(
            "the file is not an image (Pillow cannot identify it)", detail={"field": "file"}
        ) from None
    if fmt not in ALLOWED_FORMATS:
        raise InvalidInputError(f"image format {fmt or 'unknown'} is not supported", detail={"field": "file"})
    if w * h > max_pixels:
        raise PayloadTooLargeError(
            f"the image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}",
            detail={"field": "file", "limit_pixels": max_pixels, "width": w, "height": h},
        )
    return w, h


def _raise_worker_error(exc: WorkerError) -> None:
    if exc.code == "invalid_image":
        raise InvalidInputError(f"the image cannot be used: {exc.message}", detail={"field": "file"}) from None
    if exc.code == "checkpoint":
        raise ConflictError(f"the checkpoint cannot be loaded: {exc.message}") from None
    if exc.code == "export":
        raise InferenceFailedError(f"export failed: {exc.message}") from None
    raise InferenceFailedError(f"inference failed: {exc.message}", detail={"code": exc.code}) from None


def _dataset_categories(
    service: InferenceService, dataset_id: str | None, snapshot_id: str | None
) -> list[dict[str, Any]]:
    """The categories of the dataset (snapshot) a job trained on, [] when unavailable."""
    if not dataset_id:
        return []
    key_t = (dataset_id, snapshot_id)
    cached = service._meta_cache.get(key_t)
    if cached is not None:
        return list(cached["categories"])
    try:
        key = snapshot_annotations_key(dataset_id, snapshot_id) if snapshot_id else dataset_annotations_key(dataset_id)
        doc = json.loads(service.storage.external.get_bytes(key))
        cats = [c for c in doc.get("categories") or [] if isinstance(c, dict)]
    except (StorageError, ValueError):
        cats = []
    service._meta_cache[key_t] = {"categories": cats}
    return cats


def _pose_meta(service: InferenceService, route: InferenceRoute, num_keypoints: int) -> dict[str, Any]:
    for c in _dataset_categories(service, route.dataset_id, route.snapshot_id):
        names = c.get("keypoints") or []
        if names and (not num_keypoints or len(names) == num_keypoints):
            skeleton = [[int(a) - 1, int(b) - 1] for a, b in (c.get("skeleton") or []) if a and b]
            return {"keypoint_names": list(names), "skeleton": skeleton}
    return {"keypoint_names": [f"kp{i}" for i in range(num_keypoints)], "skeleton": []}


@dataclass
class InferenceOutcome:
    """The result of one prediction: the JSON result and the image with the predictions drawn on it."""

    result: dict[str, Any]
    image: bytes


def _check_options(conf: float | None, iou: float | None) -> None:
    for name, value in (("conf", conf), ("iou", iou)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"{name} must be between 0 and 1", detail={"field": name})


def resolve_inference(
    ctx: ToolContext, service: InferenceService, job_id: Any, checkpoint: str | None = None
) -> InferenceRoute:
    """The route of the caller's job and checkpoint (404 others' jobs, 409 unusable, the
    checkpoint file fetched into the local cache once)."""
    job, ckpt, ckpt_name = job_checkpoint(ctx, job_id, checkpoint)
    path = service.checkpoint_path(job, ckpt)
    return InferenceRoute(
        job_id=int(job.id),
        framework=job.framework,
        model_key=model_key(job, ckpt),
        path=path,
        checkpoint=ckpt_name,
        dataset_id=job.dataset_id,
        snapshot_id=job.snapshot_id,
        model_name=job.model_name,
    )


def predict_route(
    service: InferenceService,
    route: InferenceRoute,
    image: bytes,
    *,
    conf: float | None = None,
    iou: float | None = None,
) -> InferenceOutcome:
    """Run one image on a resolved route (no database): one InferenceResult."""
    _check_route_input(service, image, conf, iou)
    with _worker_errors():
        results, reply = service.predict(route.framework, route.model_key, route.path, [image], conf=conf, iou=iou)
    return _route_outcome(service, route, image, results, reply)


async def predict_route_async(
    service: InferenceService,
    route: InferenceRoute,
    image: bytes,
    *,
    conf: float | None = None,
    iou: float | None = None,
) -> InferenceOutcome:
    """`predict_route` awaited on the event loop (the single-image hot path of the web route)."""
    _check_route_input(service, image, conf, iou)
    with _worker_errors():
        results, reply = await service.predict_async(
            route.framework, route.model_key, route.path, [image], conf=conf, iou=iou
        )
    return _route_outcome(service, route, image, results, reply)


@contextlib.contextmanager
def _worker_errors() -> Iterator[None]:
    """A worker's error answer as the tool error of its kind (`_raise_worker_error`)."""
    try:
        yield
    except WorkerError as exc:
        _raise_worker_error(exc)


def _check_route_input(service: InferenceService, image: bytes, conf: float | None, iou: float | None) -> None:
    _check_options(conf, iou)
    check_image_bytes(image, service.config.max_pixels, service.config.max_image_bytes)


def _route_outcome(
    service: InferenceService, route: InferenceRoute, image: bytes, results: list[dict[str, Any]], reply: dict[str, Any]
) -> InferenceOutcome:
    result = dict(results[0])
    result["model"] = dict(reply.get("model") or {})
    if route.model_name:  # the job's model, not what the file calls itself (a resumed YOLO run says "last")
        result["model"]["model_name"] = route.model_name
    result["checkpoint"] = f"{route.checkpoint}.pt"
    result["job_id"] = route.job_id
    if result.get("task_type") == "pose_estimation":
        result.update(_pose_meta(service, route, int(reply.get("num_keypoints") or 0)))
    return InferenceOutcome(result=result, image=image)


def run_inference(
    ctx: ToolContext,
    service: InferenceService,
    job_id: Any,
    *,
    image: bytes | None = None,
    dataset_image_id: int | None = None,
    conf: float | None = None,
    iou: float | None = None,
    checkpoint: str | None = None,
) -> InferenceOutcome:
    """Predict one image (uploaded bytes, or an image of a dataset the caller can see)."""
    return run_inference_route(
        ctx, service, job_id, image=image, dataset_image_id=dataset_image_id, conf=conf, iou=iou, checkpoint=checkpoint
    )[0]


def run_inference_route(
    ctx: ToolContext,
    service: InferenceService,
    job_id: Any,
    *,
    image: bytes | None = None,
    dataset_image_id: int | None = None,
    conf: float | None = None,
    iou: float | None = None,
    checkpoint: str | None = None,
) -> tuple[InferenceOutcome, InferenceRoute]:
    """`run_inference` that also answers the route it resolved (for `RouteCache`)."""
    _check_options(conf, iou)
    route = resolve_inference(ctx, service, job_id, checkpoint)
    if (image is None) == (dataset_image_id is None):
        raise InvalidInputError("send an image file or a dataset_image_id (one of them)", detail={"field": "file"})
    if dataset_image_id is not None:
        image = _dataset_image_bytes(ctx, dataset_image_id)
    assert image is not None
    return predict_route(service, route, image, conf=conf, iou=iou), route


def _dataset_image_bytes(ctx: ToolContext, image_id: int) -> bytes:
    row = ctx.db.get(DatasetImage, int(image_id))
    if row is None:
        raise NotFoundError(f"image {image_id} not found", detail={"dataset_image_id": image_id})
    ds = get_dataset_row(ctx, row.dataset_id)  # 404 when the caller cannot see the dataset
    try:
        return ctx.storage.external.get_bytes(dataset_image_key(ds.id, row.file_name))
    except ObjectNotFoundError:
        raise ConflictError(
            f"image {image_id} ({row.file_name}) is missing from storage", detail={"dataset_image_id": image_id}
        ) from None
