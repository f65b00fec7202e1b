"""Taking models away: checkpoint downloads, model cards and short-lived signed download links.

    checkpoint_file(ctx, job_id, "best"|"last")     -> ResultFile (the stored best.pt / last.pt)
    model_card(ctx, job_id)                         -> ModelCard (typed; what the file needs to be
                                                       used outside this server)
    create_link(ctx, signer, job_id, obj, export_id) -> SignedLink (url, expires_at, filename)
    verify_link(secret, token, now)                 -> LinkClaim (401 when expired or tampered)
    open_link(ctx_for_user, claim)                  -> ResultFile | ModelCard, re-checked now

A checkpoint can be downloaded from a completed, stopped or failed job of the caller that has it
(others' jobs answer 404 like unknown ones). A signed link is
``<base>/api/v1/dl/v1.<payload>.<signature>``: the payload (base64url JSON) names the user, the
object (job id and ``best`` / ``last`` / ``model-card``, or an export id) and the expiry; the
signature is HMAC-SHA256 over the payload with a key derived from the server secret (so it is no
access token and an access token is no link). Changing anything in the payload breaks the
signature; the server also re-checks at download time that the user still exists, is active and
still owns the job. The token is a credential: `web.logredact` removes ``/dl/<token>`` from logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from tools.context import LinkSigner, ToolContext, iso_utc, require_user
from tools.db.models import Job, JobCheckpoint, ModelExport, User
from tools.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from tools.inference import ResultFile, export_file, visible_job
from trainer_runtime.errors import ObjectNotFoundError, StorageError
from trainer_runtime.storage import dataset_annotations_key, snapshot_annotations_key

CHECKPOINT_NAMES = ("best", "last")
DOWNLOADABLE_STATUSES = ("completed", "stopped", "failed")
LINK_OBJECTS = ("best", "last", "model-card", "export")
LINK_PREFIX = "/api/v1/dl/"
LINK_VERSION = "v1"
MAX_LINK_TOKEN_CHARS = 1024
CARD_FORMAT = "vta-model-card/1"

LinkObject = Literal["best", "last", "model-card", "export"]


# ----------------------------------------------------------------------------- file names


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def checkpoint_filename(job: Job, name: str) -> str:
    """``job-12-resnet18-best.pt`` (a hub id's slash becomes a dash)."""
    return f"job-{job.id}-{_slug(job.model_name)}-{name}.pt"


def model_card_filename(job: Job) -> str:
    """The download file name of a job's model card ("job-<id>-<model>-model-card.json")."""
    return f"job-{job.id}-{_slug(job.model_name)}-model-card.json"


# ------------------------------------------------------------------------------ checkpoints


def _checkpoint_rows(ctx: ToolContext, job: Job) -> dict[str, JobCheckpoint]:
    rows = ctx.db.scalars(select(JobCheckpoint).where(JobCheckpoint.job_id == job.id).order_by(JobCheckpoint.name))
    return {r.name: r for r in rows}


def checkpoint_file(ctx: ToolContext, job_id: Any, name: str) -> ResultFile:
    """The caller's stored ``best.pt`` / ``last.pt`` of a completed, stopped or failed job.
    404 for others' or unknown jobs, 422 for another name, 409 while the job runs or when it has
    no such checkpoint (naming what it has) or the store lost the file."""
    job = visible_job(ctx, job_id)
    if name not in CHECKPOINT_NAMES:
        raise InvalidInputError(f"checkpoint must be 'best' or 'last', not {name!r}", detail={"field": "checkpoint"})
    if job.status not in DOWNLOADABLE_STATUSES:
        raise ConflictError(
            f"job {job.id} is {job.status}: checkpoints can be downloaded once it is completed, stopped or failed",
            detail={"job_id": job.id, "status": job.status},
        )
    rows = _checkpoint_rows(ctx, job)
    row = rows.get(f"{name}.pt")
    if row is None:
        has = ", ".join(sorted(rows)) or "none"
        raise ConflictError(
            f"job {job.id} has no {name} checkpoint (it has: {has})", detail={"job_id": job.id, "checkpoint": name}
        )
    if not ctx.storage.internal.exists(row.key):
        raise ConflictError(
            f"checkpoint {row.name} of job {job.id} is missing from storage", detail={"job_id": job.id, "key": row.key}
        )
    return ResultFile(row.key, "application/octet-stream", row.size, checkpoint_filename(job, name))


# ------------------------------------------------------------------------------- model card


class CardDataset(BaseModel):
    id: str | None
    name: str
    snapshot_id: str | None = Field(description="the snapshot trained on; None: the dataset as it was at launch")


class CardPretrained(BaseModel):
    pretrained: bool | None = Field(description="True/False when the job recorded it, None when it did not")
    source: str = Field(description="e.g. 'timm resnet50.a1_in1k (ImageNet-1k)', or 'from scratch'")
    recorded: bool = Field(description="whether the job recorded where its initial weights came from")
    detail: dict[str, Any] = Field(default_factory=dict)


class CardMetrics(BaseModel):
    final: dict[str, Any] = Field(description="the metrics of the last finished epoch")
    best_metric_name: str | None
    best_metric: float | None
    best_epoch: int | None
    epochs_completed: int
    epochs: int


class CardPreprocessing(BaseModel):
    """How to turn an image into the model's input, outside this server."""

    input_size: int | None = Field(description="square side in pixels")
    input_layout: str = "NCHW float32, RGB"
    resize: str
    resize_mode: Literal["shorter_side_center_crop", "square", "letterbox"] = Field(
        description="shorter_side_center_crop: scale the shorter side to input_size, crop the centre; square: "
        "resize to input_size x input_size; letterbox: scale the longer side, pad with gray 114"
    )
    scale: str = "pixel values / 255"
    mean: list[float] | None = Field(description="subtracted per channel after scaling; None: not normalised")
    std: list[float] | None
    onnx_input_name: str
    outputs: str


class CardCheckpoint(BaseModel):
    name: str
    filename: str
    size: int
    sha256: str | None
    epoch: int | None


class CardExport(BaseModel):
    id: int
    format: str
    checkpoint: str
    size: int | None
    sha256: str | None
    parity: dict[str, Any] | None


class ModelCard(BaseModel):
    """What a downloaded checkpoint or export needs to be used elsewhere."""

    format: str = CARD_FORMAT
    job_id: int
    status: str
    framework: str
    model_name: str
    task_type: str
    intent: dict[str, Any]
    hyperparameters: dict[str, Any]
    config: dict[str, Any]
    dataset: CardDataset
    pretrained: CardPretrained
    metrics: CardMetrics
    class_names: list[str]
    class_names_source: str
    preprocessing: CardPreprocessing
    checkpoints: list[CardCheckpoint]
    exports: list[CardExport]
    created_at: str | None
    finished_at: str | None


IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
_HALF = [0.5, 0.5, 0.5]


def _image_size(job: Job) -> int | None:
    for src in (job.hyperparameters or {}, job.config or {}):
        for k in ("image_size", "imgsz", "img_size", "input_size"):
            v = src.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def preprocessing_for(framework: str, model_name: str, task_type: str, size: int | None) -> CardPreprocessing:
    """What the trainer's evaluation transform (and the ONNX export's input) does, per framework
    (`trainer_runtime.inference.predictors`)."""
    s = f"{size}" if size else "S"
    if framework == "ultralytics":
        if task_type == "image_classification":
            return CardPreprocessing(
                input_size=size,
                resize=f"resize the shorter side to {s}, centre-crop {s}x{s}",
                resize_mode="shorter_side_center_crop",
                mean=None,
                std=None,
                onnx_input_name="images",
                outputs="class probabilities (softmax applied), one row per image",
            )
        return CardPreprocessing(
            input_size=size,
            resize=f"letterbox to {s}x{s}: scale the longer side to {s}, pad with gray (114) to a square",
            resize_mode="letterbox",
            mean=None,
            std=None,
            onnx_input_name="images",
            outputs="Ultralytics raw head output (boxes + class scores per anchor); apply NMS",
        )
    if framework == "timm":
        return CardPreprocessing(
            input_size=size,
            resize=f"resize the shorter side to {s} (bilinear), centre-crop {s}x{s}",
            resize_mode="shorter_side_center_crop",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            onnx_input_name="pixel_values",
            outputs="logits (apply softmax for probabilities), one row per image",
        )
    vit_like = any(t in model_name.lower() for t in ("vit", "deit"))
    detr = task_type != "image_classification"
    return CardPreprocessing(
        input_size=size,
        resize=f"resize to {s}x{s} (no crop)",
        resize_mode="square",
        mean=_HALF if vit_like else IMAGENET_MEAN,
        std=_HALF if vit_like else IMAGENET_STD,
        onnx_input_name="pixel_values",
        outputs="logits and pred_boxes (cx, cy, w, h in 0..1)" if detr else "logits (apply softmax), one row per image",
    )


def _pretrained(job: Job) -> CardPretrained:
    """What the job recorded about its initial weights (`Job.init_from` for fine-tuning from an
    earlier job, `Job.pretrained` for pretrained weights: ``{"source": registry|hub|...|scratch,
    "detail", "pretraining", "planned"?, "warning"?}``); honest when it recorded nothing."""
    init_from: Any = getattr(job, "init_from", None)
    recorded: Any = getattr(job, "pretrained", None)
    if isinstance(init_from, dict) and init_from.get("job_id"):
        ckpt = init_from.get("checkpoint") or "a checkpoint"
        return CardPretrained(
            pretrained=True,
            source=f"fine-tuned from job {init_from['job_id']} ({ckpt}, {init_from.get('model_name') or '?'})",
            recorded=True,
            detail={"init_from": init_from, **({"pretrained": recorded} if isinstance(recorded, dict) else {})},
        )
    if not isinstance(recorded, dict) or not recorded.get("source"):
        return CardPretrained(
            pretrained=None,
            source="unknown: this job recorded no pretrained source (jobs here train from scratch unless "
            "pretrained weights were available)",
            recorded=False,
        )
    source = str(recorded["source"])
    if source == "scratch":
        said = "from scratch" + (f": {recorded['warning']}" if recorded.get("warning") else "")
        return CardPretrained(pretrained=False, source=said, recorded=True, detail=recorded)
    what = str(recorded.get("detail") or source)
    on = f"pretrained on {recorded['pretraining']}" if recorded.get("pretraining") else "pretrained"
    said = f"{on} ({what}, from {source})"
    if source == "user upload":  # the owner's own file (tools.user_weights)
        said = f"started from the owner's weights {recorded.get('file') or what} (sha256 {recorded.get('sha256')})"
    if recorded.get("planned"):
        said += "; planned at launch, the trainer did not confirm it"
    return CardPretrained(pretrained=True, source=said, recorded=True, detail=recorded)


def _class_names(ctx: ToolContext, job: Job) -> tuple[list[str], str]:
    """The dataset's categories in id order (the order the trainers number classes in)."""
    if not job.dataset_id:
        return [], "unknown: the job has no dataset"
    key = (
        snapshot_annotations_key(job.dataset_id, job.snapshot_id)
        if job.snapshot_id
        else dataset_annotations_key(job.dataset_id)
    )
    try:
        doc = json.loads(ctx.storage.external.get_bytes(key))
    except ObjectNotFoundError:
        return [], f"unknown: the dataset's annotations are gone ({key})"
    except (StorageError, ValueError) as exc:
        return [], f"unknown: the dataset's annotations cannot be read ({exc})"
    cats = [c for c in doc.get("categories") or [] if isinstance(c, dict) and "name" in c]
    cats.sort(key=lambda c: int(c.get("id") or 0))
    where = f"snapshot {job.snapshot_id}" if job.snapshot_id else "the dataset"
    return [str(c["name"]) for c in cats], f"categories of {where} in id order (class index i = i-th name)"


def model_card(ctx: ToolContext, job_id: Any) -> ModelCard:
    """The model card of one of the caller's jobs (404 for others' jobs)."""
    job = visible_job(ctx, job_id)
    classes, classes_from = _class_names(ctx, job)
    ckpts = [
        CardCheckpoint(
            name=r.name,
            filename=checkpoint_filename(job, r.name.removesuffix(".pt")),
            size=int(r.size),
            sha256=r.sha256,
            epoch=r.epoch,
        )
        for r in _checkpoint_rows(ctx, job).values()
    ]
    exports = [
        CardExport(
            id=e.id,
            format=e.format,
            checkpoint=e.checkpoint,
            size=e.size,
            sha256=e.sha256,
            parity=(e.report or {}).get("parity"),
        )
        for e in ctx.db.scalars(
            select(ModelExport)
            .where(ModelExport.job_id == job.id, ModelExport.status == "completed")
            .order_by(ModelExport.id)
        )
    ]
    return ModelCard(
        job_id=job.id,
        status=job.status,
        framework=job.framework,
        model_name=job.model_name,
        task_type=job.task_type,
        intent=dict(job.intent or {}),
        hyperparameters=dict(job.hyperparameters or {}),
        config=dict(job.config or {}),
        dataset=CardDataset(id=job.dataset_id, name=job.dataset_name or "", snapshot_id=job.snapshot_id),
        pretrained=_pretrained(job),
        metrics=CardMetrics(
            final=dict(job.metrics or {}),
            best_metric_name=job.best_metric_name,
            best_metric=job.best_metric,
            best_epoch=job.best_epoch,
            epochs_completed=int(job.epochs_completed or 0),
            epochs=int(job.epochs or 0),
        ),
        class_names=classes,
        class_names_source=classes_from,
        preprocessing=preprocessing_for(job.framework, job.model_name, job.task_type, _image_size(job)),
        checkpoints=ckpts,
        exports=exports,
        created_at=iso_utc(job.created_at),
        finished_at=iso_utc(job.finished_at),
    )


# ------------------------------------------------------------------------------ signed links


@dataclass(frozen=True)
class LinkClaim:
    """What a signed download link grants: one object of one job to one user, until `expires_at` (epoch s)."""

    user_id: int
    job_id: int
    obj: str  # best | last | model-card | export
    export_id: int | None
    expires_at: float


@dataclass(frozen=True)
class SignedLink:
    """A signed download link as the API returns it (`as_dict`): URL, path, expiry and the file it serves."""

    url: str
    path: str
    expires_at: str
    expires_in_s: int
    filename: str
    object: str
    job_id: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "path": self.path,
            "expires_at": self.expires_at,
            "expires_in_s": self.expires_in_s,
            "filename": self.filename,
            "object": self.object,
            "job_id": self.job_id,
        }


def _link_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"vta download link v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(secret: str, claim: LinkClaim) -> str:
    """The signed token of `claim`: "<version>.<base64 JSON payload>.<HMAC-SHA256 signature>", checked by
    `verify_link`."""
    payload = {"u": claim.user_id, "j": claim.job_id, "o": claim.obj, "x": int(claim.expires_at)}
    if claim.export_id is not None:
        payload["e"] = claim.export_id
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    sig = _b64(hmac.new(_link_key(secret), f"{LINK_VERSION}.{body}".encode(), hashlib.sha256).digest())
    return f"{LINK_VERSION}.{body}.{sig}"


def verify_link(secret: str, token: str, now: float | None = None) -> LinkClaim:
    """The claim of a link this server signed; AuthenticationError (401) saying why otherwise."""
    parts = token.split(".") if len(token) <= MAX_LINK_TOKEN_CHARS else []
    if len(parts) != 3 or parts[0] != LINK_VERSION:
        raise AuthenticationError("this download link is malformed: ask for a new one")
    expected = hmac.new(_link_key(secret), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        given = _unb64(parts[2])
        valid = hmac.compare_digest(expected, given)
        payload = json.loads(_unb64(parts[1])) if valid else None
    except (binascii.Error, ValueError):
        valid, payload = False, None
    if not valid or not isinstance(payload, dict):
        raise AuthenticationError("this download link's signature is not valid (was it changed?): ask for a new one")
    try:
        claim = LinkClaim(
            user_id=int(payload["u"]),
            job_id=int(payload["j"]),
            obj=str(payload["o"]),
            export_id=int(payload["e"]) if payload.get("e") is not None else None,
            expires_at=float(payload["x"]),
        )
    except (KeyError, TypeError, ValueError):
        raise AuthenticationError("this download link is malformed: ask for a new one") from None
    if claim.obj not in LINK_OBJECTS:
        raise AuthenticationError("this download link is malformed: ask for a new one")
    if (time.time() if now is None else now) >= claim.expires_at:
        when = datetime.fromtimestamp(claim.expires_at, UTC).isoformat().replace("+00:00", "Z")
        raise AuthenticationError(f"this download link expired at {when}: ask for a new one")
    return claim


def _target(ctx: ToolContext, job_id: Any, obj: str, export_id: Any | None) -> tuple[int, int | None, str]:
    """Check that the caller may download `obj` now: (job id, export id, file name)."""
    if obj in CHECKPOINT_NAMES:
        f = checkpoint_file(ctx, job_id, obj)
        return int(job_id), None, f.filename
    if obj == "model-card":
        job = visible_job(ctx, job_id)
        return job.id, None, model_card_filename(job)
    if obj == "export":
        if export_id is None:
            raise InvalidInputError("export_id is required for an export link", detail={"field": "export_id"})
        ef = export_file(ctx, job_id, export_id)
        return int(job_id), int(export_id), ef.filename
    raise InvalidInputError(f"object must be one of {', '.join(LINK_OBJECTS)}, not {obj!r}", detail={"field": "object"})


def create_link(
    ctx: ToolContext, signer: LinkSigner, job_id: Any, obj: str, export_id: Any | None = None
) -> SignedLink:
    """A signed link to one of the caller's downloads (checked now: 404 others', 409 nothing to
    download), valid for `signer.ttl_s` seconds, for this user only."""
    user = require_user(ctx, "downloads")
    jid, eid, filename = _target(ctx, job_id, obj, export_id)
    expires = signer.clock() + signer.ttl_s
    token = sign_token(signer.secret, LinkClaim(int(user.id), jid, obj, eid, float(int(expires))))
    path = LINK_PREFIX + token
    return SignedLink(
        url=signer.base_url.rstrip("/") + path,
        path=path,
        expires_at=datetime.fromtimestamp(int(expires), UTC).isoformat().replace("+00:00", "Z"),
        expires_in_s=int(signer.ttl_s),
        filename=filename,
        object=obj,
        job_id=jid,
    )


def link_user(ctx: ToolContext, claim: LinkClaim) -> User:
    """The link's user, if they still exist and are active (else 401)."""
    user = ctx.db.get(User, claim.user_id)
    if user is None or not user.is_active:
        raise AuthenticationError("the account this download link was made for no longer exists or is disabled")
    return user


def open_link(ctx: ToolContext, claim: LinkClaim) -> ResultFile | ModelCard:
    """What a verified link downloads, checked again for `ctx.user` (the link's user) now: a
    job they no longer own (deleted, or never theirs) answers 404."""
    if claim.obj in CHECKPOINT_NAMES:
        return checkpoint_file(ctx, claim.job_id, claim.obj)
    if claim.obj == "model-card":
        return model_card(ctx, claim.job_id)
    if claim.export_id is None:
        raise NotFoundError("this download link names no export")
    return export_file(ctx, claim.job_id, claim.export_id)


def link_filename(ctx: ToolContext, claim: LinkClaim) -> str:
    """The download file name for a link's claim (the model card's name); NotFoundError when the job is not
    the user's any more."""
    job = visible_job(ctx, claim.job_id)
    return model_card_filename(job)


__all__ = [
    "CHECKPOINT_NAMES",
    "DOWNLOADABLE_STATUSES",
    "LINK_OBJECTS",
    "LINK_PREFIX",
    "LinkClaim",
    "LinkSigner",
    "ModelCard",
    "SignedLink",
    "checkpoint_file",
    "checkpoint_filename",
    "create_link",
    "link_filename",
    "link_user",
    "model_card",
    "model_card_filename",
    "open_link",
    "preprocessing_for",
    "sign_token",
    "verify_link",
]
