"""`TrainingIntent` (contract 1 in docs/architecture.md): what a user asked to train, slot by slot.

It lives in `tools` because jobs are created from it; `agent.parse_intent` produces it and
`agent` re-exports it. A slot the user did not give is `None` — never a guessed default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

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
InitCheckpoint = Literal["best", "last"]
WeightsId = Annotated[int, Field(gt=0, le=2**31 - 1)]


class TrainingIntent(BaseModel):
    """A training request read slot by slot: task, framework, model, dataset, training settings,
    class names and the weights to start from. A slot the request did not give is null, never a guess."""

    model_config = ConfigDict(extra="forbid")

    task_type: TaskType | None = None
    framework: Framework | None = None
    model_name: str | None = None
    dataset: str | None = Field(default=None, description="dataset name or id as the user wrote it")
    # Upper bounds: the parser's ranges (agent.parser), and never past a 64-bit database integer
    # (a bigger number was a 500 from SQLite's OverflowError); a finite learning rate.
    epochs: int | None = Field(default=None, gt=0, le=100_000)
    batch_size: int | None = Field(default=None, gt=0, le=65_536)
    image_size: int | None = Field(default=None, gt=0, le=20_000)
    learning_rate: float | None = Field(default=None, gt=0, le=10, allow_inf_nan=False)
    preset: Preset | None = None
    advanced_config: dict[str, Any] = Field(default_factory=dict)
    class_names: list[str] = Field(default_factory=list)
    # Fine-tuning: start from the weights of an earlier job of the user's (its best.pt unless
    # `init_checkpoint` says "last"); the model may then be left out (it is the source job's).
    init_from_job: int | None = Field(default=None, gt=0, le=2**31 - 1)
    init_checkpoint: InitCheckpoint | None = None
    # "Use my weights": start from a weights file the user uploaded (`tools.user_weights`): its id,
    # or "mine" for the user's only upload of the model (several: the dialogue asks which). They
    # win over the registry's pretrained weights; the model may be left out (it is the upload's).
    init_weights: WeightsId | Literal["mine"] | None = Field(
        default=None, description="the id of your uploaded weights, or 'mine'"
    )
