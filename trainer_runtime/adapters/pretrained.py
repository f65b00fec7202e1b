"""Loading pretrained weights (`TrainContext.pretrained`) into a freshly built model.

timm: the state dict of ``model.safetensors`` (or a ``.pth``) goes into the model built for the
dataset's classes; the classifier named by the model's pretrained config (``fc``, ``head``,
``head.fc``, ``classifier``) is always left to its fresh initialisation (other classes, other
meaning), a ViT position embedding for another image size is resampled; every other tensor must
match by name and shape. transformers: ``from_pretrained(folder, ignore_mismatched_sizes=True)``
with the dataset's labels (the classifier is rebuilt). Ultralytics: ``YOLO(path)`` and its trainer
copies every tensor whose name and shape match into the model built for the dataset's classes.
Each reports "N of M tensors loaded, K skipped" in a log event. A file none of whose tensors fits
the model (another architecture: a user's upload for the wrong model) fails the job with
`ConfigError` naming the file (`no_tensor_fits`), never a silent run from scratch.

Backbone options (advanced config): timm and transformers classification ``freeze_backbone`` (only
the classifier trains) and ``backbone_lr_mult`` (the backbone's learning rate is the base rate
times this), `backbone_params`; Ultralytics has its own ``freeze`` (the first N layers), and the
canonical ``freeze_backbone`` sets it to the backbone's 10 layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from trainer_runtime.adapters.base import ConfigError
from trainer_runtime.weights import USER_UPLOAD, ResolvedWeights


def _names(skipped: list[str]) -> str:
    return ", ".join(skipped[:6]) + (", ..." if len(skipped) > 6 else "")


def describe(weights: ResolvedWeights) -> str:
    """The pretrained weights as log messages name them: the upload, else the pretraining data, detail and
    source."""
    if weights.source == USER_UPLOAD:
        return f"{weights.detail} (user upload)"
    pre = f" on {weights.pretraining}" if weights.pretraining else ""
    return f"pretrained{pre} ({weights.detail}, {weights.source})"


def no_tensor_fits(weights: ResolvedWeights, model_name: str, tensors: int) -> ConfigError:
    """The failure when not one tensor of the weights file fits the model."""
    name = weights.path.name if weights.path is not None else weights.detail
    whose = "your weights file" if weights.source == USER_UPLOAD else "the weights file"
    return ConfigError(
        f"{whose} {name} ({weights.detail}) does not fit {model_name}: none of its {tensors} tensors matches "
        "the model's by name and shape (weights of another architecture?); upload weights of this model"
    )


def timm_classifier_prefixes(model: Any) -> tuple[str, ...]:
    """The state-dict prefixes of a timm model's classifier head, from its `pretrained_cfg` (empty when it
    names none)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    classifier = cfg.get("classifier") if isinstance(cfg, Mapping) else None
    if isinstance(classifier, str):
        return (classifier,)
    if isinstance(classifier, list | tuple):
        return tuple(str(c) for c in classifier)
    return ()


def load_timm(model: Any, weights: ResolvedWeights, log: Callable[[str], None]) -> tuple[int, list[str]]:
    """Load `weights.path` into a timm `model` except its classifier; returns (loaded, skipped)."""
    from trainer_runtime.adapters import _torch_checkpoints as common

    assert weights.path is not None
    state = common.read_weights_file(weights.path)
    heads = timm_classifier_prefixes(model)
    own = model.state_dict()
    pos = state.get("pos_embed")
    if pos is not None and "pos_embed" in own and tuple(pos.shape) != tuple(own["pos_embed"].shape):
        from timm.layers import resample_abs_pos_embed

        grid = model.patch_embed.grid_size
        prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 1))
        state = dict(state)
        state["pos_embed"] = resample_abs_pos_embed(pos, new_size=list(grid), num_prefix_tokens=prefix)
        log(f"position embedding resampled to a {grid[0]}x{grid[1]} grid")
    body = {k: v for k, v in state.items() if not any(k == h or k.startswith(h + ".") for h in heads)}
    loaded, skipped = common.load_partial_state(model, body)
    if loaded == 0:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        arch = cfg.get("architecture") if isinstance(cfg, Mapping) else None
        raise no_tensor_fits(weights, str(arch or type(model).__name__), len(state))
    replaced = sorted(k for k in state if k not in body)
    log(
        f"{describe(weights)}: {loaded} of {len(own)} tensors loaded, {len(skipped)} skipped"
        + (f" ({_names(skipped)})" if skipped else "")
        + (f"; classifier {_names(replaced)} replaced for this dataset's classes" if replaced else "")
    )
    return loaded, skipped + replaced


def report_transformers(
    info: Mapping[str, Any], model: Any, weights: ResolvedWeights, log: Callable[[str], None]
) -> None:
    """Log what ``from_pretrained(..., output_loading_info=True)`` loaded."""
    total = len(model.state_dict())
    missing = list(info.get("missing_keys") or [])
    mismatched = [str(m[0]) if isinstance(m, tuple | list) else str(m) for m in info.get("mismatched_keys") or []]
    unexpected = list(info.get("unexpected_keys") or [])
    fresh = sorted(set(missing) | set(mismatched))
    if total - len(fresh) <= 0:
        raise no_tensor_fits(weights, type(model).__name__, len(unexpected) + len(mismatched))
    log(
        f"{describe(weights)}: {total - len(fresh)} of {total} tensors loaded, {len(fresh) + len(unexpected)} skipped"
        + (f"; rebuilt for this dataset: {_names(fresh)}" if fresh else "")
    )


def check_ultralytics_architecture(model: Any, model_name: str, task: str, weights: ResolvedWeights) -> None:
    """A user's Ultralytics checkpoint must hold the requested model: Ultralytics would otherwise
    train the checkpoint's own architecture (it builds the model from the checkpoint's yaml).
    Compares the layers (backbone, head) and the scale with ``{model_name}.yaml``."""
    from ultralytics import YOLO

    want = dict(getattr(YOLO(f"{model_name}.yaml", task=task).model, "yaml", None) or {})
    got = dict(getattr(model.model, "yaml", None) or {})
    if any(got.get(k) != want.get(k) for k in ("backbone", "head", "scale")):
        name = weights.path.name if weights.path is not None else weights.detail
        holds = str(got.get("yaml_file") or "another architecture").removesuffix(".yaml")
        raise ConfigError(
            f"your weights file {name} ({weights.detail}) holds {holds}, not {model_name}: "
            "upload weights of this model, or train the model they were saved from"
        )


def ultralytics_reporter(weights: ResolvedWeights, log: Callable[[str], None]) -> Callable[[Any], None]:
    """An ``on_pretrain_routine_end`` callback: count the tensors of the pretrained file that the
    model Ultralytics built for this dataset holds bit for bit."""

    def report(trainer: Any) -> None:
        import torch

        assert weights.path is not None
        ckpt = torch.load(weights.path, map_location="cpu", weights_only=False)
        src_model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
        src = src_model.float().state_dict() if src_model is not None else {}
        dst = trainer.model.state_dict()
        loaded = sum(
            1
            for k, v in dst.items()
            if k in src and tuple(src[k].shape) == tuple(v.shape) and torch.equal(src[k].to(v.dtype), v.cpu())
        )
        skipped = sorted(k for k in src if k not in dst or tuple(dst[k].shape) != tuple(src[k].shape))
        if loaded == 0:
            raise no_tensor_fits(weights, type(trainer.model).__name__, len(src))
        log(
            f"{describe(weights)}: {loaded} of {len(dst)} tensors loaded, {len(skipped)} skipped"
            + (f" (head for this dataset's classes: {_names(skipped)})" if skipped else "")
        )

    return report


# ------------------------------------------------------------------------------ backbone options

FREEZE_FIELD_HELP = "train only the classifier: the pretrained backbone stays as it is"
LR_MULT_HELP = "the backbone's learning rate is the base rate times this (the classifier keeps the base rate)"
ULTRALYTICS_BACKBONE_LAYERS = 10  # YOLOv8 / YOLO11: layers 0-9 are the backbone


def is_head(name: str, heads: tuple[str, ...]) -> bool:
    """True when parameter `name` belongs to one of the `heads` (is one of them or lies under one)."""
    return any(name == h or name.startswith(h + ".") for h in heads)


def backbone_params(
    model: Any,
    heads: tuple[str, ...],
    *,
    freeze: bool,
    lr_mult: float,
    lr: float,
    log: Callable[[str], None],
) -> Any:
    """Apply ``freeze_backbone`` / ``backbone_lr_mult`` to `model` (parameters outside `heads`
    are the backbone). Returns what the optimizer gets: the model itself when nothing changes
    (or when frozen: frozen parameters do not need a gradient and are left out), else two
    parameter groups with their own learning rates."""
    named = list(model.named_parameters())
    head = [p for n, p in named if is_head(n, heads)]
    body = [p for n, p in named if not is_head(n, heads)]
    if not head:
        log(f"no classifier named {', '.join(heads) or '?'} in the model: backbone options ignored")
        return model
    if freeze:
        for p in body:
            p.requires_grad_(False)
        log(f"backbone frozen: {len(head)} of {len(named)} parameter tensors train (the classifier)")
        return [p for p in head]
    if lr_mult != 1.0:
        log(f"backbone learning rate {lr * lr_mult:g} (x{lr_mult:g}), classifier {lr:g}")
        return [{"params": body, "lr": lr * lr_mult}, {"params": head, "lr": lr}]
    return model
