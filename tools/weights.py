"""The pretrained weights registry and the weights plan of a job (server side; no torch).

Registry: one row per (framework, model) in table ``weights`` (`tools.db.models.WeightsEntry`) and
its files under ``weights/{framework}/{name}/`` in the internal store. Entries come from an import
(`import_weights`: the CLI ``vision-agent weights import``, or an administrator's upload through
``POST /api/v1/weights``) or from a trainer that downloaded weights and cached them there
(`record_trainer_report`, from the trainer's ``log`` event carrying ``"weights"``).

Plan (`plan_for`), in this order: (1) the registry entry of the model; (2) when downloads are
allowed (`WeightsPolicy.download`: ``auto`` tries with short timeouts and falls back to scratch,
``on`` fails the job when the download fails, ``off`` never downloads) the framework's own source
(`trainer_runtime.weights.default_source`: the Hugging Face hub for timm and transformers, the
Ultralytics release assets); (3) from scratch. The download itself happens in the trainer (see
`trainer_runtime.weights` for why): the server never waits on a network. The plan goes into the
job spec, and a summary of it into ``job.pretrained`` (``{"source", "detail", "pretraining",
"planned": true}``) until the trainer reports what it really got (``"planned": false``, and a
``"warning"`` when a download failed).

`describe_pretrained` / `describe_weights_plan` say it in a sentence (English or Korean) for the
confirmation summary and for "is it pretrained?".

The policy (`tools.services.WeightsPolicy`) comes from the server's settings and travels in the
app's services (`ctx.services.weights`; the spec writer has it in `JobRuntimeConfig.weights`);
without one the defaults apply (the settings' defaults).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tools import catalog, user_weights
from tools.context import ToolContext, require_user
from tools.db.models import Job, User, WeightsEntry
from tools.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from tools.intent import TrainingIntent
from tools.services import WeightsPolicy
from trainer_runtime.storage import DualStorageClient
from trainer_runtime.weights import (
    USER_UPLOAD,
    WeightsError,
    WeightsPlan,
    default_source,
    inspect_weights_file,
    registry_prefix,
    sha256_of,
)

# ------------------------------------------------------------------------------------ registry


def entry_dict(row: WeightsEntry) -> dict[str, Any]:
    """A registry entry as JSON-ready data, as the listings and a registration return it."""
    return {
        "id": row.id,
        "framework": row.framework,
        "model_name": row.model_name,
        "key": row.key,
        "files": list(row.files or []),
        "sha256": row.sha256,
        "size": row.size,
        "source": row.source,
        "detail": row.detail,
        "license": row.license,
        "pretraining": row.pretraining,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }


def find_entry(db: Session, framework: str, model_name: str) -> WeightsEntry | None:
    """The registry entry for `framework`/`model_name`, or None when the model has none."""
    return db.scalar(
        select(WeightsEntry).where(WeightsEntry.framework == framework, WeightsEntry.model_name == model_name)
    )


def list_weights(db: Session) -> list[dict[str, Any]]:
    """Every registry entry, by framework and model."""
    rows = db.scalars(select(WeightsEntry).order_by(WeightsEntry.framework, WeightsEntry.model_name))
    return [entry_dict(r) for r in rows]


def list_weights_for(ctx: ToolContext) -> list[dict[str, Any]]:
    """`list_weights` for a signed-in user (401 otherwise)."""
    require_user(ctx, "the weights registry")
    return list_weights(ctx.db)


def _model_of(model: str, framework: str | None) -> tuple[str, str]:
    try:
        info = catalog.resolve_model(model, framework)
    except InvalidInputError as exc:
        raise InvalidInputError(str(exc.message), detail={"field": "model", **exc.detail}) from exc
    return info.framework, info.name


def _main_file(framework: str, model: str, path: Path) -> str:
    if framework == "ultralytics":
        return f"{model}.pt"
    if path.suffix == ".safetensors":
        return "model.safetensors"
    return "pytorch_model.bin" if framework == "transformers" else "model.pth"


def import_weights(
    db: Session,
    storage: DualStorageClient,
    path: Path,
    *,
    model: str,
    framework: str | None = None,
    pretraining: str = "",
    license: str = "",
    source: str = "import",
    detail: str | None = None,
    config: Path | None = None,
    replace: bool = False,
    created_by: int | None = None,
) -> dict[str, Any]:
    """Add a weights file of a catalog model to the registry (checked without torch: safetensors
    header or PyTorch zip + pickle scan). transformers needs its ``config.json`` (`config`, or a
    folder `path` holding both). An entry that exists is kept unless `replace` (409 otherwise)."""
    framework, model_name = _model_of(model, framework)
    files: list[tuple[str, Path]] = []
    if path.is_dir():
        weights = next((path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()), None)
        if weights is None:
            raise InvalidInputError(
                f"{path}: no model.safetensors or pytorch_model.bin in the folder", detail={"field": "file"}
            )
        if config is None and (path / "config.json").is_file():
            config = path / "config.json"
        path = weights
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file", detail={"field": "file"})
    try:
        info = inspect_weights_file(path)
        if framework == "transformers":
            if config is None:
                raise InvalidInputError(
                    "transformers weights need their config.json (a folder with both, or --config)",
                    detail={"field": "config"},
                )
            inspect_weights_file(config)
            files.append(("config.json", config))
        elif info["format"] == "config":
            raise InvalidInputError(f"{path.name} is a config, not weights", detail={"field": "file"})
    except WeightsError as exc:
        raise InvalidInputError(str(exc), detail={"field": "file", "file": path.name}) from exc
    main = _main_file(framework, model_name, path)
    files.append((main, path))

    existing = find_entry(db, framework, model_name)
    if existing is not None and not replace:
        raise ConflictError(
            f"the registry already has {framework} {model_name} ({existing.detail or existing.source}); "
            "replace it explicitly",
            detail={"framework": framework, "model_name": model_name},
        )
    prefix = registry_prefix(framework, model_name)
    described: list[dict[str, Any]] = []
    for name, p in files:
        got = storage.internal.put_file(prefix + name, p)
        described.append({"name": name, "sha256": sha256_of(p), "size": got.size})
    default = default_source(framework, model_name)
    row = existing or WeightsEntry(framework=framework, model_name=model_name)
    row.key = prefix
    row.files = described
    row.sha256 = described[-1]["sha256"]
    row.size = described[-1]["size"]
    row.source = source[:1024]
    row.detail = (detail or f"{framework} {model_name} ({source})")[:300]
    row.license = license[:200]
    row.pretraining = (pretraining or (default.pretraining if default else ""))[:200]
    row.created_by = created_by
    if existing is None:
        db.add(row)
    db.commit()
    return entry_dict(row)


def upload_weights(
    ctx: ToolContext,
    data: Any,
    filename: str,
    *,
    model: str,
    framework: str | None = None,
    pretraining: str = "",
    license: str = "",
    replace: bool = False,
) -> dict[str, Any]:
    """An administrator's upload (a stream with ``read``) into the registry; 403 for anyone else."""
    user = require_user(ctx, "the weights registry")
    if not user.is_admin:
        raise PermissionDeniedError("only administrators may add weights to the registry")
    suffix = Path(filename or "weights").suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth", ".bin"):
        raise InvalidInputError(
            f"{filename!r}: upload a .safetensors, .pt, .pth or .bin file", detail={"field": "file"}
        )
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename).name)[:200].lstrip(".")
        target = Path(tmp) / (safe if safe.lower().endswith(suffix) else f"upload{suffix}")  # errors name it
        with target.open("wb") as out:
            shutil.copyfileobj(data, out, 1 << 20)
        return import_weights(
            ctx.db,
            ctx.storage,
            target,
            model=model,
            framework=framework,
            pretraining=pretraining,
            license=license,
            source="upload",
            detail=f"{model} ({filename})",
            replace=replace,
            created_by=user.id,
        )


def set_admin(db: Session, email: str, admin: bool = True) -> dict[str, Any]:
    """`vision-agent users promote EMAIL`: make a user an administrator (or not)."""
    user = db.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFoundError(f"no user with email {email!r}", detail={"field": "email"})
    user.is_admin = admin
    db.commit()
    return {"id": user.id, "email": user.email, "is_admin": user.is_admin}


def promote_admin_emails(db: Session, emails: str) -> int:
    """ADMIN_EMAILS (comma-separated): make those users administrators; returns how many changed."""
    wanted = {e.strip().lower() for e in emails.split(",") if e.strip()}
    if not wanted:
        return 0
    changed = 0
    for user in db.scalars(select(User).where(User.email.in_(wanted))):
        if not user.is_admin:
            user.is_admin = True
            changed += 1
    db.commit()
    return changed


# ---------------------------------------------------------------------------------------- plan


def plan_for(
    db: Session, framework: str, model_name: str, policy: WeightsPolicy | None = None, *, registry: bool = True
) -> WeightsPlan:
    """The weights plan of a job: registry entry (unless `registry` is False), else the
    framework's source when downloads are allowed, else scratch (module doc)."""
    policy = policy or WeightsPolicy()
    row = find_entry(db, framework, model_name) if registry else None
    if row is not None:
        return WeightsPlan.model_validate(
            {
                "source": "registry",
                "detail": row.detail,
                "pretraining": row.pretraining or None,
                "registry_key": row.key,
                "files": [{"name": f["name"], "sha256": f.get("sha256"), "size": f.get("size")} for f in row.files],
            }
        )
    src = default_source(framework, model_name, assets_url=policy.ultralytics_assets_url)
    if src is None or policy.download == "off":
        return WeightsPlan(source="scratch", download=policy.download)
    return WeightsPlan.model_validate(
        {
            "source": src.kind,
            "detail": src.detail,
            "pretraining": src.pretraining,
            "files": [{"name": f} for f in src.files],
            "download": policy.download,
            "hub_repo": src.hub_repo,
            "asset_url": src.asset_url,
            "cache_key": registry_prefix(framework, model_name),
            "timeout_s": policy.timeout_s,
            "max_s": policy.max_s,
            "max_bytes": policy.max_bytes,
        }
    )


def planned_field(plan: WeightsPlan) -> dict[str, Any]:
    """What ``job.pretrained`` holds before the trainer reports."""
    return {
        "source": plan.source,
        "detail": plan.detail,
        "pretraining": plan.pretraining,
        "planned": True,
        "download": plan.download if plan.source in ("hub", "ultralytics-assets") else None,
    }


def pretrained_field(job: Job) -> dict[str, Any]:
    """The job API's ``pretrained``: ``{"source", "detail", "pretraining", ...}`` (scratch when unknown)."""
    value = dict(job.pretrained or {})
    init = job.init_from or {}
    if not value and init:
        return {
            "source": "job",
            "detail": f"job {init.get('job_id')}'s {init.get('checkpoint')} ({init.get('model_name')})",
            "pretraining": None,
            "planned": False,
        }
    if not value:
        return {"source": "scratch", "detail": "", "pretraining": None, "planned": False}
    return value


def record_trainer_report(db: Session, job: Job, report: dict[str, Any]) -> None:
    """The trainer's ``weights`` report: what the job really started from, and a download it
    cached in the registry (the row is added when the registry has none for the model yet)."""
    source = report.get("source")
    if source not in ("registry", "hub", "ultralytics-assets", "scratch", USER_UPLOAD):
        return
    before = dict(job.pretrained or {})
    job.pretrained = {
        "source": source,
        "detail": str(report.get("detail") or "")[:300],
        "pretraining": (str(report["pretraining"])[:200] if report.get("pretraining") else None),
        "planned": False,
        **({"warning": str(report["warning"])[:1000]} if report.get("warning") else {}),
    }
    if source == USER_UPLOAD:
        # the user's own file: its name and sha256 as the trainer got it, and which upload it was
        job.pretrained.update(
            file=str(report.get("file") or before.get("file") or "")[:200],
            sha256=str(report.get("sha256") or before.get("sha256") or "")[:64],
            user_weights_id=before.get("user_weights_id"),
        )
    cached = report.get("cached")
    if not isinstance(cached, dict) or source not in ("hub", "ultralytics-assets"):
        return
    prefix = registry_prefix(job.framework, job.model_name)
    files = cached.get("files")
    if cached.get("key") != prefix or not isinstance(files, list) or not files:
        return
    clean: list[dict[str, Any]] = []
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not isinstance(f.get("sha256"), str):
            return
        size = f.get("size")
        clean.append(
            {"name": f["name"][:200], "sha256": f["sha256"][:64], "size": int(size) if isinstance(size, int) else 0}
        )
    if find_entry(db, job.framework, job.model_name) is not None:
        return
    default = default_source(job.framework, job.model_name)
    db.add(
        WeightsEntry(
            framework=job.framework,
            model_name=job.model_name,
            key=prefix,
            files=clean,
            sha256=clean[-1]["sha256"],
            size=clean[-1]["size"],
            source=f"{'hub' if source == 'hub' else 'url'}:{cached.get('source') or ''!s}"[:1024],
            detail=str(report.get("detail") or "")[:300],
            license=default.license if default else "",
            pretraining=str(report.get("pretraining") or "")[:200],
        )
    )


# ----------------------------------------------------------------------------------- sentences

_TEXT = {
    "en": {
        "pretrained": "pretrained on {pretraining} ({detail})",
        "pretrained_plain": "pretrained ({detail})",
        "download": "; downloaded when the job starts, from scratch if that fails",
        "download_on": "; downloaded when the job starts",
        "scratch": (
            "from scratch: no pretrained weights are available here; expect low accuracy on small datasets "
            "(import weights with `vision-agent weights import FILE --model {model}`)"
        ),
        "scratch_warning": "from scratch: {warning}",
        "no_model": "no model chosen yet, so no weights either",
        "user": "from your weights {name} (sha {sha})",
    },
    "ko": {
        "pretrained": "{pretraining} 사전학습 가중치 사용 ({detail})",
        "pretrained_plain": "사전학습 가중치 사용 ({detail})",
        "download": "; 작업 시작 시 내려받으며, 실패하면 처음부터 학습합니다",
        "download_on": "; 작업 시작 시 내려받습니다",
        "scratch": (
            "처음부터 학습: 여기에는 사전학습 가중치가 없습니다. 작은 데이터셋에서는 정확도가 낮을 수 있습니다 "
            "(`vision-agent weights import FILE --model {model}` 으로 가중치를 가져오세요)"
        ),
        "scratch_warning": "처음부터 학습: {warning}",
        "no_model": "아직 모델이 정해지지 않아 가중치도 정해지지 않았습니다",
        "user": "내가 올린 가중치 {name} 사용 (sha {sha})",
    },
}


def describe_pretrained(pretrained: dict[str, Any] | None, model_name: str = "MODEL", lang: str | None = "en") -> str:
    """One sentence for a job's (or preview's) ``pretrained`` field."""
    t = _TEXT["ko" if lang == "ko" else "en"]
    p = pretrained or {}
    source = p.get("source") or "scratch"
    if source == USER_UPLOAD:
        return t["user"].format(name=p.get("file") or p.get("detail") or "?", sha=str(p.get("sha256") or "?")[:12])
    if source == "scratch":
        if p.get("warning"):
            return t["scratch_warning"].format(warning=p["warning"])
        return t["scratch"].format(model=model_name)
    detail = str(p.get("detail") or model_name)
    text = (t["pretrained"] if p.get("pretraining") else t["pretrained_plain"]).format(
        pretraining=p.get("pretraining"), detail=detail
    )
    if p.get("planned") and source in ("hub", "ultralytics-assets"):
        text += t["download_on"] if p.get("download") == "on" else t["download"]
    return text


def describe_weights_plan(ctx: ToolContext, intent: TrainingIntent, lang: str | None = "en") -> str:
    """What a job from `intent` would start from, as one sentence (the model from the intent, or
    the default model of its task)."""
    model = intent.model_name
    framework: str | None = intent.framework
    if model is None and intent.task_type is not None:
        model = catalog.default_model(intent.task_type, framework, strict=False)
    if model is None:
        return _TEXT["ko" if lang == "ko" else "en"]["no_model"]
    resolved_framework, model_name = _model_of(model, framework)
    if intent.init_weights is not None:
        try:
            row = user_weights.resolve_for_job(
                ctx, intent.init_weights, model_name=model_name, framework=resolved_framework
            )
        except (InvalidInputError, NotFoundError) as exc:
            return str(exc.message)
        return describe_pretrained(user_weights.planned_field(row), model_name, lang)
    plan = plan_for(ctx.db, resolved_framework, model_name, ctx.services.weights)
    return describe_pretrained(planned_field(plan), model_name, lang)
