"""`/api/v1/datasets`: create-then-upload datasets, the image gallery, annotations, snapshots.

Every route needs a signed-in user (401 otherwise). Private datasets of other users answer 404;
public ones are readable by everyone signed in, but only the owner changes them (403). The logic
lives in `tools.datasets`, and so do the response models (`tools.datasets.models`: the tool functions
return them); this module only speaks HTTP (and streams multipart uploads to disk).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from tools import datasets
from tools.context import ToolContext
from tools.datasets import DatasetOut, ImageDeleteOut, ImageOut, ImagePage, SnapshotOut, UploadOut
from tools.errors import InvalidInputError, PayloadTooLargeError
from tools.uploads import UPLOAD_FORMATS, StagedWriter, Staging
from web.deps import ToolContextDep
from web.params import IdPath, Offset

log = logging.getLogger(__name__)

router = APIRouter(prefix="/datasets", tags=["datasets"])

Visibility = Literal["private", "public"]
UploadFormat = Literal["auto", "dice", "yolo", "coco", "imagefolder", "images"]
MAX_FORM_FIELD_BYTES = 4096


class DatasetIn(BaseModel):
    """A new, empty dataset: its name, an optional description and who can see it."""

    name: str = Field(min_length=1, max_length=200, description="Unique among your datasets")
    description: str = Field(default="", max_length=10_000)
    visibility: Visibility = "private"


class DatasetPatch(BaseModel):
    """Changes to a dataset; fields left out (or null) keep their current value."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    visibility: Visibility | None = None


class SnapshotIn(BaseModel):
    """An optional name for a new snapshot."""

    name: str | None = Field(default=None, max_length=200)


# ----------------------------------------------------------------------------------- CRUD


@router.post("", status_code=201, response_model=DatasetOut, summary="Create an empty dataset")
def create_dataset(body: DatasetIn, ctx: ToolContextDep) -> DatasetOut:
    """Create first, then `POST /datasets/{id}/upload`. Names are unique per owner (409)."""
    return datasets.create_dataset(ctx, body.name, body.description, body.visibility)


@router.get("", response_model=list[DatasetOut], summary="My datasets and every public one")
def list_datasets(
    ctx: ToolContextDep,
    response: Response,
    q: str | None = Query(default=None, max_length=200, description="Text in the name or description"),
    sort: str = Query(default="-updated_at", description="name|created_at|updated_at|num_images, '-' = desc"),
    offset: Offset = 0,
    limit: int = Query(default=50, ge=1, le=500),
    mine: bool = Query(default=False, description="Only my own datasets"),
    visibility: Visibility | None = None,
) -> list[DatasetOut]:
    """A JSON list; the total before pagination is in the `X-Total-Count` header."""
    page = datasets.list_datasets(ctx, q=q, sort=sort, offset=offset, limit=limit, mine=mine, visibility=visibility)
    response.headers["X-Total-Count"] = str(page.total)
    return page.items


@router.get("/{dataset_id}", response_model=DatasetOut, summary="One dataset")
def get_dataset(dataset_id: str, ctx: ToolContextDep) -> DatasetOut:
    """One of your datasets or a public one; 404 when it does not exist or is someone else's private one."""
    return datasets.get_dataset(ctx, dataset_id)


@router.patch("/{dataset_id}", response_model=DatasetOut, summary="Rename, re-describe, change visibility")
def update_dataset(dataset_id: str, body: DatasetPatch, ctx: ToolContextDep) -> DatasetOut:
    """Owner only (403 otherwise); only the fields sent change. A name you already use answers 409."""
    return datasets.update_dataset(
        ctx, dataset_id, name=body.name, description=body.description, visibility=body.visibility
    )


@router.delete("/{dataset_id}", summary="Delete a dataset with all its files (owner only)")
def delete_dataset(dataset_id: str, ctx: ToolContextDep) -> dict[str, Any]:
    """Removes it with its images, annotations, snapshots and thumbnails; 403 for anyone but the owner."""
    return dict(datasets.delete_dataset(ctx, dataset_id))


# --------------------------------------------------------------------------------- upload


class _MultipartSink:
    """python-multipart callbacks writing `files` / `archive` parts straight into a `Staging`."""

    def __init__(self, staging: Staging) -> None:
        self.staging = staging
        self.fields: dict[str, str] = {}
        self._headers: dict[bytes, bytes] = {}
        self._hf = b""
        self._hv = b""
        self._writer: StagedWriter | None = None
        self._field: str | None = None
        self._buf = bytearray()
        self._skip = False
        self.archives = 0
        self.files = 0

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._headers = {}
        self._writer = None
        self._field = None
        self._buf = bytearray()
        self._skip = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hf += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hv += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._hf.strip().lower()] = self._hv.strip()
        self._hf = b""
        self._hv = b""

    def on_headers_finished(self) -> None:
        _, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = opts.get(b"name", b"").decode("utf-8", errors="replace")
        raw_filename = opts.get(b"filename")
        if raw_filename is None:
            self._field = name
            return
        try:
            filename = raw_filename.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError("a file name in the upload is not valid UTF-8") from None
        if name == "archive":
            if self.archives or self.files:
                raise InvalidInputError("send either one `archive` or many `files`, not both or several archives")
            self.archives += 1
            self._writer = self.staging.open_archive(filename)
        elif name in ("files", "file"):
            if self.archives:
                raise InvalidInputError("send either one `archive` or many `files`, not both")
            if not filename:
                self._skip = True  # an empty <input type=file>
                return
            self.files += 1
            self._writer = self.staging.open_file(filename)
        else:
            raise InvalidInputError(
                f"unexpected file field {name!r}: use `files` (folder upload) or `archive` (.zip)",
                detail={"field": name},
            )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._writer is not None:
            self._writer.write(data[start:end])
        elif self._field is not None:
            self._buf += data[start:end]
            if len(self._buf) > MAX_FORM_FIELD_BYTES:
                raise InvalidInputError(f"form field {self._field!r} is too long", detail={"field": self._field})

    def on_part_end(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        elif self._field is not None:
            self.fields[self._field] = self._buf.decode("utf-8", errors="replace")
            self._field = None


async def _receive(request: Request, staging: Staging) -> dict[str, str]:
    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    boundary = opts.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise InvalidInputError(
            "send multipart/form-data with many `files` parts (paths as file names) or one `archive` (.zip)",
            detail={"field": "content-type"},
        )
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > staging.limits.max_upload_bytes:
        raise PayloadTooLargeError(
            f"the upload ({int(length)} bytes) is over the limit of {staging.limits.max_upload_bytes} bytes",
            detail={"limit_bytes": staging.limits.max_upload_bytes},
        )
    sink = _MultipartSink(staging)
    parser = MultipartParser(boundary, sink.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(parser.write, chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidInputError(f"malformed multipart body: {exc}") from None
    if not sink.files and not sink.archives:
        raise InvalidInputError("the upload contains no files: send `files` parts or one `archive` part")
    return sink.fields


def _do_upload(ctx: ToolContext, dataset_id: str, staging: Staging, fmt: str) -> UploadOut:
    try:
        return datasets.upload_staged(ctx, dataset_id, staging, fmt)
    finally:
        staging.cleanup()


@router.post(
    "/{dataset_id}/upload",
    response_model=UploadOut,
    summary="Upload a folder (many `files`) or one zip (`archive`)",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "archive": {"type": "string", "format": "binary"},
                            "format": {"type": "string", "enum": list(UPLOAD_FORMATS)},
                        },
                    }
                }
            },
            "required": True,
        }
    },
)
async def upload(
    dataset_id: str,
    request: Request,
    ctx: ToolContextDep,
    format: UploadFormat | None = Query(default=None, description="auto (default), dice, yolo, coco, ..."),
) -> UploadOut:
    """Owner only. Folder uploads send one `files` part per file whose file name is its relative
    path (`mydata/images/a/1.jpg`, `mydata/annotations.json`; the common top folder is stripped).
    Everything is streamed to a staging folder, validated, then committed at once: on any error
    (422 with file/line/field, 409, 413) nothing is stored."""
    await run_in_threadpool(datasets.check_can_upload, ctx, dataset_id)
    staging = Staging(ctx.work_dir, ctx.limits)
    try:
        fields = await _receive(request, staging)
    except BaseException:
        await run_in_threadpool(staging.cleanup)
        raise
    fmt = format or fields.get("format") or "auto"
    return await run_in_threadpool(_do_upload, ctx, dataset_id, staging, fmt)


# --------------------------------------------------------------------------------- images


@router.get("/{dataset_id}/images", response_model=ImagePage, summary="Gallery: a page of images")
def list_images(
    dataset_id: str,
    ctx: ToolContextDep,
    offset: Offset = 0,
    limit: int = Query(default=50, ge=1, le=1000),
    prefix: str | None = Query(default=None, max_length=1024, description="Only paths starting with this"),
    include_annotations: bool = False,
) -> ImagePage:
    """Images sorted by relative path, one page at a time; `include_annotations` adds each one's annotations."""
    return datasets.list_images(
        ctx, dataset_id, offset=offset, limit=limit, prefix=prefix, include_annotations=include_annotations
    )


@router.get("/{dataset_id}/images/{image_id}", response_model=ImageOut, summary="One image and its annotations")
def get_image(dataset_id: str, image_id: IdPath, ctx: ToolContextDep) -> ImageOut:
    """One image's file name, size and annotations; 404 when the dataset or the image does not exist."""
    return datasets.get_image(ctx, dataset_id, image_id)


def _stream(ctx: ToolContext, key: str) -> Iterator[bytes]:
    yield from ctx.storage.external.iter_chunks(key)


@router.get("/{dataset_id}/images/{image_id}/file", summary="The image file itself")
def image_file(
    dataset_id: str,
    image_id: IdPath,
    ctx: ToolContextDep,
    if_none_match: str | None = Header(default=None),
) -> Response:
    """The original bytes with their content type; 304 when `If-None-Match` holds the current ETag."""
    f = datasets.image_file(ctx, dataset_id, image_id)
    headers = {
        "Cache-Control": "private, max-age=3600",
        "Content-Disposition": f'inline; filename="{f.filename}"',
    }
    if f.etag:
        headers["ETag"] = f.etag
        if if_none_match and f.etag in if_none_match:
            return Response(status_code=304, headers=headers)
    if f.size is not None:
        headers["Content-Length"] = str(f.size)
    return StreamingResponse(_stream(ctx, f.key), media_type=f.content_type, headers=headers)


@router.get("/{dataset_id}/images/{image_id}/thumbnail", summary="A JPEG thumbnail (cached)")
def image_thumbnail(
    dataset_id: str,
    image_id: IdPath,
    ctx: ToolContextDep,
    size: int = Query(default=128, ge=16, le=512, description="Longest edge; rounded up to 32/64/128/256/512"),
    if_none_match: str | None = Header(default=None),
) -> Response:
    """A small JPEG of the image, made once per size and then cached; 304 when `If-None-Match` holds its ETag."""
    thumb = datasets.get_thumbnail(ctx, dataset_id, image_id, size=size, if_none_match=if_none_match)
    headers = {"ETag": thumb.etag, "Cache-Control": "private, max-age=86400"}
    if thumb.data is None:
        return Response(status_code=304, headers=headers)
    return Response(content=thumb.data, media_type=thumb.content_type, headers=headers)


@router.delete(
    "/{dataset_id}/images/{image_id}",
    response_model=ImageDeleteOut,
    summary="Delete an image (owner only); snapshots that use it become broken",
)
def delete_image(dataset_id: str, image_id: IdPath, ctx: ToolContextDep) -> ImageDeleteOut:
    """Owner only (403 otherwise); its annotations go too. The answer lists the snapshots now `broken`."""
    return datasets.delete_image(ctx, dataset_id, image_id)


# ----------------------------------------------------------------- annotations and compat


def _json_file(ctx: ToolContext, f: datasets.StoredFile) -> StreamingResponse:
    headers = {
        "Content-Disposition": f'attachment; filename="{f.filename}"',
        "Cache-Control": "private, no-cache",
    }
    if f.size is not None:
        headers["Content-Length"] = str(f.size)
    if f.etag:
        headers["ETag"] = f.etag
    return StreamingResponse(_stream(ctx, f.key), media_type=f.content_type, headers=headers)


@router.get("/{dataset_id}/annotations", summary="Download the live annotations.json (DICE v1)")
def get_annotations(dataset_id: str, ctx: ToolContextDep) -> StreamingResponse:
    """The dataset's current annotations as a JSON attachment; 404 for an unlabeled dataset."""
    return _json_file(ctx, datasets.annotations_file(ctx, dataset_id))


@router.get("/{dataset_id}/compatibility", summary="Which tasks the dataset can train (contract 3)")
def compatibility(
    dataset_id: str,
    ctx: ToolContextDep,
    task_type: str | None = Query(default=None, description="One task; every task when omitted"),
) -> dict[str, Any]:
    """Per task: `native`, `convertible` or `incompatible`, with the conversion needed or the reason."""
    return dict(datasets.check_dataset_compatibility(ctx, dataset_id, task_type))


# ------------------------------------------------------------------------------ snapshots


@router.post("/{dataset_id}/snapshots", status_code=201, response_model=SnapshotOut, summary="Freeze annotations.json")
def create_snapshot(dataset_id: str, ctx: ToolContextDep, body: SnapshotIn | None = None) -> SnapshotOut:
    """Owner only; labeled datasets only (409 otherwise). Images are shared, not copied."""
    return datasets.create_snapshot(ctx, dataset_id, body.name if body else None)


@router.get("/{dataset_id}/snapshots", response_model=list[SnapshotOut], summary="Snapshots, newest first")
def list_snapshots(dataset_id: str, ctx: ToolContextDep) -> list[SnapshotOut]:
    """Every snapshot of the dataset, newest first."""
    return datasets.list_snapshots(ctx, dataset_id)


@router.get("/{dataset_id}/snapshots/{snapshot_id}", response_model=SnapshotOut, summary="One snapshot")
def get_snapshot(dataset_id: str, snapshot_id: str, ctx: ToolContextDep) -> SnapshotOut:
    """One snapshot: `ok`, or `broken` with the image files it misses; 404 when it does not exist."""
    return datasets.get_snapshot(ctx, dataset_id, snapshot_id)


@router.get("/{dataset_id}/snapshots/{snapshot_id}/annotations", summary="A snapshot's annotations.json")
def get_snapshot_annotations(dataset_id: str, snapshot_id: str, ctx: ToolContextDep) -> StreamingResponse:
    """The annotations frozen in the snapshot, as a JSON attachment."""
    return _json_file(ctx, datasets.annotations_file(ctx, dataset_id, snapshot_id))
