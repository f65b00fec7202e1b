"""What the dataset operations return: the pydantic models that are also the REST response shapes
of `/api/v1/datasets` (`web.routes.datasets` uses them as its response models, so the agent and the
API read one definition), and TypedDicts for the results that the API sends as plain JSON objects.
Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

# The REST models carry no docstrings: a docstring would become the schema's description in the
# OpenAPI document, which stays as it was when they lived in web.routes.datasets.


class Compatibility(BaseModel):
    # whether a dataset can train one task (contract 3): native, convertible or incompatible
    status: str
    conversion: str | None = None
    reason: str


class DatasetOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    description: str
    visibility: str
    owner_id: int
    is_owner: bool
    labeled: bool
    format_version: str | None
    num_images: int
    num_annotations: int
    total_bytes: int
    class_names: list[str] = Field(description="The class names; the list endpoint shows the first 50")
    class_count: int = Field(description="How many classes the dataset has")
    capabilities: dict[str, Compatibility]
    annotations_sha256: str | None
    created_at: str | None
    updated_at: str | None
    is_demo: bool
    snapshots_count: int


class DatasetPage(BaseModel):
    """A page of `list_datasets` (the REST list sends `items` and the total in `X-Total-Count`)."""

    items: list[DatasetOut]
    total: int
    offset: int
    limit: int


class UploadOut(BaseModel):
    dataset: DatasetOut
    format: str = Field(description="The format the upload was read as (dice, yolo, coco, imagefolder, images)")
    labeled_upload: bool
    added: int
    skipped: list[str] = Field(description="Files identical (same path and sha256) to ones already stored")
    ignored: list[str] = Field(description="Junk (.DS_Store, Thumbs.db, ...) and README-like extras")
    stripped_prefix: str | None = Field(description="The common top folder removed from every path")


class ImageOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    file_name: str
    width: int
    height: int
    size_bytes: int
    sha256: str
    annotation_image_id: int | None
    num_annotations: int
    created_at: str | None
    annotations: list[dict[str, Any]] | None = None


class ImagePage(BaseModel):
    items: list[ImageOut]
    total: int
    offset: int
    limit: int


SnapshotStatus = Literal["ok", "broken"]


class SnapshotOut(BaseModel):
    id: str
    dataset_id: str
    version: int
    name: str
    status: SnapshotStatus
    missing_files: list[str]
    num_images: int
    num_annotations: int
    annotations_sha256: str | None
    created_by: int | None
    created_at: str | None


class ImageDeleteOut(BaseModel):
    deleted: ImageOut
    removed_annotations: int
    broken_snapshots: list[SnapshotOut]
    dataset: DatasetOut


class DatasetDeleted(TypedDict):
    """`delete_dataset`: the id of the deleted dataset and how many stored objects were removed."""

    deleted: str
    objects_deleted: int


class TaskCompatibility(TypedDict):
    """`check_dataset_compatibility` for one task: the `Compatibility` fields plus which task and dataset."""

    task_type: str
    dataset_id: str
    status: str
    conversion: str | None
    reason: str


class DatasetCompatibility(TypedDict):
    """`check_dataset_compatibility` for every task: task type -> the `Compatibility` fields."""

    dataset_id: str
    dataset_name: str
    labeled: bool
    tasks: dict[str, dict[str, Any]]
