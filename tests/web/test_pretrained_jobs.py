"""End to end with the real trainer: a job's pretrained weights come from a local server playing
the Hugging Face hub (HF_ENDPOINT), are cached in the registry and recorded on the job; the next
job of the same model takes them from the registry without asking the hub."""

from __future__ import annotations

from typing import Any

import pytest

from tests.live_server import API
from tests.trainer_runtime.hub_server import FileServer
from tests.web.test_jobs_reliability import make_env  # noqa: F401  (pytest fixture)

pytestmark = pytest.mark.slow


def resnet18_safetensors() -> bytes:
    torch = pytest.importorskip("torch")
    import timm
    from safetensors.torch import save

    torch.manual_seed(5)
    model = timm.create_model("resnet18", pretrained=False)
    return save({k: v.contiguous() for k, v in model.state_dict().items()})


def logs(env: Any, job_id: int) -> list[str]:
    return [str(e["data"].get("message", "")) for e in env.events(job_id) if e["type"] == "log"]


def test_hub_download_is_recorded_cached_and_reused(make_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with FileServer() as hub:
        hub.add_hub_file("timm/resnet18.a1_in1k", "model.safetensors", resnet18_safetensors())
        monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the local trainer inherits it (HF_* is allow-listed)
        env = make_env()
        job = env.create(epochs=1)
        assert job["pretrained"]["source"] == "hub" and job["pretrained"]["planned"] is True
        done = env.wait(job["id"], "completed", "failed", timeout=300)
        assert done["status"] == "completed", done
        assert done["pretrained"] == {
            "source": "hub",
            "detail": "timm resnet18.a1_in1k",
            "pretraining": "ImageNet-1k",
            "planned": False,
        }
        lines = logs(env, job["id"])
        assert "pretrained on ImageNet-1k (timm resnet18.a1_in1k, from the hub)" in lines
        assert any("tensors loaded" in line and "fc.weight" in line for line in lines), lines
        registry = env.client.get(f"{API}/weights", headers=env.headers).json()
        assert [(e["model_name"], e["source"]) for e in registry] == [("resnet18", "hub:timm/resnet18.a1_in1k")]

        asked = len(hub.requests)
        second = env.create(epochs=1)
        assert second["pretrained"]["source"] == "registry"
        done2 = env.wait(second["id"], "completed", "failed", timeout=300)
        assert done2["status"] == "completed" and done2["pretrained"]["source"] == "registry", done2
        assert len(hub.requests) == asked  # the registry answered
