"""The inference settings (`InferenceConfig`) and where the inference cache keeps things.

`InferenceConfig.from_settings` reads the app settings, else the environment (``VTA_INFERENCE_*``,
``TRAINER_PYTHON_*``); see docs/architecture.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FRAMEWORKS = ("ultralytics", "timm", "transformers")


def _env(name: str, default: Any, cast: Callable[[str], Any]) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        return default


@dataclass
class InferenceConfig:
    """Inference settings. `from_settings` reads ``inference_*`` fields of the app settings when
    they exist, else the environment (``VTA_INFERENCE_*``), else these defaults."""

    cache_dir: Path = Path("./data/inference")
    python: dict[str, str | None] = field(default_factory=dict)
    workers_per_framework: int = 1
    device: str = "auto"
    max_models: int = 4
    max_memory_mb: float = 2048.0
    batch_window_ms: float = 2.0
    batch_wait: str = "adaptive"
    max_batch: int = 32
    max_pixels: int = 40_000_000
    max_image_bytes: int = 50 * 1024**2
    request_timeout_s: float = 120.0
    export_timeout_s: float = 600.0
    threads: int = 0
    test_run_batch: int = 16
    test_run_workers: int = 2
    route_cache_ttl_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Any, data_dir: Path | None = None) -> InferenceConfig:
        d = cls()

        def pick(name: str, cast: Callable[[str], Any]) -> Any:
            value = getattr(settings, f"inference_{name}", None)
            if value is not None:
                return value
            return _env(f"VTA_INFERENCE_{name.upper()}", getattr(d, name), cast)

        base = Path(str(data_dir or getattr(settings, "data_dir", None) or "./data"))
        cache = getattr(settings, "inference_cache_dir", None) or os.environ.get("VTA_INFERENCE_CACHE_DIR")
        return cls(
            cache_dir=Path(str(cache)) if cache else base / "inference",
            python={
                fw: getattr(settings, f"trainer_python_{fw}", None) or os.environ.get(f"TRAINER_PYTHON_{fw.upper()}")
                for fw in FRAMEWORKS
            },
            workers_per_framework=int(pick("workers_per_framework", int)),
            device=str(pick("device", str)),
            max_models=int(pick("max_models", int)),
            max_memory_mb=float(pick("max_memory_mb", float)),
            batch_window_ms=float(pick("batch_window_ms", float)),
            batch_wait=str(pick("batch_wait", str)),
            max_batch=int(pick("max_batch", int)),
            max_pixels=int(pick("max_pixels", int)),
            max_image_bytes=int(pick("max_image_bytes", int)),
            request_timeout_s=float(pick("request_timeout_s", float)),
            export_timeout_s=float(pick("export_timeout_s", float)),
            threads=int(pick("threads", int)),
            test_run_batch=int(pick("test_run_batch", int)),
            test_run_workers=int(pick("test_run_workers", int)),
            route_cache_ttl_s=float(pick("route_cache_ttl_s", float)),
        )


def job_cache_dir(cache_dir: Path, job_id: int) -> Path:
    """Where `InferenceService.checkpoint_path` keeps local copies of a job's checkpoints."""
    return Path(cache_dir) / "checkpoints" / f"job-{int(job_id)}"


def ensure_dir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
