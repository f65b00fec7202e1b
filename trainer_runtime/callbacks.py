"""A small callback registry, like ultralytics' ``add_callback`` / ``run_callbacks``.

Adapters translate their framework's own hooks (ultralytics ``on_fit_epoch_end``, transformers
``TrainerCallback``, a timm loop) into these events; the runner subscribes reporters, MLflow and
checkpoint tracking to them.

Events and their keyword arguments:
- ``on_train_start(epochs: int, start_epoch: int)``
- ``on_batch_end(epoch: int, batch: int, batches: int, loss: float | None)``
- ``on_fit_epoch_end(epoch: int, epochs: int, metrics: dict[str, float])`` — after validation of that
  epoch: the metrics are that epoch's (never the previous epoch's)
- ``on_model_save(epoch: int, last: Path, best: Path | None, is_best: bool)``
- ``on_log(level: str, message: str)``
- ``on_train_end(result: TrainResult)``
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

CALLBACK_EVENTS = (
    "on_train_start",
    "on_batch_end",
    "on_fit_epoch_end",
    "on_model_save",
    "on_log",
    "on_train_end",
)


class Callbacks:
    """Callbacks registered per training event (`CALLBACK_EVENTS`) and run in registration order."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[..., Any]]] = defaultdict(list)

    def add_callback(self, event: str, fn: Callable[..., Any]) -> None:
        if event not in CALLBACK_EVENTS:
            raise ValueError(f"unknown callback event {event!r}; expected one of {', '.join(CALLBACK_EVENTS)}")
        self._callbacks[event].append(fn)

    def run_callbacks(self, event: str, **kwargs: Any) -> None:
        """Call every callback of `event` in registration order; exceptions propagate."""
        for fn in self._callbacks.get(event, ()):
            fn(**kwargs)
