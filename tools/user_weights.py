"""Weights files users upload for their own jobs ("use my weights"; server side, no torch).

Any signed-in user may upload a weights file for one catalog model (`upload_user_weights`:
``POST /api/v1/weights/mine``). It is checked exactly like an administrator's registry import
(`trainer_runtime.weights.inspect_weights_file`: a safetensors header and size, or a PyTorch
checkpoint's zip layout and a scan of its pickle that never runs it); transformers weights need
their ``config.json``; Ultralytics weights are a ``.pt`` checkpoint. The file is bounded by
``limits.max_user_weights_bytes`` (USER_WEIGHTS_MAX_BYTES) and counts toward the owner's storage
quota (``tools.datasets.storage_used`` adds uploads to datasets). It is stored as one row of table
``user_weights`` (`tools.db.models.UserWeights`) and its files under
``weights/user/{owner_id}/{id}/`` in the internal store (`trainer_runtime.weights.user_prefix`).
Atomic: a file that fails a check leaves no object and no row; a failed store rolls the row back
and deletes what was written.

Private: another user's upload answers 404 exactly like one that does not exist.

A job names one with ``TrainingIntent.init_weights``: the id of the upload, or ``"mine"`` (the
caller's only upload for the model; `resolve_for_job` says which ones there are when there are
several, and how to upload when there are none). The user's weights win over the registry: the
job's ``pretrained`` records ``{"source": "user upload", "detail": "your weights NAME", "file",
"sha256", "user_weights_id", ...}`` and the trainer fetches the files (sha256 checked) and loads
them with the registry's loading path (`trainer_runtime.adapters.pretrained`: head rebuilt for the
dataset's classes, tensors loaded/skipped reported; a file none of whose tensors fits the model
fails the job naming the file). Which architecture a file holds cannot be checked here (that needs
torch): the upload names its model, and a job must use that model (else 422 naming
``init_weights``).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from tools import catalog
from tools.context import ToolContext, iso_utc, require_user
from tools.datasets.locks import user_quota_lock
from tools.datasets.quota import check_quota
from tools.db.models import Job, UserWeights
from tools.errors import InvalidInputError, NotFoundError, PayloadTooLargeError
from trainer_runtime.weights import (
    USER_UPLOAD,
    WeightsError,
    WeightsPlan,
    inspect_weights_file,
    sha256_of,
    user_prefix,
)

MINE = "mine"  # TrainingIntent.init_weights: "the caller's only upload for this model"
SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
UPLOAD_HINT = "POST /api/v1/weights/mine (multipart: model, file), or the page's 'My weights' form"
MAX_LISTED = 200


def weights_dict(row: UserWeights) -> dict[str, Any]:
    """An uploaded weights row as the API returns it (its files with their hashes and sizes)."""
    return {
        "id": row.id,
        "framework": row.framework,
        "model_name": row.model_name,
        "name": row.name,
        "files": [{"name": f["name"], "sha256": f.get("sha256"), "size": f.get("size")} for f in row.files or []],
        "sha256": row.sha256,
        "size": row.size,
        "created_at": iso_utc(row.created_at),
    }


def _owned_row(ctx: ToolContext, weights_id: int) -> UserWeights:
    user = require_user(ctx, "your weights")
    row = ctx.db.get(UserWeights, int(weights_id)) if 1 <= int(weights_id) <= 2**31 - 1 else None
    if row is None or row.owner_id != user.id:
        raise NotFoundError(f"weights {weights_id} not found", detail={"field": "weights_id", "id": weights_id})
    return row


def list_user_weights(ctx: ToolContext, model: str | None = None, framework: str | None = None) -> list[dict[str, Any]]:
    """The caller's uploads, newest first (only those of `model` / `framework` when given)."""
    user = require_user(ctx, "your weights")
    stmt = select(UserWeights).where(UserWeights.owner_id == user.id)
    if model:
        fw, name = _model_of(model, framework)
        stmt = stmt.where(UserWeights.framework == fw, UserWeights.model_name == name)
    elif framework:
        stmt = stmt.where(UserWeights.framework == framework)
    rows = ctx.db.scalars(stmt.order_by(UserWeights.id.desc()).limit(MAX_LISTED))
    return [weights_dict(r) for r in rows]


def get_user_weights(ctx: ToolContext, weights_id: int) -> dict[str, Any]:
    """The caller's upload `weights_id`; NotFoundError when it is not theirs or unknown."""
    return weights_dict(_owned_row(ctx, weights_id))


def delete_user_weights(ctx: ToolContext, weights_id: int) -> None:
    """Delete one of the caller's uploads (row and objects). A job queued with it fails at start
    saying the file is gone; jobs that already started keep what they loaded."""
    row = _owned_row(ctx, weights_id)
    key = row.key
    names = [str(f["name"]) for f in row.files or []]
    ctx.db.delete(row)
    ctx.db.commit()
    for name in names:
        with contextlib.suppress(Exception):  # the row is gone; a stray object is harmless and private
            ctx.storage.internal.delete(key + name)


def _model_of(model: str, framework: str | None) -> tuple[str, str]:
    try:
        info = catalog.resolve_model(model, framework)
    except InvalidInputError as exc:
        raise InvalidInputError(str(exc.message), detail={**exc.detail, "field": "model"}) from exc
    return info.framework, info.name


def _clean_name(filename: str, suffix: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or "").name)[:200].lstrip(".")
    if not safe.lower().endswith(suffix):
        safe = f"weights{suffix}"
    return safe


def _copy_bounded(data: BinaryIO, target: Path, limit: int, field: str) -> int:
    total = 0
    with target.open("wb") as out:
        while True:
            chunk = data.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise PayloadTooLargeError(
                    f"{field}: the file is larger than the limit of {limit} bytes for your weights",
                    detail={"field": field, "limit_bytes": limit},
                )
            out.write(chunk)
    if total == 0:
        raise InvalidInputError(f"{field}: the file is empty", detail={"field": field})
    return total


def upload_user_weights(
    ctx: ToolContext,
    data: BinaryIO,
    filename: str,
    *,
    model: str,
    framework: str | None = None,
    config: BinaryIO | None = None,
) -> dict[str, Any]:
    """Store a weights file of the caller's for one catalog model (module doc). Errors: 422
    naming ``file`` / ``model`` / ``config``; 413 over the size limit or the storage quota.
    Returns the new upload (`weights_dict`)."""
    user = require_user(ctx, "your weights")
    suffix = Path(filename or "").suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInputError(
            f"{filename!r}: upload a .safetensors, .pt, .pth or .bin file", detail={"field": "file"}
        )
    fw, model_name = _model_of(model, framework)
    if fw == "ultralytics" and suffix != ".pt":
        raise InvalidInputError(
            f"{filename!r}: Ultralytics weights are a .pt checkpoint (as YOLO saves it)", detail={"field": "file"}
        )
    if fw != "transformers" and config is not None:
        raise InvalidInputError("only transformers weights come with a config.json", detail={"field": "config"})
    if fw == "transformers" and config is None:
        raise InvalidInputError(
            "transformers weights need their config.json (send it as the `config` file)", detail={"field": "config"}
        )
    check_quota(ctx, user.id, 0)
    limit = ctx.limits.max_user_weights_bytes
    name = _clean_name(filename, suffix)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp:
        target = Path(tmp) / name
        _copy_bounded(data, target, limit, "file")
        files: list[tuple[str, Path]] = []
        try:
            info = inspect_weights_file(target)
            if info["format"] == "config":
                raise WeightsError(f"{name} is a config, not weights")
            if fw == "ultralytics" and info["format"] != "pytorch":
                raise WeightsError(f"{name}: Ultralytics weights are a PyTorch checkpoint, not {info['format']}")
        except WeightsError as exc:
            raise InvalidInputError(f"file: {exc}", detail={"field": "file", "file": name}) from exc
        if fw == "transformers":
            assert config is not None
            cfg = Path(tmp) / "cfg" / "config.json"
            cfg.parent.mkdir()
            _copy_bounded(config, cfg, min(limit, 16 * 1024**2), "config")
            try:
                inspect_weights_file(cfg)
            except WeightsError as exc:
                raise InvalidInputError(f"config: {exc}", detail={"field": "config"}) from exc
            files.append(("config.json", cfg))
            # from_pretrained reads a folder: the weights under the name transformers looks for
            files.append(("model.safetensors" if info["format"] == "safetensors" else "pytorch_model.bin", target))
        else:
            files.append((name, target))
        sizes = {n: p.stat().st_size for n, p in files}
        with user_quota_lock(user.id):
            check_quota(ctx, user.id, sum(sizes.values()))
            return _store(ctx, user.id, fw, model_name, name, files, sizes)


def _store(
    ctx: ToolContext,
    owner_id: int,
    framework: str,
    model_name: str,
    name: str,
    files: list[tuple[str, Path]],
    sizes: dict[str, int],
) -> dict[str, Any]:
    described = [{"name": n, "sha256": sha256_of(p), "size": sizes[n]} for n, p in files]
    row = UserWeights(
        owner_id=owner_id,
        framework=framework,
        model_name=model_name,
        name=name,
        key="",
        files=described,
        sha256=described[-1]["sha256"],
        size=described[-1]["size"],
    )
    written: list[str] = []
    try:
        ctx.db.add(row)
        ctx.db.flush()  # the id names the folder
        row.key = user_prefix(owner_id, row.id)
        for n, p in files:
            ctx.storage.internal.put_file(row.key + n, p)
            written.append(row.key + n)
        ctx.db.commit()
    except BaseException:
        ctx.db.rollback()
        for key in written:
            with contextlib.suppress(Exception):
                ctx.storage.internal.delete(key)
        raise
    return weights_dict(row)


# ------------------------------------------------------------------------------------- jobs


def candidates(
    ctx: ToolContext, framework: str | None = None, model_name: str | None = None, task_type: str | None = None
) -> list[UserWeights]:
    """The caller's uploads a request could mean (of its model, else of its framework/task), newest first."""
    user = require_user(ctx, "your weights")
    stmt = select(UserWeights).where(UserWeights.owner_id == user.id)
    if model_name:
        try:
            info = catalog.resolve_model(model_name, framework)
        except InvalidInputError as exc:  # an unknown model is the model's error, not the weights'
            raise InvalidInputError(str(exc.message), detail={**exc.detail, "field": "model_name"}) from exc
        stmt = stmt.where(UserWeights.framework == info.framework, UserWeights.model_name == info.name)
    elif framework:
        stmt = stmt.where(UserWeights.framework == framework)
    rows = list(ctx.db.scalars(stmt.order_by(UserWeights.id.desc()).limit(MAX_LISTED)))
    if task_type and not model_name:
        tasks = {r.id: getattr(catalog.find_model(r.model_name), "task_type", None) for r in rows}
        rows = [r for r in rows if tasks[r.id] == task_type]
    return rows


def describe_choice(row: UserWeights) -> str:
    """A one-line description of an upload for a list of choices: "#<id> <name> (<model>, sha256 <prefix>)"."""
    return f"#{row.id} {row.name} ({row.model_name}, sha256 {row.sha256[:12]})"


def resolve_for_job(
    ctx: ToolContext,
    ref: int | str,
    *,
    model_name: str | None,
    framework: str | None,
    task_type: str | None = None,
) -> UserWeights:
    """The upload a request names (`TrainingIntent.init_weights`): its id (the caller's, else
    404 naming ``init_weights``), or ``"mine"``: the caller's only upload of the model (of the
    task when no model is named). Several -> 422 listing them (``detail.choices``); none -> 422
    saying how to upload."""
    if isinstance(ref, int):
        try:
            return _owned_row(ctx, ref)
        except NotFoundError as exc:
            raise NotFoundError(
                f"your weights {ref} not found", detail={"field": "init_weights", "init_weights": ref}
            ) from exc
    rows = candidates(ctx, framework, model_name, task_type)
    what = model_name or (f"{framework} " if framework else "") + (task_type or "this request")
    if len(rows) == 1:
        return rows[0]
    if not rows:
        raise InvalidInputError(
            f"you have not uploaded weights for {what}: upload a weights file with {UPLOAD_HINT}",
            detail={"field": "init_weights", "choices": [], "upload": UPLOAD_HINT},
        )
    raise InvalidInputError(
        f"you have {len(rows)} uploads for {what}; say which one: " + "; ".join(describe_choice(r) for r in rows),
        detail={"field": "init_weights", "choices": [weights_dict(r) for r in rows]},
    )


def check_model(row: UserWeights, framework: str, model_name: str) -> None:
    """A job uses the model its weights were uploaded for (422 naming ``init_weights`` otherwise)."""
    if (row.framework, row.model_name) != (framework, model_name):
        raise InvalidInputError(
            f"your weights {row.name} (#{row.id}) are for {row.framework} {row.model_name}, not {framework} "
            f"{model_name}: leave the model out to use theirs, or upload weights of {model_name}",
            detail={
                "field": "init_weights",
                "init_weights": row.id,
                "weights_model": row.model_name,
                "weights_framework": row.framework,
                "model_name": model_name,
                "framework": framework,
            },
        )


def planned_field(row: UserWeights) -> dict[str, Any]:
    """``job.pretrained`` of a job that starts from the user's upload (before the trainer reports)."""
    return {
        "source": USER_UPLOAD,
        "detail": f"your weights {row.name}",
        "pretraining": None,
        "planned": True,
        "download": None,
        "file": row.name,
        "sha256": row.sha256,
        "user_weights_id": row.id,
    }


def plan_for_job(db: Session, job: Job) -> WeightsPlan | None:
    """The spec's plan of a job whose ``pretrained`` names the user's upload (None otherwise).
    When the upload was deleted since, the plan still names its files: the trainer then fails
    the job saying the file is gone (never a silent run from scratch or from the registry)."""
    recorded = job.pretrained or {}
    if recorded.get("source") != USER_UPLOAD or not recorded.get("user_weights_id"):
        return None
    weights_id = int(recorded["user_weights_id"])
    row = db.get(UserWeights, weights_id)
    if row is not None and row.owner_id == job.owner_id:
        files = [{"name": f["name"], "sha256": f.get("sha256"), "size": f.get("size")} for f in row.files]
        key, detail = row.key, f"your weights {row.name}"
    else:
        files = [{"name": str(recorded.get("file") or "weights.safetensors"), "sha256": recorded.get("sha256")}]
        key, detail = user_prefix(job.owner_id, weights_id), str(recorded.get("detail") or "your weights")
    return WeightsPlan.model_validate(
        {"source": USER_UPLOAD, "detail": detail, "pretraining": None, "registry_key": key, "files": files}
    )
