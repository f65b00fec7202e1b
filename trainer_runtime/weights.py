"""Pretrained weights: where they come from, the plan a job spec carries, and fetching them.

Where the download happens: in the trainer, never in the server. The server resolves what it can
answer from its database at once (its weights registry: objects ``weights/{framework}/{name}/{file}``
in the internal store) and writes a `WeightsPlan` into the job spec: the registry entry, or the
framework's own source with the download policy, or nothing (from scratch). The trainer then
fetches: it runs in its own process (a slow or absent network can never block the server), it has
torch to load and check what it fetched, it has the storage credentials to cache a download in
the registry (the server records the registry row from the trainer's ``log`` event carrying
``"weights"``), and in a cluster it is the pod that may have a route out.

Never hang: a download runs in a daemon thread with a deadline (`WeightsPlan.max_s`); every
request has a connect/read timeout (`WeightsPlan.timeout_s`). With ``download`` ``auto`` a failed
or timed-out download means "from scratch" with a warning; with ``on`` it fails the job (the
deployment promised a network); ``off`` never downloads. ``HF_HUB_OFFLINE`` in the trainer's
environment skips the hub; ``HF_ENDPOINT`` picks the hub (a mirror, or a local test server).

Sources (`default_source`): timm and transformers through ``huggingface_hub`` (timm: the hub id of
timm's default pretrained config, e.g. ``timm/resnet18.a1_in1k``, file ``model.safetensors``;
transformers: the model's hub id, files ``config.json`` + ``model.safetensors``), Ultralytics from
its release assets (``{assets_url}/{model}.pt``).

`inspect_weights_file` checks a file's format without torch (the server uses it to accept imports):
safetensors by its JSON header and data size, PyTorch checkpoints by their zip structure and a
scan of the pickle's opcodes (never executed) whose imports must come from known modules.

This module imports neither torch nor huggingface_hub at import time.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickletools
import re
import shutil
import struct
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trainer_runtime.errors import ObjectNotFoundError, TrainerRuntimeError

DOWNLOAD_POLICIES = ("auto", "on", "off")
SOURCES = ("user upload", "registry", "hub", "ultralytics-assets", "scratch")
USER_UPLOAD = "user upload"  # the source of weights a user uploaded for their own jobs (`user_prefix`)
DEFAULT_ULTRALYTICS_ASSETS_URL = "https://github.com/ultralytics/assets/releases/download/v8.3.0"
WEIGHTS_FIELD = "weights"  # the key of a log event that reports the resolved weights
_HEX = re.compile(r"^[0-9a-f]{64}$")


class WeightsError(TrainerRuntimeError):
    """A weights file that is not what it claims to be, or a download that failed."""


# ------------------------------------------------------------------------------ default sources

# timm: catalog name -> (pretrained tag of timm's default config, pretraining). Checked against
# timm's own pretrained configs by the tests (the server cannot import timm: it needs torch).
_TIMM_DEFAULTS: dict[str, tuple[str, str]] = {
    "resnet18": ("a1_in1k", "ImageNet-1k"),
    "resnet34": ("a1_in1k", "ImageNet-1k"),
    "resnet50": ("a1_in1k", "ImageNet-1k"),
    "resnet101": ("a1h_in1k", "ImageNet-1k"),
    "resnet152": ("a1h_in1k", "ImageNet-1k"),
    "efficientnet_b0": ("ra_in1k", "ImageNet-1k"),
    "efficientnet_b1": ("ra4_e3600_r240_in1k", "ImageNet-1k"),
    "efficientnet_b2": ("ra_in1k", "ImageNet-1k"),
    "efficientnet_b3": ("ra2_in1k", "ImageNet-1k"),
    "mobilenetv3_large_100": ("ra_in1k", "ImageNet-1k"),
    "convnext_tiny": ("in12k_ft_in1k", "ImageNet-12k, fine-tuned on ImageNet-1k"),
    "vit_small_patch16_224": ("augreg_in21k_ft_in1k", "ImageNet-21k, fine-tuned on ImageNet-1k"),
    "vit_base_patch16_224": ("augreg2_in21k_ft_in1k", "ImageNet-21k, fine-tuned on ImageNet-1k"),
    "deit_small_patch16_224": ("fb_in1k", "ImageNet-1k"),
}
_TRANSFORMERS_DEFAULTS: dict[str, tuple[str, str]] = {
    "google/vit-base-patch16-224": ("ImageNet-21k, fine-tuned on ImageNet-1k", "apache-2.0"),
    "microsoft/resnet-50": ("ImageNet-1k", "apache-2.0"),
    "facebook/detr-resnet-50": ("COCO", "apache-2.0"),
}


def _ultralytics_pretraining(model: str) -> str:
    if model.endswith("-cls"):
        return "ImageNet-1k"
    if model.endswith("-obb"):
        return "DOTA v1"
    if model.endswith("-pose"):
        return "COCO keypoints"
    return "COCO"


@dataclass(frozen=True)
class DefaultSource:
    """Where a model's pretrained weights come from when the registry has none."""

    kind: Literal["hub", "ultralytics-assets"]
    detail: str  # "timm resnet18.a1_in1k", "transformers google/vit-base-patch16-224", "ultralytics yolo11n.pt"
    pretraining: str
    license: str
    hub_repo: str | None = None
    files: tuple[str, ...] = ()
    asset_url: str | None = None


def default_source(framework: str, model: str, *, assets_url: str | None = None) -> DefaultSource | None:
    """The framework's own source of pretrained weights for a catalog model, or None."""
    if framework == "timm" and model in _TIMM_DEFAULTS:
        tag, pretraining = _TIMM_DEFAULTS[model]
        return DefaultSource(
            "hub",
            f"timm {model}.{tag}",
            pretraining,
            "apache-2.0",
            hub_repo=f"timm/{model}.{tag}",
            files=("model.safetensors",),
        )
    if framework == "transformers" and model in _TRANSFORMERS_DEFAULTS:
        pretraining, lic = _TRANSFORMERS_DEFAULTS[model]
        return DefaultSource(
            "hub", f"transformers {model}", pretraining, lic, hub_repo=model, files=("config.json", "model.safetensors")
        )
    if framework == "ultralytics" and re.fullmatch(r"yolo(v8|11)[nslmx](-seg|-pose|-cls|-obb)?", model):
        base = (assets_url or DEFAULT_ULTRALYTICS_ASSETS_URL).rstrip("/")
        return DefaultSource(
            "ultralytics-assets",
            f"ultralytics {model}.pt",
            _ultralytics_pretraining(model),
            "AGPL-3.0",
            files=(f"{model}.pt",),
            asset_url=f"{base}/{model}.pt",
        )
    return None


def user_prefix(owner_id: int, weights_id: int) -> str:
    """``weights/user/{owner_id}/{weights_id}/``: where a user's own upload lives (internal store)."""
    return f"weights/user/{int(owner_id)}/{int(weights_id)}/"


def registry_prefix(framework: str, model: str) -> str:
    """``weights/{framework}/{name}/`` (a hub id's ``/`` becomes ``__``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model.replace("/", "__"))
    return f"weights/{framework}/{safe}/"


def local_weights_dir() -> Path | None:
    """``$VTA_WEIGHTS_DIR``: a folder of weights the operator placed beside the trainer (the only
    place the trainer reads it); None when unset."""
    root = os.environ.get("VTA_WEIGHTS_DIR")
    return Path(root).expanduser() if root else None


# ---------------------------------------------------------------------------------- the plan


class WeightsFile(BaseModel):
    """One file of a weights plan: its name and, when known, sha256 and size."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    sha256: str | None = None
    size: int | None = Field(default=None, ge=0)


class WeightsPlan(BaseModel):
    """What the server resolved for a job (in its spec): the user's own upload, a registry entry,
    a download, or scratch."""

    model_config = ConfigDict(extra="forbid")
    source: Literal["user upload", "registry", "hub", "ultralytics-assets", "scratch"]
    detail: str = ""
    pretraining: str | None = None
    # registry: ``weights/{framework}/{name}/``; user upload: ``weights/user/{owner}/{id}/``
    registry_key: str | None = None
    files: list[WeightsFile] = Field(default_factory=list)
    download: Literal["auto", "on", "off"] = "off"
    hub_repo: str | None = None
    asset_url: str | None = None
    cache_key: str | None = None  # where a download is cached in the registry
    timeout_s: float = Field(default=5.0, gt=0, le=600)
    max_s: float = Field(default=120.0, gt=0, le=86_400)
    max_bytes: int = Field(default=2 * 1024**3, gt=0)


@dataclass
class ResolvedWeights:
    """What the trainer got: local files (empty for scratch) and what to tell the user."""

    source: str  # user upload | registry | hub | ultralytics-assets | scratch
    detail: str
    pretraining: str | None
    files: dict[str, Path] = field(default_factory=dict)
    cached: dict[str, Any] | None = None  # a download stored in the registry: key, files
    warning: str | None = None
    hashes: dict[str, str] = field(default_factory=dict)  # file name -> the sha256 the plan promised

    @property
    def path(self) -> Path | None:
        """The weights file (``model.safetensors`` or ``{model}.pt``), None for scratch."""
        for name, p in self.files.items():
            if name != "config.json":
                return p
        return None

    @property
    def folder(self) -> Path | None:
        p = self.path
        return p.parent if p is not None else None

    @property
    def sha256(self) -> str | None:
        """The weights file's sha256 when the plan named it (registry, user upload)."""
        return self.hashes.get(self.path.name) if self.path is not None else None

    def event_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "detail": self.detail,
            "pretraining": self.pretraining,
            "cached": self.cached,
            "warning": self.warning,
        }
        if self.source == USER_UPLOAD and self.path is not None:
            out.update(file=self.path.name, sha256=self.sha256)
        return out

    def mlflow_params(self) -> dict[str, Any]:
        return {
            "pretrained_source": self.source,
            "pretrained_detail": self.detail or "none",
            "pretraining": self.pretraining or "none",
        }


def scratch(reason: str | None = None) -> ResolvedWeights:
    """Weights to train from scratch, with `reason` as the warning to show (None: nothing to warn about)."""
    return ResolvedWeights("scratch", "", None, warning=reason)


# -------------------------------------------------------------------------- format inspection

_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
# What a checkpoint's pickle may import (torch.save of state dicts, Ultralytics checkpoints, numpy
# scalars): module prefixes, plus single names of `torch` and `builtins`. Anything else (os.system,
# builtins.eval/getattr, torch.hub, subprocess...) is refused before any file is loaded.
_PICKLE_MODULE_PREFIXES = (
    "collections",
    "torch._utils",
    "torch.nn.modules",
    "torch.nn.parameter",
    "ultralytics.nn",
    "ultralytics.utils",
    "numpy.core.multiarray",
    "numpy._core.multiarray",
    "numpy.dtype",
)
_PICKLE_NAMES = frozenset(
    {
        "_codecs.encode",
        "numpy.dtype",
        "numpy.ndarray",
        "types.SimpleNamespace",
        "argparse.Namespace",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "datetime.datetime",
        "torch.Size",
        "torch.device",
    }
)
_TORCH_NAME = re.compile(r"^torch\.(?:[A-Za-z]*Storage|u?int\d+|float\d*|bfloat16|half|double|bool|long)$")
_PICKLE_BUILTINS = frozenset({"set", "frozenset", "slice", "dict", "list", "tuple", "bytearray", "complex"})


def _import_allowed(imp: str) -> bool:
    module, _, attr = imp.rpartition(".")
    if module in ("builtins", "__builtin__"):
        return attr in _PICKLE_BUILTINS
    if imp in _PICKLE_NAMES or _TORCH_NAME.match(imp):
        return True
    return any(module == p or module.startswith(p + ".") for p in _PICKLE_MODULE_PREFIXES)


def _inspect_safetensors(path: Path, size: int) -> dict[str, Any]:
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path.name}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n <= 1 or n > _SAFETENSORS_MAX_HEADER or 8 + n > size:
            raise WeightsError(f"{path.name}: safetensors header length {n} does not fit a file of {size} bytes")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{path.name}: the safetensors header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise WeightsError(f"{path.name}: the safetensors header is not an object")
    end = 0
    tensors = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
            raise WeightsError(f"{path.name}: tensor {name!r} lacks dtype, shape or data_offsets")
        offsets = entry["data_offsets"]
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise WeightsError(f"{path.name}: tensor {name!r} has bad data_offsets")
        if offsets[0] > offsets[1]:
            raise WeightsError(f"{path.name}: tensor {name!r} has bad data_offsets")
        end = max(end, offsets[1])
        tensors += 1
    if tensors == 0:
        raise WeightsError(f"{path.name}: the safetensors file holds no tensor")
    if 8 + n + end != size:
        raise WeightsError(f"{path.name}: tensor data ends at {8 + n + end} but the file has {size} bytes (truncated?)")
    return {"format": "safetensors", "tensors": tensors}


def _scan_pickle(data: bytes, name: str) -> dict[str, Any]:
    """Walk the pickle's opcodes (nothing runs): the top object must be a dict and every import
    must come from a module a checkpoint uses."""
    first_object: str | None = None
    imports: set[str] = set()
    strings: list[str] = []
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name in ("PROTO", "FRAME"):
                continue
            if first_object is None:
                first_object = op.name
            if op.name == "GLOBAL" and isinstance(arg, str):
                imports.add(arg.replace(" ", "."))
            elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE") and isinstance(arg, str):
                if len(strings) < 4096:
                    strings.append(arg)
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                imports.add(f"{strings[-2]}.{strings[-1]}")
    except Exception as exc:  # pickletools raises ValueError and others on damaged data
        raise WeightsError(f"{name}: the checkpoint's pickle is damaged ({exc})") from exc
    if first_object not in ("EMPTY_DICT", "DICT", "GLOBAL", "STACK_GLOBAL", "SHORT_BINUNICODE", "MARK"):
        raise WeightsError(f"{name}: the checkpoint does not hold a dict of tensors")
    for imp in sorted(imports):
        if not _import_allowed(imp):
            raise WeightsError(f"{name}: the checkpoint imports {imp}, which a weights file never needs")
    return {"format": "pytorch", "imports": len(imports)}


def _inspect_torch_zip(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pkls = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pkls) != 1:
                raise WeightsError(f"{path.name}: a PyTorch checkpoint has one data.pkl; found {len(pkls)}")
            info = zf.getinfo(pkls[0])
            if info.file_size > 512 * 1024 * 1024:
                raise WeightsError(f"{path.name}: data.pkl is {info.file_size} bytes, too large for a checkpoint")
            result = _scan_pickle(zf.read(pkls[0]), path.name)
            result["records"] = sum(1 for n in names if "/data/" in n)
            return result
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"{path.name}: not a PyTorch checkpoint (bad zip: {exc})") from exc


def inspect_weights_file(path: str | Path) -> dict[str, Any]:
    """Check that `path` is a safetensors file, a PyTorch checkpoint (zip format) or a model
    config.json, without torch; returns ``{"format", ...}``; raises `WeightsError` saying why not."""
    p = Path(path)
    size = p.stat().st_size
    if p.name == "config.json":
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{p.name}: not JSON ({exc})") from exc
        if not isinstance(obj, dict) or "model_type" not in obj:
            raise WeightsError(f"{p.name}: a transformers config.json names its model_type")
        return {"format": "config", "model_type": obj["model_type"]}
    with p.open("rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"PK":
        return _inspect_torch_zip(p)
    if size >= 8:
        return _inspect_safetensors(p, size)
    raise WeightsError(f"{p.name}: neither safetensors nor a PyTorch checkpoint")


def sha256_of(path: Path) -> str:
    """The SHA-256 hex digest of the file at `path`, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- fetching


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_download(plan: WeightsPlan, dest: Path, cache_dir: Path) -> dict[str, Path]:
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    assert plan.hub_repo is not None
    endpoint = os.environ.get("HF_ENDPOINT") or None
    out: dict[str, Path] = {}
    for f in plan.files:
        # one metadata request without retries first: hf_hub_download retries an unreachable hub
        # with back-off for about a minute before it gives up
        get_hf_file_metadata(hf_hub_url(plan.hub_repo, f.name, endpoint=endpoint), timeout=plan.timeout_s)
        got = hf_hub_download(
            plan.hub_repo,
            f.name,
            endpoint=endpoint,
            cache_dir=str(cache_dir),
            etag_timeout=plan.timeout_s,
        )
        target = dest / f.name
        shutil.copyfile(got, target)
        if target.stat().st_size > plan.max_bytes:
            raise WeightsError(f"{f.name} is larger than the limit of {plan.max_bytes} bytes")
        out[f.name] = target
    return out


def _url_download(plan: WeightsPlan, dest: Path, deadline: float) -> dict[str, Path]:
    assert plan.asset_url is not None and plan.files
    name = plan.files[0].name
    target = dest / name
    tmp = target.with_suffix(target.suffix + ".part")
    req = urllib.request.Request(plan.asset_url, headers={"User-Agent": "vision-training-agent"})
    with urllib.request.urlopen(req, timeout=plan.timeout_s) as resp, tmp.open("wb") as out:
        total = 0
        while True:
            if time.monotonic() > deadline:
                raise WeightsError(f"{plan.asset_url}: not downloaded within {plan.max_s:g} s")
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > plan.max_bytes:
                raise WeightsError(f"{plan.asset_url} is larger than the limit of {plan.max_bytes} bytes")
            out.write(chunk)
    os.replace(tmp, target)
    return {name: target}


def _with_deadline(fn: Callable[[], dict[str, Path]], seconds: float, what: str) -> dict[str, Path]:
    """Run `fn` in a daemon thread; give up after `seconds` (the thread is abandoned, the process
    never waits for it)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    t = threading.Thread(target=run, name="weights-download", daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise WeightsError(f"{what}: no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return dict(box["value"])


def _fetch_stored(plan: WeightsPlan, storage: Any, dest: Path) -> ResolvedWeights:
    """A registry entry's or a user upload's files from the internal store, checked against their
    sha256."""
    assert plan.registry_key is not None
    files: dict[str, Path] = {}
    hashes: dict[str, str] = {}
    for f in plan.files:
        target = dest / f.name
        try:
            storage.internal.get_file(plan.registry_key + f.name, target)
        except ObjectNotFoundError as exc:
            if plan.source != USER_UPLOAD:
                raise
            raise WeightsError(
                f"your weights file {f.name} ({plan.detail}) is gone from storage: it was deleted after the "
                "job was queued; upload it again"
            ) from exc
        if f.sha256 and sha256_of(target) != f.sha256:
            what = f"your weights file {f.name}" if plan.source == USER_UPLOAD else "registry object"
            raise WeightsError(f"{what} {plan.registry_key}{f.name} does not match its sha256")
        files[f.name] = target
        if f.sha256:
            hashes[f.name] = f.sha256
    return ResolvedWeights(plan.source, plan.detail, plan.pretraining, files, hashes=hashes)


def fetch(
    plan: WeightsPlan | None,
    storage: Any,
    dest: Path,
    *,
    log: Callable[[str, str], None] | None = None,
) -> ResolvedWeights:
    """Resolve a job's plan into local files under `dest` (registry copy, download, or scratch).

    storage: a `DualStorageClient` (registry objects live in its internal store). `log(message,
    level)` receives what happened. A registry entry whose object is gone or whose sha256 does not
    match raises `WeightsError` (the registry is the server's promise); a download that fails is
    scratch with a warning (policy ``auto``) or `WeightsError` (``on``)."""
    say = log or (lambda _m, _l: None)
    if plan is None or plan.source == "scratch":
        return scratch()
    dest.mkdir(parents=True, exist_ok=True)
    if plan.source in ("registry", USER_UPLOAD):
        return _fetch_stored(plan, storage, dest)

    what = plan.hub_repo or plan.asset_url or plan.detail
    if plan.download == "off":
        return scratch(f"downloads are off (WEIGHTS_DOWNLOAD=off): {plan.detail} not fetched")
    if plan.source == "hub" and _env_true("HF_HUB_OFFLINE"):
        reason = f"HF_HUB_OFFLINE is set: {plan.detail} not fetched from the hub"
        if plan.download == "on":
            raise WeightsError(reason)
        return scratch(reason)
    started = time.monotonic()
    deadline = started + plan.max_s
    say(f"fetching pretrained weights {plan.detail} from {what} (at most {plan.max_s:g} s)", "info")
    try:
        if plan.source == "hub":
            got = _with_deadline(lambda: _hub_download(plan, dest, dest / "hf-cache"), plan.max_s, str(what))
        else:
            got = _with_deadline(lambda: _url_download(plan, dest, deadline), plan.max_s, str(what))
        for name, p in got.items():
            inspect_weights_file(p)
            del name
    except Exception as exc:  # network, HTTP, timeouts, a bad file: the policy decides
        reason = f"pretrained weights {plan.detail} could not be fetched from {what}: {type(exc).__name__}: {exc}"
        if plan.download == "on":
            raise WeightsError(reason) from exc
        return scratch(reason)
    resolved = ResolvedWeights(plan.source, plan.detail, plan.pretraining, got)
    say(f"fetched {plan.detail} in {time.monotonic() - started:.1f} s", "info")
    if plan.cache_key:
        cached_files = []
        for name, p in got.items():
            info = storage.internal.put_file(plan.cache_key + name, p)
            cached_files.append({"name": name, "sha256": sha256_of(p), "size": info.size})
        resolved.cached = {"key": plan.cache_key, "files": cached_files, "source": what}
    return resolved
