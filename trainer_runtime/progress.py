"""What the runner measures for its progress events (contract 4 in docs/architecture.md): the
process's start-up time (``process_s`` of the first ``status``), an epoch's wall times (``epoch_s``,
``train_s``, ``val_s``, ``batches`` of an ``epoch`` event) and metrics made JSON-safe (NaN and
infinities become None).
"""

from __future__ import annotations

import math
import os
from typing import Any


def process_age_s() -> float | None:
    """Seconds since this process started (interpreter start-up and imports so far), from
    /proc (Linux); None where that cannot be read."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: starttime in ticks
    except (OSError, ValueError, IndexError):
        return None
    return round(max(0.0, uptime - started), 3)


def epoch_timing(
    started: float | None, last_batch_end: float | None, now: float, batches: int | None
) -> dict[str, Any]:
    """The measured times of one epoch for its event: ``epoch_s`` (training, validation and
    checkpoint saving), ``train_s`` (to the end of its last batch), ``val_s`` (the rest) and
    ``batches`` (training batches per epoch); empty when the epoch's start is unknown."""
    if started is None:
        return {}
    timing: dict[str, Any] = {"epoch_s": round(now - started, 3)}
    if last_batch_end is not None and last_batch_end >= started:
        timing["train_s"] = round(last_batch_end - started, 3)
        timing["val_s"] = round(now - last_batch_end, 3)
    if batches:
        timing["batches"] = int(batches)
    return timing


def finite(value: Any) -> float | None:
    """`value` as a float, or None when it is not a number or is NaN or infinite (JSON has neither)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def clean_metrics(metrics: dict[str, Any] | None) -> dict[str, float | None]:
    """The metrics with string keys and finite float values (None for anything else)."""
    return {str(k): finite(v) for k, v in (metrics or {}).items()}
