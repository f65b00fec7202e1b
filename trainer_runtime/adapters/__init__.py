"""Framework adapters: Ultralytics, timm, transformers behind one `Adapter` interface.

`get_adapter(framework)` imports the framework lazily, so this package can be imported (for the
config schemas, presets and model catalog) without torch installed.
"""

from __future__ import annotations

from trainer_runtime.adapters.base import Adapter, ConfigField, ModelInfo, TrainContext, TrainResult

__all__ = ["Adapter", "ConfigField", "ModelInfo", "TrainContext", "TrainResult", "get_adapter"]


def get_adapter(framework: str) -> type[Adapter]:
    """Return the adapter class for `framework` (ultralytics, timm, transformers)."""
    if framework == "ultralytics":
        from trainer_runtime.adapters.ultralytics_adapter import UltralyticsAdapter

        return UltralyticsAdapter
    if framework == "timm":
        from trainer_runtime.adapters.timm_adapter import TimmAdapter

        return TimmAdapter
    if framework == "transformers":
        from trainer_runtime.adapters.transformers_adapter import TransformersAdapter

        return TransformersAdapter
    raise ValueError(f"unknown framework {framework!r}; expected ultralytics, timm or transformers")
