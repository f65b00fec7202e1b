"""How a person brings their own data: the answer to "how do I upload my own data?" as facts the
agent words in the user's language (and hands to the LLM as JSON). The formats are the upload's
own (`tools.uploads.UPLOAD_FORMATS`, read into DICE by `trainer_runtime.formats.importers`), the
auto-detection is `tools.uploads.detect_format`'s, the limits are the caller's `ToolContext`
limits, and the page link is the signer's public base URL + ``/#datasets``.
See docs/architecture.md (contract 2).
"""

from __future__ import annotations

from pydantic import BaseModel

from tools.context import ToolContext
from tools.uploads import UPLOAD_FORMATS

PAGE_FRAGMENT = "/#datasets"
API_DOCS = "/docs#/datasets"

LAYOUTS: dict[str, str] = {
    "dice": "images/ (any sub-folders) + annotations.json with format_version",
    "coco": "images/ + a COCO json (annotations.json, or annotations/instances_<split>.json)",
    "yolo": "data.yaml + images/<split>/ + labels/<split>/*.txt (one label file per image)",
    "imagefolder": "one folder per class: <class>/*.jpg or train/<class>/*.jpg",
    "images": "only images (unlabeled; label them elsewhere or upload the labels later)",
}
"""The folder (or zip) layout of each upload format; a zip may have one top folder around it."""

AUTO_DETECTED = ("dice", "coco", "yolo", "images")
"""What `tools.uploads.detect_format` recognises by itself; ImageFolder must be named
(``?format=imagefolder``), otherwise class folders upload as unlabeled images."""


class UploadFormat(BaseModel):
    """One format an upload may be in: its name, layout, and whether it is detected by itself."""

    name: str
    layout: str
    auto_detected: bool


class UploadGuide(BaseModel):
    """Where and how to upload a dataset, in what formats, within which limits."""

    page_url: str
    api_docs_url: str
    api_steps: list[str]
    formats: list[UploadFormat]
    max_upload_bytes: int
    max_file_bytes: int
    max_zip_entries: int


def upload_guide(ctx: ToolContext) -> UploadGuide:
    """The upload instructions for the caller (see the module doc)."""
    base = (ctx.links.base_url if ctx.links is not None else "").rstrip("/")
    formats = [
        UploadFormat(name=f, layout=LAYOUTS.get(f, f), auto_detected=f in AUTO_DETECTED)
        for f in UPLOAD_FORMATS
        if f != "auto"
    ]
    return UploadGuide(
        page_url=f"{base}{PAGE_FRAGMENT}",
        api_docs_url=f"{base}{API_DOCS}",
        api_steps=[
            'POST /api/v1/datasets {"name": ..., "visibility": "private"}',
            "POST /api/v1/datasets/{id}/upload (multipart: one `archive` zip, or `files` parts named by their "
            "relative paths; ?format=auto|dice|coco|yolo|imagefolder|images)",
        ],
        formats=formats,
        max_upload_bytes=ctx.limits.max_upload_bytes,
        max_file_bytes=ctx.limits.max_file_bytes,
        max_zip_entries=ctx.limits.max_zip_entries,
    )
