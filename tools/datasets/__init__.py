"""Datasets: the operations the REST API and the agent share, one module per job (CRUD in `crud`,
upload commit in `upload`, images and thumbnails in `images`, snapshots in `snapshots`, task
compatibility in `compat`, storage quota in `quota`, writer locks in `locks`, demo ingestion in `demo`;
what they return, shared with the REST API as its response models, in `models`).

Rules: every operation needs a signed-in user; a private dataset is invisible (404) to anyone but its
owner, and only the owner writes (403 for other readers). A labeled upload never merges into a
labeled dataset (409). An upload is fully validated, written under new keys, then committed in one
transaction (a failure removes what was written); writers of one dataset are serialised. A snapshot
freezes annotations.json; deleting an image marks the snapshots that reference it ``broken``.
Functions take `ctx: ToolContext` first and return the pydantic models of `models` (`DatasetOut`,
`UploadOut`, `ImageOut`, `SnapshotOut`, ...; `.model_dump(mode="json")` gives the REST JSON) or its
TypedDicts (`delete_dataset`, `check_dataset_compatibility`), except `resolve_dataset` and
`get_dataset_row` (ORM rows). Contracts: `docs/architecture.md`.
"""

from tools.datasets.annotations import annotations_file
from tools.datasets.common import (
    LABELED_CONFLICT,
    LIST_CLASS_NAMES,
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    SHOWN_NAME_CHARS,
    SORT_FIELDS,
    THUMBNAIL_SIZES,
    VISIBILITIES,
    StoredFile,
    class_names_preview,
    dataset_out,
    get_dataset_row,
)
from tools.datasets.compat import check_dataset_compatibility
from tools.datasets.crud import (
    create_dataset,
    delete_dataset,
    get_dataset,
    list_datasets,
    resolve_dataset,
    update_dataset,
)
from tools.datasets.demo import ensure_demo_datasets
from tools.datasets.images import (
    Thumbnail,
    delete_image,
    get_image,
    get_thumbnail,
    image_file,
    list_images,
    thumbnail_key,
)
from tools.datasets.locks import dataset_write_lock
from tools.datasets.models import (
    Compatibility,
    DatasetCompatibility,
    DatasetDeleted,
    DatasetOut,
    DatasetPage,
    ImageDeleteOut,
    ImageOut,
    ImagePage,
    SnapshotOut,
    TaskCompatibility,
    UploadOut,
)
from tools.datasets.quota import check_quota, storage_used
from tools.datasets.snapshots import create_snapshot, get_snapshot, list_snapshots, snapshot_out
from tools.datasets.upload import check_can_upload, upload_path, upload_staged

__all__ = [
    "LABELED_CONFLICT",
    "LIST_CLASS_NAMES",
    "MAX_DESCRIPTION_CHARS",
    "MAX_NAME_CHARS",
    "SHOWN_NAME_CHARS",
    "SORT_FIELDS",
    "THUMBNAIL_SIZES",
    "VISIBILITIES",
    "Compatibility",
    "DatasetCompatibility",
    "DatasetDeleted",
    "DatasetOut",
    "DatasetPage",
    "ImageDeleteOut",
    "ImageOut",
    "ImagePage",
    "SnapshotOut",
    "StoredFile",
    "TaskCompatibility",
    "Thumbnail",
    "UploadOut",
    "annotations_file",
    "check_can_upload",
    "check_dataset_compatibility",
    "check_quota",
    "class_names_preview",
    "create_dataset",
    "create_snapshot",
    "dataset_out",
    "dataset_write_lock",
    "delete_dataset",
    "delete_image",
    "ensure_demo_datasets",
    "get_dataset",
    "get_dataset_row",
    "get_image",
    "get_snapshot",
    "get_thumbnail",
    "image_file",
    "list_datasets",
    "list_images",
    "list_snapshots",
    "resolve_dataset",
    "snapshot_out",
    "storage_used",
    "thumbnail_key",
    "update_dataset",
    "upload_path",
    "upload_staged",
]
