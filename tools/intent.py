"""`TrainingIntent` (DESIGN contract 1): what a user asked to train, slot by slot.

It lives in `tools` because jobs are created from it; `agent.parse_intent` produces it and
`agent` re-exports it. A slot the user did not give is `None` — never a guessed default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskType = Literal[
    "image_classification",
    "object_detection",
    "instance_segmentation",
    "pose_estimation",
    "oriented_object_detection",
]
Framework = Literal["ultralytics", "timm", "transformers"]
Preset = Literal["easy", "medium", "advanced"]


class TrainingIntent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_type: TaskType | None = None
    framework: Framework | None = None
    model_name: str | None = None
    dataset: str | None = Field(default=None, description="dataset name or id as the user wrote it")
    epochs: int | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    image_size: int | None = Field(default=None, gt=0)
    learning_rate: float | None = Field(default=None, gt=0)
    preset: Preset | None = None
    advanced_config: dict[str, Any] = Field(default_factory=dict)
    class_names: list[str] = Field(default_factory=list)
