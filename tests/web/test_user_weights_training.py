"""End to end with the real trainer (timm resnet18, 32x32 two-class data, one epoch): a user uploads
their own weights through the API, a job names them (``init_weights``) and starts from them ahead
of the registry; the job records the file and its sha256, the backbone it trained (frozen) is the
uploaded one bit for bit; weights of another architecture fail the job naming the file."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.live_server import API
from tests.web.test_jobs_reliability import Env, make_env  # noqa: F401  (pytest fixture)

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")


def resnet18_state() -> dict[str, Any]:
    import timm

    torch.manual_seed(2024)
    model = timm.create_model("resnet18", pretrained=False, num_classes=7)  # the user's own 7-class model
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def upload(env: Env, name: str, data: bytes) -> dict[str, Any]:
    r = env.client.post(
        f"{API}/weights/mine",
        data={"model": "resnet18"},
        files={"file": (name, data, "application/octet-stream")},
        headers=env.headers,
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def logs(env: Env, job_id: int) -> list[str]:
    return [str(e["data"].get("message", "")) for e in env.events(job_id) if e["type"] == "log"]


def test_a_job_trains_from_the_users_uploaded_weights(make_env: Any) -> None:  # noqa: F811
    from safetensors.torch import save

    env: Env = make_env(weights_download="off")
    state = resnet18_state()
    data = save(state)
    w = upload(env, "my-resnet18.safetensors", data)
    job = env.create(epochs=1, init_weights=w["id"], advanced_config={"freeze_backbone": True})
    assert job["pretrained"]["source"] == "user upload" and job["pretrained"]["planned"] is True
    done = env.wait(job["id"], "completed", "failed", timeout=300)
    assert done["status"] == "completed", (done, logs(env, job["id"]))
    sha = hashlib.sha256(data).hexdigest()
    assert done["pretrained"] == {
        "source": "user upload",
        "detail": "your weights my-resnet18.safetensors",
        "pretraining": None,
        "planned": False,
        "file": "my-resnet18.safetensors",
        "sha256": sha,
        "user_weights_id": w["id"],
    }
    lines = logs(env, job["id"])
    assert f"starting from your weights my-resnet18.safetensors (user upload, sha256 {sha})" in lines, lines
    [loaded] = [line for line in lines if "tensors loaded" in line]
    assert loaded.startswith("your weights my-resnet18.safetensors (user upload): 120 of 122 tensors loaded")
    assert "fc.bias, fc.weight replaced" in loaded

    # the trained model's backbone (frozen) is the upload's, bit for bit; the classifier is new
    rows = env.checkpoint_rows(job["id"])
    dest = env.settings.data_dir / "best-check.pt"
    env.app.state.storage.internal.get_file(rows["best.pt"].key, dest)
    trained = torch.load(dest, map_location="cpu", weights_only=False)["model"]
    params = [k for k in trained if k in state and "running_" not in k and "num_batches" not in k]
    backbone = [k for k in params if not k.startswith("fc.")]
    assert len(backbone) == 60
    for k in backbone:
        assert torch.equal(trained[k], state[k]), k
    assert tuple(trained["fc.weight"].shape) == (2, 512)  # the dataset's two classes


def test_weights_of_another_architecture_fail_the_job_naming_the_file(make_env: Any) -> None:  # noqa: F811
    from safetensors.torch import save

    env: Env = make_env(weights_download="off")
    data = save({"encoder.layer.0.attention.weight": torch.ones(4, 4), "pooler.dense.bias": torch.zeros(4)})
    w = upload(env, "bert-by-mistake.safetensors", data)
    job = env.create(epochs=1, init_weights=w["id"])
    done = env.wait(job["id"], "completed", "failed", timeout=300)
    assert done["status"] == "failed", done
    text = str(done.get("error") or "") + " ".join(logs(env, job["id"]))
    assert "your weights file bert-by-mistake.safetensors" in text and "does not fit resnet18" in text, text
