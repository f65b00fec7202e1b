"""tools.inference.config: the inference config comes from the app's Settings only, never from the
environment directly (Settings is the one reader of VTA_INFERENCE_* and TRAINER_PYTHON_*)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_settings
from tools.inference import InferenceConfig


def test_config_comes_from_settings_not_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("THREADS", "CACHE_DIR", "MAX_BATCH"):
        monkeypatch.delenv(f"VTA_INFERENCE_{name}", raising=False)
    for name in ("ULTRALYTICS", "TIMM", "TRANSFORMERS"):
        monkeypatch.delenv(f"TRAINER_PYTHON_{name}", raising=False)
    settings = make_settings("sqlite://", tmp_path, inference={"threads": "3"}, trainer_python_timm="/opt/timm/python")
    # set after the settings were read: a config that looked at os.environ would see these
    monkeypatch.setenv("VTA_INFERENCE_THREADS", "7")
    monkeypatch.setenv("VTA_INFERENCE_CACHE_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("TRAINER_PYTHON_ULTRALYTICS", "/opt/yolo/python")
    cfg = InferenceConfig.from_settings(settings)
    assert cfg.threads == 3
    assert cfg.cache_dir == settings.data_dir / "inference"
    assert cfg.python == {"ultralytics": None, "timm": "/opt/timm/python", "transformers": None}
    assert cfg.max_batch == InferenceConfig().max_batch  # unset: the default
    assert InferenceConfig.from_settings(settings, data_dir=tmp_path / "d").cache_dir == tmp_path / "d" / "inference"
