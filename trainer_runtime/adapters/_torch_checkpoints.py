"""Checkpoints of the torch-based adapters (timm, transformers): write, read, RNG state, weights files.

Format (``format: "vta-torch-v1"``). last.pt: ``model`` (state dict), ``optimizer``,
``scheduler``, ``scaler``, ``ema``, ``epoch`` (last completed epoch), ``epochs``, ``best_metric``,
``best_epoch``, ``metric_name``, ``bad_epochs`` (patience counter), ``updates`` (optimizer steps),
``metrics`` (of ``epoch``), ``rng``, ``partial_epoch`` (the epoch interrupted mid-way, else None)
and the metadata below.
best.pt: ``model`` (the weights that were validated: EMA weights when EMA is on), ``epoch``,
``metrics`` and the metadata: ``framework``, ``task_type``, ``model_name``, ``class_names``,
``config``, ``image_size`` plus adapter extras (e.g. ``hf_config``). Everything is tensors and
plain Python values: `atomic_save` (tmp file + fsync + os.replace), `load_checkpoint`
(``torch.load(weights_only=True)``); `get_rng_state` / `set_rng_state` (python, numpy, torch, cuda;
stored as plain lists). Local weights files (`find_local_weights` in ``$VTA_WEIGHTS_DIR``) load
non-strictly (`load_partial_state`).

torch is imported inside the functions that use it. Contracts: docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer_runtime.adapters.base import (
    ConfigError,
)
from trainer_runtime.weights import local_weights_dir

if TYPE_CHECKING:
    import torch


CHECKPOINT_FORMAT = "vta-torch-v1"


def get_rng_state() -> dict[str, Any]:
    import torch

    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)
    py_state = random.getstate()
    state: dict[str, Any] = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [
            str(np_state[0]),
            [int(v) for v in np_state[1]],
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any] | None) -> None:
    import torch

    if not state:
        return
    with contextlib.suppress(KeyError, TypeError, ValueError):
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    with contextlib.suppress(KeyError, TypeError, ValueError):
        n = state["numpy"]
        np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"]).cpu())
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, ValueError):
            torch.cuda.set_rng_state_all([torch.as_tensor(s).cpu() for s in state["cuda"]])


def atomic_save(obj: Any, path: Path) -> Path:
    """torch.save to a temporary sibling, fsync, then os.replace: a reader never sees half a file."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load one of our checkpoints (tensors and plain values only: ``weights_only=True``)."""
    import torch

    try:
        ckpt = torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise ConfigError(f"checkpoint not found: {path}") from exc
    except Exception as exc:
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is not a checkpoint of this trainer (format {CHECKPOINT_FORMAT})")
    return ckpt


def find_local_weights(
    model_name: str, suffixes: Iterable[str] = (".safetensors", ".pth", ".pt", ".bin")
) -> Path | None:
    """``$VTA_WEIGHTS_DIR/<name><suffix>`` (a hub id's ``/`` becomes ``__``) when it exists."""
    root = local_weights_dir()
    if root is None:
        return None
    stem = model_name.replace("/", "__")
    for suffix in suffixes:
        p = root / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def read_weights_file(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                return dict(obj[key])
    if not isinstance(obj, dict):
        raise ConfigError(f"{path} holds no state dict")
    return dict(obj)


def load_partial_state(model: torch.nn.Module, state: Mapping[str, Any]) -> tuple[int, list[str]]:
    """Copy the tensors whose names and shapes match (a classifier for another class count is
    skipped). Returns (tensors loaded, names skipped)."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    skipped = sorted(k for k in state if k not in usable)
    model.load_state_dict(usable, strict=False)
    return len(usable), skipped
