"""DICE dataset format v1 (contract 2 in docs/architecture.md): pydantic models of `annotations.json`.

Coordinates are absolute pixels; `bbox` is ``[x, y, w, h]``; `segmentation` is a list of
polygons ``[x1, y1, x2, y2, ...]``; `keypoints` is ``[x, y, v] * K`` (v: 0 absent, 1 hidden,
2 visible); `rotated_bbox` is ``[cx, cy, w, h, angle_degrees]``. An annotation with only
`category_id` is an image-level class label. These models check shapes and types; cross-record
checks (ids, bounds, files) live in `trainer_runtime.formats.validate`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = "1.0"
SUPPORTED_VERSIONS = frozenset({"1.0"})

IMAGE_CLASSIFICATION = "image_classification"
OBJECT_DETECTION = "object_detection"
INSTANCE_SEGMENTATION = "instance_segmentation"
POSE_ESTIMATION = "pose_estimation"
ORIENTED_OBJECT_DETECTION = "oriented_object_detection"
TASK_TYPES = (
    IMAGE_CLASSIFICATION,
    OBJECT_DETECTION,
    INSTANCE_SEGMENTATION,
    POSE_ESTIMATION,
    ORIENTED_OBJECT_DETECTION,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class DatasetInfo(_Model):
    """The `dataset` header: name and description."""

    name: str = ""
    description: str = ""


class Category(_Model):
    """A category: id, name, and for pose the keypoint names and skeleton."""

    id: int
    name: str = Field(min_length=1)
    supercategory: str | None = None
    keypoints: list[str] | None = None
    skeleton: list[list[int]] | None = None


class Image(_Model):
    """An image: id, file name under images/, pixel size and optional sha256."""

    id: int
    file_name: str = Field(min_length=1)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    sha256: str | None = None


class Annotation(_Model):
    """An annotation of one image and category: a box, polygons, keypoints or a rotated box, or none of
    them for an image-level label."""

    id: int
    image_id: int
    category_id: int
    bbox: list[float] | None = None
    segmentation: list[list[float]] | None = None
    keypoints: list[float] | None = None
    num_keypoints: int | None = None
    rotated_bbox: list[float] | None = None
    area: float | None = None
    iscrowd: int = 0


class DiceDataset(_Model):
    """A whole annotations.json: format version, dataset header, categories, images and annotations."""

    format_version: str
    dataset: DatasetInfo = Field(default_factory=DatasetInfo)
    categories: list[Category] = Field(default_factory=list)
    images: list[Image] = Field(default_factory=list)
    annotations: list[Annotation] = Field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
