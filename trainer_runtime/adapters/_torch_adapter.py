"""`TorchAdapter`: what the torch-based adapters (timm, transformers) share on top of `Adapter`.

A subclass declares its catalog, schema, presets, `aliases`, `canonical_names`, `optimizers` and
`schedulers` (how the canonical advanced_config keys read in its schema), and implements
`make_loop` (its `EpochLoop` for a task) and `model_from_checkpoint`; config resolution
(`_torch_config.resolve_layered`), the spec checks, `train()` and `build_model_from_checkpoint`
are here. Importable without torch. Contracts: docs/architecture.md.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from trainer_runtime.adapters import _torch_config as config
from trainer_runtime.adapters.base import Adapter, ConfigError, TrainContext, TrainResult, check_image_size

if TYPE_CHECKING:
    from trainer_runtime.adapters._torch_loop import EpochLoop
    from trainer_runtime.spec import JobSpec

# checkpoint entries that are training state, not metadata
_STATE_KEYS = ("model", "optimizer", "scheduler", "scaler", "ema", "rng")


class TorchAdapter(Adapter):
    """Config resolution, spec checks, training and checkpoint loading shared by timm and transformers."""

    aliases: ClassVar[Mapping[str, str]] = {}  # hyper-parameter names -> schema names (learning_rate -> lr)
    # canonical advanced_config key -> this framework's schema name (a key not listed keeps its name:
    # weight_decay, momentum, warmup_epochs, patience)
    canonical_names: ClassVar[Mapping[str, str]] = {}
    optimizers: ClassVar[Mapping[str, str]] = {}  # canonical optimizer name -> the framework's
    schedulers: ClassVar[Mapping[str, str]] = {}  # canonical scheduler name -> the framework's

    @classmethod
    def map_canonical(cls, key: str, value: Any) -> dict[str, Any]:
        """One canonical advanced_config key -> schema values (ConfigError for what the framework cannot use)."""
        name = cls.canonical_names.get(key, key)
        if key == "optimizer":
            return {name: config.choice_value(key, value, cls.optimizers)}
        if key == "scheduler":
            return {name: config.choice_value(key, value, cls.schedulers)}
        if key == "mixup":
            return {"mixup_alpha": config.alpha_value(key, value, 0.8)}
        if key == "cutmix":
            return {"cutmix_alpha": config.alpha_value(key, value, 1.0)}
        if key in ("mosaic", "copy_paste"):
            return config.reject_detection_aug(key, value, cls.framework)
        return {name: value}

    @classmethod
    def extra_model_ok(cls, _name: str) -> bool:
        """A model outside the catalog this adapter can still build (e.g. local weights)."""
        return False

    @classmethod
    def resolve_config(
        cls, preset: str | None, advanced_config: dict[str, Any], hyperparameters: dict[str, Any]
    ) -> dict[str, Any]:
        return config.resolve_layered(
            cls.schema,
            cls.preset_values,
            cls.map_canonical,
            preset,
            advanced_config,
            hyperparameters,
            aliases=cls.aliases,
        )

    @classmethod
    def validate_spec(cls, spec: JobSpec, dataset_summary: dict[str, Any]) -> None:
        cls.check_framework(spec)
        config.check_common_spec(
            spec,
            dataset_summary,
            framework=cls.framework,
            known_models={m.name: m.task_type for m in cls.catalog},
            extra_model_ok=cls.extra_model_ok,
        )
        check_image_size(spec, cls.models())

    @abc.abstractmethod
    def make_loop(self, ctx: TrainContext) -> EpochLoop:
        """The epoch loop that trains `ctx.spec.task_type` (one of `tasks`)."""

    def train(self) -> TrainResult:
        from trainer_runtime.adapters._torch_loop import prepare_offline_env

        prepare_offline_env()
        task = self.ctx.spec.task_type
        if task not in self.tasks:
            raise ConfigError(f"{self.framework} here trains {', '.join(self.tasks)}, not {task}")
        return self.make_loop(self.ctx).run()

    @classmethod
    @abc.abstractmethod
    def model_from_checkpoint(cls, ckpt: Mapping[str, Any]) -> Any:
        """A fresh model of the architecture `ckpt` (one of our checkpoints) was trained with."""

    @classmethod
    def build_model_from_checkpoint(cls, path: Any) -> tuple[Any, dict[str, Any]]:
        from trainer_runtime.adapters._torch_checkpoints import load_checkpoint
        from trainer_runtime.adapters._torch_loop import prepare_offline_env

        prepare_offline_env()
        ckpt = load_checkpoint(path)
        model = cls.model_from_checkpoint(ckpt)
        model.load_state_dict(ckpt["model"])
        model.eval()
        return model, {k: v for k, v in ckpt.items() if k not in _STATE_KEYS}
