"""Framework adapters: Ultralytics, timm, transformers behind one `Adapter` interface (docs/architecture.md).

`ADAPTERS` is the registry: framework name -> where its adapter class lives. `get_adapter(framework)`
imports that module only when asked, and an adapter module imports its framework only inside the
methods that train, so this package can be imported (for the config schemas, presets and model
catalog) without torch installed.
"""

from __future__ import annotations

import importlib

from trainer_runtime.adapters.base import Adapter, ConfigField, ModelInfo, TrainContext, TrainResult
from trainer_runtime.spec import FRAMEWORKS, TIMM, TRANSFORMERS, ULTRALYTICS

__all__ = ["ADAPTERS", "Adapter", "ConfigField", "ModelInfo", "TrainContext", "TrainResult", "get_adapter"]

# framework -> (module, class name); one entry per name in `trainer_runtime.spec.FRAMEWORKS`
ADAPTERS: dict[str, tuple[str, str]] = {
    ULTRALYTICS: ("trainer_runtime.adapters.ultralytics_adapter", "UltralyticsAdapter"),
    TIMM: ("trainer_runtime.adapters.timm_adapter", "TimmAdapter"),
    TRANSFORMERS: ("trainer_runtime.adapters.transformers_adapter", "TransformersAdapter"),
}
assert set(ADAPTERS) == set(FRAMEWORKS), "every framework of the job spec has an adapter"


def get_adapter(framework: str) -> type[Adapter]:
    """Return the adapter class for `framework` (ultralytics, timm, transformers)."""
    if framework not in ADAPTERS:
        raise ValueError(f"unknown framework {framework!r}; expected {', '.join(FRAMEWORKS)}")
    module, name = ADAPTERS[framework]
    adapter: type[Adapter] = getattr(importlib.import_module(module), name)
    return adapter
