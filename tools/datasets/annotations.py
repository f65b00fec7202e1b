"""The live annotations.json of a dataset: a small cache of it by image, and where to download it
(or a snapshot's). Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from typing import Any

from tools.context import ToolContext
from tools.datasets.common import StoredFile, get_dataset_row
from tools.datasets.snapshots import _snapshot_row
from tools.db.models import Dataset
from tools.errors import NotFoundError
from trainer_runtime.storage import dataset_annotations_key, snapshot_annotations_key

_ann_cache_lock = threading.Lock()
_ann_cache: OrderedDict[tuple[str, str], dict[int, list[dict[str, Any]]]] = OrderedDict()
_ANN_CACHE_SIZE = 4


def _forget_annotations(dataset_id: str) -> None:
    with _ann_cache_lock:
        for key in [k for k in _ann_cache if k[0] == dataset_id]:
            del _ann_cache[key]


def _annotations_by_image(ctx: ToolContext, ds: Dataset) -> dict[int, list[dict[str, Any]]]:
    if not ds.labeled or not ds.annotations_sha256:
        return {}
    key = (ds.id, ds.annotations_sha256)
    with _ann_cache_lock:
        hit = _ann_cache.get(key)
        if hit is not None:
            _ann_cache.move_to_end(key)
            return hit
    data = json.loads(ctx.storage.external.get_bytes(dataset_annotations_key(ds.id)))
    out: dict[int, list[dict[str, Any]]] = {}
    for a in data.get("annotations", []):
        out.setdefault(a.get("image_id"), []).append(a)
    with _ann_cache_lock:
        _ann_cache[key] = out
        while len(_ann_cache) > _ANN_CACHE_SIZE:
            _ann_cache.popitem(last=False)
    return out


def annotations_file(ctx: ToolContext, dataset_id: str, snapshot_id: str | None = None) -> StoredFile:
    """Where the live annotations.json (or a snapshot's) is, for downloading it.
    An unlabeled dataset has none (404)."""
    ds = get_dataset_row(ctx, dataset_id)
    if snapshot_id is not None:
        snap = _snapshot_row(ctx, ds, snapshot_id)
        key = snapshot_annotations_key(ds.id, snap.id)
        filename = f"{ds.name}-v{snap.version}-annotations.json"
        etag = snap.annotations_sha256
    else:
        if not ds.labeled:
            raise NotFoundError(
                f"dataset {ds.name!r} is unlabeled: it has no annotations.json", detail={"dataset_id": ds.id}
            )
        key = dataset_annotations_key(ds.id)
        filename = f"{ds.name}-annotations.json"
        etag = ds.annotations_sha256
    info = ctx.storage.external.stat(key)
    safe_filename = re.sub(r"[^A-Za-z0-9._-]+", "_", filename)
    return StoredFile(key, "application/json", info.size, safe_filename, f'"{etag}"' if etag else None)
