"""Which training tasks a dataset can serve (native, convertible, incompatible).
Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

from typing import cast, overload

from tools.context import ToolContext
from tools.datasets.common import _capabilities, get_dataset_row
from tools.datasets.models import DatasetCompatibility, TaskCompatibility
from tools.errors import InvalidInputError
from trainer_runtime.formats.capabilities import check_compatibility
from trainer_runtime.formats.schema import TASK_TYPES


@overload
def check_dataset_compatibility(ctx: ToolContext, dataset_id: str, task_type: str) -> TaskCompatibility: ...


@overload
def check_dataset_compatibility(ctx: ToolContext, dataset_id: str, task_type: None = None) -> DatasetCompatibility: ...


@overload
def check_dataset_compatibility(
    ctx: ToolContext, dataset_id: str, task_type: str | None = None
) -> TaskCompatibility | DatasetCompatibility: ...


def check_dataset_compatibility(
    ctx: ToolContext, dataset_id: str, task_type: str | None = None
) -> TaskCompatibility | DatasetCompatibility:
    """Can this dataset train a task? (contract 3 in docs/architecture.md.)

    task_type: image_classification, object_detection, instance_segmentation, pose_estimation or
    oriented_object_detection; None for every task.
    One task -> {"task_type", "dataset_id", "status": native|convertible|incompatible, "conversion",
    "reason"}; all -> {"dataset_id", "dataset_name", "labeled", "tasks": {task_type: result}}.
    """
    ds = get_dataset_row(ctx, dataset_id)
    if task_type is not None and task_type not in TASK_TYPES:
        raise InvalidInputError(
            f"unknown task_type {task_type!r}; valid: {', '.join(TASK_TYPES)}", detail={"field": "task_type"}
        )
    caps = _capabilities(ds)
    if task_type is not None:
        res = caps.get(task_type) or check_compatibility(None, task_type, dataset_name=ds.name)
        return cast(TaskCompatibility, {"task_type": task_type, "dataset_id": ds.id, **res})
    return DatasetCompatibility(dataset_id=ds.id, dataset_name=ds.name, labeled=ds.labeled, tasks=caps)
