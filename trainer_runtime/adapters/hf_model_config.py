"""The allow-list of ``model_config`` (transformers models): which config fields a user may override,
with their types and ranges.

``model_config`` reaches the model's config (``ViTConfig``, ``ResNetConfig``, ``DetrConfig``) and,
for local weights, ``from_pretrained(**overrides)``, where any keyword is taken: loader options
such as ``trust_remote_code`` (run code shipped with a model folder), ``revision``, ``cache_dir``,
``use_pretrained_backbone`` (a download), or absurd sizes that exhaust the machine. So only the
architecture fields below are accepted, each checked; anything else is a `ConfigError` naming the
key (a 422 at job creation; the trainer checks again before it builds the model).

Families (by model, else by the ``model_type`` of a local weights folder's config.json, else DETR
for detection):

* ``vit``: hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act,
  hidden_dropout_prob, attention_probs_dropout_prob, initializer_range, layer_norm_eps,
  patch_size, qkv_bias, encoder_stride (hidden_size must divide by num_attention_heads);
* ``resnet``: embedding_size, hidden_sizes, depths, layer_type, hidden_act,
  downsample_in_first_stage, downsample_in_bottleneck (hidden_sizes and depths of equal length);
* ``detr``: num_queries, d_model, encoder_layers, decoder_layers, encoder_attention_heads,
  decoder_attention_heads, encoder_ffn_dim, decoder_ffn_dim, dropout, attention_dropout,
  activation_dropout, activation_function, init_std, init_xavier_std, encoder_layerdrop,
  decoder_layerdrop, auxiliary_loss, position_embedding_type, dilation, the matcher costs and loss
  coefficients (d_model must divide by the attention heads).

The image size is not a ``model_config`` field: it is the job's ``image_size`` (limited per model).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_runtime.adapters.base import ConfigError
from trainer_runtime.formats.schema import OBJECT_DETECTION

MAX_KEYS = 32


@dataclass(frozen=True)
class Field:
    """The type and allowed range (or choices, or list length) of one `model_config` field."""

    kind: str  # int | float | bool | choice | int_list
    lo: float | None = None
    hi: float | None = None
    options: tuple[str, ...] = ()
    max_len: int = 8

    def describe(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(self.options)
        if self.kind == "int_list":
            return f"a list of 1..{self.max_len} whole numbers in {self.lo:g}..{self.hi:g}"
        what = "a whole number" if self.kind == "int" else "a number"
        return f"{what} in {self.lo:g}..{self.hi:g}"


def _i(lo: int, hi: int) -> Field:
    return Field("int", lo, hi)


def _f(lo: float, hi: float) -> Field:
    return Field("float", lo, hi)


_BOOL = Field("bool")
_PROB = _f(0.0, 1.0)
_ACT = Field("choice", options=("gelu", "relu", "silu", "gelu_new"))

FAMILIES: dict[str, dict[str, Field]] = {
    "vit": {
        "hidden_size": _i(8, 4096),
        "num_hidden_layers": _i(1, 48),
        "num_attention_heads": _i(1, 64),
        "intermediate_size": _i(8, 16384),
        "hidden_act": _ACT,
        "hidden_dropout_prob": _PROB,
        "attention_probs_dropout_prob": _PROB,
        "initializer_range": _f(0.0, 1.0),
        "layer_norm_eps": _f(1e-12, 1e-2),
        "patch_size": _i(1, 64),
        "qkv_bias": _BOOL,
        "encoder_stride": _i(1, 64),
    },
    "resnet": {
        "embedding_size": _i(8, 1024),
        "hidden_sizes": Field("int_list", 8, 4096),
        "depths": Field("int_list", 1, 64),
        "layer_type": Field("choice", options=("basic", "bottleneck")),
        "hidden_act": Field("choice", options=("relu", "gelu", "silu")),
        "downsample_in_first_stage": _BOOL,
        "downsample_in_bottleneck": _BOOL,
    },
    "detr": {
        "num_queries": _i(1, 1000),
        "d_model": _i(8, 4096),
        "encoder_layers": _i(1, 48),
        "decoder_layers": _i(1, 48),
        "encoder_attention_heads": _i(1, 64),
        "decoder_attention_heads": _i(1, 64),
        "encoder_ffn_dim": _i(8, 16384),
        "decoder_ffn_dim": _i(8, 16384),
        "dropout": _PROB,
        "attention_dropout": _PROB,
        "activation_dropout": _PROB,
        "activation_function": Field("choice", options=("relu", "gelu", "silu")),
        "init_std": _f(0.0, 1.0),
        "init_xavier_std": _f(0.0, 10.0),
        "encoder_layerdrop": _PROB,
        "decoder_layerdrop": _PROB,
        "auxiliary_loss": _BOOL,
        "position_embedding_type": Field("choice", options=("sine", "learned")),
        "dilation": _BOOL,
        "class_cost": _f(0.0, 100.0),
        "bbox_cost": _f(0.0, 100.0),
        "giou_cost": _f(0.0, 100.0),
        "mask_loss_coefficient": _f(0.0, 100.0),
        "dice_loss_coefficient": _f(0.0, 100.0),
        "bbox_loss_coefficient": _f(0.0, 100.0),
        "giou_loss_coefficient": _f(0.0, 100.0),
        "eos_coefficient": _PROB,
    },
}
ALL_FIELDS: dict[str, Field] = {k: f for fields in FAMILIES.values() for k, f in fields.items()}
MODEL_FAMILIES = {
    "google/vit-base-patch16-224": "vit",
    "microsoft/resnet-50": "resnet",
    "facebook/detr-resnet-50": "detr",
}
# (defaults of the architectures, for the divisibility checks)
_VIT_DEFAULTS = {"hidden_size": 768, "num_attention_heads": 12}
_DETR_DEFAULTS = {"d_model": 256, "encoder_attention_heads": 8, "decoder_attention_heads": 8}
_RESNET_DEFAULTS: dict[str, Any] = {"hidden_sizes": [256, 512, 1024, 2048], "depths": [3, 4, 6, 3]}


def family_of(model_name: str, task: str, local_dir: Path | None = None) -> str | None:
    """The allow-list that applies to `model_name` (None: overrides are not supported for it)."""
    if model_name in MODEL_FAMILIES:
        return MODEL_FAMILIES[model_name]
    if local_dir is not None:
        try:
            model_type = json.loads((local_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):
            model_type = None
        if model_type in FAMILIES:
            return str(model_type)
    return "detr" if task == OBJECT_DETECTION else None


def _value(key: str, f: Field, value: Any) -> Any:
    bad = ConfigError(f"model_config key {key!r} must be {f.describe()}, got {value!r}")
    if f.kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if f.kind == "choice":
        if not isinstance(value, str) or value not in f.options:
            raise bad
        return value
    if f.kind == "int_list":
        if not isinstance(value, list | tuple) or not 1 <= len(value) <= f.max_len:
            raise bad
        return [_value(key, Field("int", f.lo, f.hi), v) for v in value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad
    if f.kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise bad
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise bad
    assert f.lo is not None and f.hi is not None
    if not f.lo <= value <= f.hi:
        raise bad
    return value


def check_model_config(value: Any, family: str | None = None, model_name: str | None = None) -> dict[str, Any]:
    """The checked copy of a ``model_config`` (see the module doc); ConfigError naming the key.

    family: the allow-list of one architecture (`family_of`); None checks against every family's
    fields (the model is not known yet), which still refuses loader options and bad values."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"model_config must be an object of settings, got {value!r}")
    if len(value) > MAX_KEYS:
        raise ConfigError(f"model_config has {len(value)} keys; at most {MAX_KEYS} are accepted")
    allowed = FAMILIES[family] if family is not None else ALL_FIELDS
    who = f" for {model_name}" if model_name else ""
    out: dict[str, Any] = {}
    for key, v in value.items():
        if not isinstance(key, str) or key not in allowed:
            raise ConfigError(
                f"model_config key {key!r} is not allowed{who}; allowed keys: {', '.join(sorted(allowed))}"
            )
        out[key] = _value(key, allowed[key], v)
    if family == "vit":
        merged = {**_VIT_DEFAULTS, **out}
        if merged["hidden_size"] % merged["num_attention_heads"]:
            raise ConfigError(
                f"model_config: hidden_size {merged['hidden_size']} must be a multiple of num_attention_heads "
                f"{merged['num_attention_heads']}"
            )
    if family == "detr":
        merged = {**_DETR_DEFAULTS, **out}
        for heads in ("encoder_attention_heads", "decoder_attention_heads"):
            if merged["d_model"] % merged[heads]:
                raise ConfigError(
                    f"model_config: d_model {merged['d_model']} must be a multiple of {heads} {merged[heads]}"
                )
    if family == "resnet":
        merged = {**_RESNET_DEFAULTS, **out}
        if len(merged["hidden_sizes"]) != len(merged["depths"]):
            raise ConfigError(
                f"model_config: hidden_sizes ({len(merged['hidden_sizes'])} stages) and depths "
                f"({len(merged['depths'])} stages) must have the same length"
            )
    return out
