"""Fine-tuning: initialise a freshly built model from an earlier job's checkpoint.

The runner downloads the checkpoint named by ``spec.init_from`` (its key in the internal store)
to ``ctx.init_weights``; the adapters call `init_torch_model` (timm, transformers: our own
checkpoint format) right after building their model. Every tensor whose name and shape match is
copied; the rest (the classifier head when the class count differs) keeps its fresh
initialisation. This is initialisation only: a fresh optimizer and scheduler, epoch 0 (resume is
another thing: it continues a job from its own last.pt). The counts go to the job log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trainer_runtime.adapters.base import ConfigError, TrainContext


def init_source(ctx: TrainContext) -> Path | None:
    """The checkpoint to initialise from, or None (no fine-tuning, or a resume)."""
    if ctx.init_weights is None or ctx.resume_from is not None:
        return None
    return Path(ctx.init_weights)


def describe(ctx: TrainContext) -> str:
    """What the initial weights came from, for log and error messages: "job <id>'s <checkpoint>", or the
    local weights path."""
    init = ctx.spec.init_from
    if init is None:
        return f"{ctx.init_weights}"
    return f"job {init.job_id}'s {init.checkpoint}"


def report(ctx: TrainContext, loaded: int, skipped: list[str], total: int, log: Callable[[str], None]) -> None:
    """Log the transfer: tensors loaded and skipped (with the first names skipped)."""
    if loaded == 0:
        raise ConfigError(f"no tensor of {describe(ctx)} fits {ctx.spec.model_name}: it is not the same architecture")
    names = ", ".join(skipped[:6]) + (", ..." if len(skipped) > 6 else "")
    log(
        f"initialised from {describe(ctx)}: {loaded} of {total} tensors loaded, {len(skipped)} skipped"
        + (f" (rebuilt: {names})" if skipped else "")
        + "; fresh optimizer, starting at epoch 1"
    )


def state_of(ckpt: Mapping[str, Any], path: Path) -> Mapping[str, Any]:
    """The model state dict stored under "model" in checkpoint `ckpt`; ConfigError naming `path` when there
    is none."""
    state = ckpt.get("model")
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path} holds no model weights to start from")
    return state


_HEAD_ATTRS = ("classifier", "class_labels_classifier")


def head_keys(model: Any) -> set[str]:
    """State-dict names of the classifier head: timm's `get_classifier()`, else the transformers
    heads (`classifier`, DETR's `class_labels_classifier`)."""
    heads: list[Any] = []
    if hasattr(model, "get_classifier"):
        heads.append(model.get_classifier())
    else:
        heads += [getattr(model, a) for a in _HEAD_ATTRS if getattr(model, a, None) is not None]
    ids = {id(h) for h in heads}
    prefixes = [name for name, module in model.named_modules() if id(module) in ids and name]
    return {k for k in model.state_dict() if any(k == p or k.startswith(p + ".") for p in prefixes)}


def init_torch_model(ctx: TrainContext, model: Any, log: Callable[[str], None], class_names: list[str]) -> bool:
    """Load ``ctx.init_weights`` (one of our best.pt / last.pt) into `model` (timm, transformers).
    The head is rebuilt when the classes differ from the checkpoint's (by shape, or by name and
    order for the same count); every other matching tensor is loaded. Returns whether weights were
    loaded."""
    path = init_source(ctx)
    if path is None:
        return False
    from trainer_runtime.adapters import _torch_checkpoints as common

    ckpt = common.load_checkpoint(path)
    init = ctx.spec.init_from
    if init is not None and (ckpt.get("framework"), ckpt.get("model_name")) != (init.framework, init.model_name):
        raise ConfigError(
            f"{describe(ctx)} holds {ckpt.get('framework')} {ckpt.get('model_name')}, "
            f"not {init.framework} {init.model_name}"
        )
    state = dict(state_of(ckpt, path))
    same_classes = list(ckpt.get("class_names") or []) == list(class_names)
    rebuilt = set() if same_classes else head_keys(model)
    loaded, skipped = common.load_partial_state(model, {k: v for k, v in state.items() if k not in rebuilt})
    skipped = sorted({*skipped, *(k for k in state if k in rebuilt)})
    report(ctx, loaded, skipped, len(model.state_dict()), log)
    return True
