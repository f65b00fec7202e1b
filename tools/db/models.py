"""SQLAlchemy 2 models. Schema changes go through Alembic migrations in `web/migrations`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (the default of the created/updated columns)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A new random 32-character hex id (the string primary keys, such as dataset ids)."""
    return uuid.uuid4().hex


NEVER_REUSE_IDS: dict[str, Any] = {"sqlite_autoincrement": True}
"""Table kwargs of every table whose integer id appears in a URL or a token (users, projects,
dataset images, jobs, test runs, exports, Slack links): on SQLite the id is declared AUTOINCREMENT,
so the id of a deleted row is never given to a new one (a plain rowid reuses the highest id after
it is deleted, and a follower of the deleted job would get the next owner's events).
PostgreSQL sequences never hand out a value twice anyway. Migration 0007 rebuilds the tables."""


class Base(DeclarativeBase):
    """The declarative base of every table; JSON columns map to `dict[str, Any]` and `list[Any]`."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    """An account: email, argon2 password hash and the system/active/admin flags."""

    __tablename__ = "users"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    hashed_password: Mapped[str] = mapped_column(String(255))
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # administrators may add pretrained weights to the registry (`vision-agent users promote`, ADMIN_EMAILS)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Project(Base):
    """Checkpoints are stored per project (seed: Project-Centric Checkpoint Storage)."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_project_owner_name"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Dataset(Base):
    """An image collection. It has no task type: what it can train is derived from its annotations.

    `labeled` is true exactly when annotations.json exists. `capabilities` caches the tasks the
    annotations support (computed by `trainer_runtime.formats`), `class_names` the categories.
    """

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_dataset_owner_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(16), default="private")  # private | public
    labeled: Mapped[bool] = mapped_column(Boolean, default=False)
    format_version: Mapped[str | None] = mapped_column(String(16), nullable=True)
    num_images: Mapped[int] = mapped_column(Integer, default=0)
    num_annotations: Mapped[int] = mapped_column(Integer, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    class_names: Mapped[list[Any]] = mapped_column(JSON, default=list)
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    annotations_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    images: Mapped[list[DatasetImage]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", passive_deletes=True
    )
    snapshots: Mapped[list[DatasetSnapshot]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", passive_deletes=True
    )


class DatasetImage(Base):
    """One stored image; `file_name` is its relative path under images/ (the storage key suffix)."""

    __tablename__ = "dataset_images"
    __table_args__ = (UniqueConstraint("dataset_id", "file_name", name="uq_image_dataset_file"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    file_name: Mapped[str] = mapped_column(String(1024))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # Link to the live annotations.json: the DICE image id of this file (None when the file is not
    # listed there, e.g. unlabeled) and how many annotations reference it (gallery counts).
    annotation_image_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    num_annotations: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="images")


class DatasetSnapshot(Base):
    """A frozen annotations.json; images are shared with the live dataset, not copied.

    `status` is `ok` or `broken`; `missing_files` lists the images it references that were deleted.
    """

    __tablename__ = "dataset_snapshots"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    annotations_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    num_images: Mapped[int] = mapped_column(Integer, default=0)
    num_annotations: Mapped[int] = mapped_column(Integer, default=0)
    file_names: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok | broken
    missing_files: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="snapshots")


class Job(Base):
    """A training job. `status` follows trainer_runtime.events.JOB_STATUSES.

    `last_seq` is the highest event seq stored; new events get last_seq + 1 under a row lock, so
    seq is gapless per job. `token_hash` is the sha256 of the per-job callback token (the token
    itself is only in the job spec handed to the trainer).
    """

    __tablename__ = "jobs"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), nullable=True, index=True
    )
    dataset_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    dataset_name: Mapped[str] = mapped_column(String(200), default="")
    snapshot_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    framework: Mapped[str] = mapped_column(String(32))
    model_name: Mapped[str] = mapped_column(String(200))
    task_type: Mapped[str] = mapped_column(String(64))
    preset: Mapped[str | None] = mapped_column(String(16), nullable=True)
    intent: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    conversion: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    status_message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=3)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    token_hash: Mapped[str] = mapped_column(String(64), default="")
    executor: Mapped[str] = mapped_column(String(32), default="local")
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)  # pid or k8s Job name
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # fine-tuning source: {"job_id", "checkpoint": "best.pt"|"last.pt", "key", "framework", "model_name"}
    init_from: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # pretrained weights: {"source": registry|hub|ultralytics-assets|scratch, "detail", "pretraining",
    # "planned": True until the trainer reports what it really got, "warning"?} (tools.weights)
    pretrained: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    epochs_completed: Mapped[int] = mapped_column(Integer, default=0)
    best_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    best_metric_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    best_metric: Mapped[float | None] = mapped_column(nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class JobEvent(Base):
    """One stored progress event (contract 4); (job_id, seq) and (job_id, event_id) are unique."""

    __tablename__ = "job_events"
    __table_args__ = (
        UniqueConstraint("job_id", "seq", name="uq_job_event_seq"),
        UniqueConstraint("job_id", "event_id", name="uq_job_event_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String(64))
    ts: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class JobCheckpoint(Base):
    """A verified checkpoint in the internal store; only best and last epochs get one."""

    __tablename__ = "job_checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "name", name="uq_job_checkpoint_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))  # best.pt | last.pt
    key: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChatSession(Base):
    """One conversation with the agent, persisted so that a restart continues it.

    `state` is the dialogue state (`agent.dialogue`: idle, collecting, confirming, launched),
    `intent` the TrainingIntent gathered so far, `pending` what the agent asked last (a slot name
    such as "dataset", or "confirm"), `language` the language of the latest user message ("ko" or
    "en"), `job_ids` the jobs this chat launched (oldest first), `context` small dialogue memory
    (suggestions offered, the last job talked about).
    """

    __tablename__ = "chat_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="idle")
    intent: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pending: Mapped[str | None] = mapped_column(String(32), nullable=True)
    language: Mapped[str] = mapped_column(String(2), default="en")
    job_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    turns: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ChatMessage(Base):
    """One message of a chat session: `role` user or assistant; `data` the structured turn
    (intent, state, job_id, suggestions, summary) for assistant messages."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TestRun(Base):
    """A batch inference run of a job's checkpoint over a dataset, a snapshot or an uploaded zip.

    `status`: queued | running | completed | failed. Progress events (the training event shape,
    see `tools.inference`) are kept in `events` (status/done/error always, the latest batch ones)
    with `last_seq`; per-image results are JSON lines at `predictions_key`, the report at
    `report_key`, both in the internal store.
    """

    __tablename__ = "test_runs"
    __table_args__ = NEVER_REUSE_IDS
    __test__ = False  # not a pytest test class

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16), default="dataset")  # dataset | snapshot | upload
    dataset_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    snapshot_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    checkpoint: Mapped[str] = mapped_column(String(16), default="best")
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    failed_images: Mapped[int] = mapped_column(Integer, default=0)
    labeled: Mapped[bool] = mapped_column(Boolean, default=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    predictions_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    report_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ModelExport(Base):
    """An exported model file (ONNX) of a job's checkpoint in the internal store, with its parity
    check against PyTorch. `status`: running | completed | failed."""

    __tablename__ = "model_exports"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(16), default="onnx")
    checkpoint: Mapped[str] = mapped_column(String(16), default="best")
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SlackLink(Base):
    """A Slack user linked to a platform user: by a one-time code (`source` "code") or by
    an administrator (`source` "admin"). `team_id` "" matches the Slack user in any workspace."""

    __tablename__ = "slack_links"
    __table_args__ = (UniqueConstraint("team_id", "slack_user_id", name="uq_slack_link_user"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(32), default="")
    slack_user_id: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16), default="code")  # code | admin
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SlackLinkCode(Base):
    """A one-time link code: only its sha256 is stored; short-lived and single use (`used_at`)."""

    __tablename__ = "slack_link_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SlackThread(Base):
    """The chat session of one Slack thread and person (`thread_ts` "" for a DM outside threads)."""

    __tablename__ = "slack_threads"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts", "user_id", name="uq_slack_thread_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(32), default="")
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str] = mapped_column(String(32), default="")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SlackEvent(Base):
    """A Slack delivery already taken (event_id, a message's channel+ts, an answered button), so
    that Slack's retries (`X-Slack-Retry-Num`) and duplicate deliveries do nothing twice."""

    __tablename__ = "slack_events"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class SlackJobMessage(Base):
    """The one progress message of a job in a Slack thread, kept up to date while the job runs
    (`status` following | done); `last_seq` is the newest event shown (a restart resumes there).
    `private`: the job trained on a private dataset, so its name is not shown in a channel."""

    __tablename__ = "slack_job_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[str] = mapped_column(String(32), default="")
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str] = mapped_column(String(32), default="")
    message_ts: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(2), default="en")
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="following", index=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class WeightsEntry(Base):
    """A registry entry of pretrained weights (`tools.weights`): the files under ``key``
    (``weights/{framework}/{name}/``) in the internal store, ``files`` ``[{"name", "sha256", "size"}]``,
    ``sha256``/``size`` of the weights file itself; ``source`` where it came from (``import``,
    ``upload``, ``hub:{repo}``, ``url:{url}``), ``detail`` what the user is told ("timm
    resnet50.a1_in1k"), ``pretraining`` the data it was trained on ("ImageNet-1k", "COCO")."""

    __tablename__ = "weights"
    __table_args__ = (UniqueConstraint("framework", "model_name", name="uq_weights_model"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    framework: Mapped[str] = mapped_column(String(32))
    model_name: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(1024))
    files: Mapped[list[Any]] = mapped_column(JSON, default=list)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(1024), default="import")
    detail: Mapped[str] = mapped_column(String(300), default="")
    license: Mapped[str] = mapped_column(String(200), default="")
    pretraining: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserWeights(Base):
    """A weights file a user uploaded for one catalog model (`tools.user_weights`), private to its
    owner: the files under ``key`` (``weights/user/{owner_id}/{id}/``) in the internal store,
    ``files`` ``[{"name", "sha256", "size"}]`` (transformers: ``config.json`` too), ``name`` the
    weights file's name as uploaded (cleaned), ``sha256``/``size`` of that file. A job that names it
    (`TrainingIntent.init_weights`) starts from it instead of the registry. Its size counts toward
    the owner's storage quota. Ids are never reused (they appear in URLs and in job records)."""

    __tablename__ = "user_weights"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    framework: Mapped[str] = mapped_column(String(32))
    model_name: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(1024))
    files: Mapped[list[Any]] = mapped_column(JSON, default=list)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StreamTicket(Base):
    """A short-lived, single-use ticket that opens ONE live stream (`tools.stream_tickets`), so that
    a WebSocket or EventSource URL never carries the bearer token. Only the sha256 of the ticket is
    stored; `kind` is job | test_run | chat and `target` the job or test run id ("" for chat). Kept
    in the database so that any replica can consume it, once (`used_at` set by one UPDATE)."""

    __tablename__ = "stream_tickets"

    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(32), default="")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobThroughput(Base):
    """How fast one finished job trained, measured from its own events (`tools.estimates`): the
    kind of job (framework, model, image size and its bucket, device kind), the images it trained
    and validated per epoch, the steady training and validation speed (images/s over the epochs
    after the first) and the fixed cost (process start-up, imports, setup, warm-up, final upload:
    wall time less the epochs at steady speed). One row per completed job; duration estimates of
    later jobs of the same kind are made from these rows. The job may be deleted later: the speed
    it measured stays (``job_id`` set to NULL)."""

    __tablename__ = "job_throughput"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, unique=True)
    framework: Mapped[str] = mapped_column(String(32))
    model_name: Mapped[str] = mapped_column(String(200))
    task_type: Mapped[str] = mapped_column(String(64))
    image_size: Mapped[int] = mapped_column(Integer)
    size_bucket: Mapped[int] = mapped_column(Integer)
    device_kind: Mapped[str] = mapped_column(String(32))
    epochs: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    train_images: Mapped[int] = mapped_column(Integer)
    val_images: Mapped[int] = mapped_column(Integer)
    train_ips: Mapped[float] = mapped_column()
    val_ips: Mapped[float | None] = mapped_column(nullable=True)
    overhead_s: Mapped[float] = mapped_column()
    wall_s: Mapped[float] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
