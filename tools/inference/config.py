"""The inference settings (`InferenceConfig`) and where the inference cache keeps things.

`InferenceConfig.from_settings` copies them from the app's `web.config.Settings` (``inference``,
read from ``VTA_INFERENCE_*``, and ``trainer_python_*``); nothing here reads the environment. See
docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from trainer_runtime.spec import FRAMEWORKS


@dataclass
class InferenceConfig:
    """Inference settings: these defaults, each replaced by the app setting that is set
    (`from_settings`); tests build one directly."""

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
        """The config of the app's `web.config.Settings`: each ``settings.inference.<name>`` that
        is set (not None), else the default here; ``cache_dir`` None is the ``inference`` folder of
        `data_dir` (else ``settings.data_dir``)."""
        defaults = cls()
        inference = settings.inference
        values = {
            f.name: getattr(defaults, f.name) if (v := getattr(inference, f.name)) is None else v
            for f in fields(cls)
            if f.name not in ("cache_dir", "python")
        }
        cache = inference.cache_dir
        return cls(
            cache_dir=Path(str(cache)) if cache else Path(str(data_dir or settings.data_dir)) / "inference",
            python={fw: getattr(settings, f"trainer_python_{fw}") for fw in FRAMEWORKS},
            **values,
        )


def job_cache_dir(cache_dir: Path, job_id: int) -> Path:
    """Where `InferenceService.checkpoint_path` keeps local copies of a job's checkpoints."""
    return Path(cache_dir) / "checkpoints" / f"job-{int(job_id)}"


def ensure_dir(p: Path) -> Path:
    """Create the folder `p` (and its parents) when missing and return it."""
    p.mkdir(parents=True, exist_ok=True)
    return p
