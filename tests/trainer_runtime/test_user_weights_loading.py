"""A user's own weights in the trainer: fetched from the internal store by the plan the server
wrote (sha256 checked), loaded by the registry's loading path (every backbone tensor bit-equal,
the classifier rebuilt for the dataset's classes), and a file none of whose tensors fits the model
fails naming the file instead of training from scratch."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.trainer_runtime._demo_fixtures import demo_datasets_root, demo_shapes_dir  # noqa: F401  (pytest fixtures)
from tests.trainer_runtime.test_pretrained_loading import storage_at, timm_safetensors
from trainer_runtime.adapters.base import ConfigError
from trainer_runtime.weights import USER_UPLOAD, WeightsError, WeightsPlan, fetch, user_prefix

torch = pytest.importorskip("torch")


def user_plan(data: bytes, name: str = "my-r18.safetensors", weights_id: int = 7, **kw: Any) -> WeightsPlan:
    values: dict[str, Any] = {
        "source": USER_UPLOAD,
        "detail": f"your weights {name}",
        "registry_key": user_prefix(3, weights_id),
        "files": [{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}],
    }
    values.update(kw)
    return WeightsPlan.model_validate(values)


def test_users_weights_are_fetched_checked_and_loaded_bit_equal_except_the_classifier(tmp_path: Path) -> None:
    import timm

    from trainer_runtime.adapters.pretrained import load_timm

    data, source_state = timm_safetensors("resnet18", num_classes=5)  # the user's own 5-class model
    storage = storage_at(tmp_path / "storage")
    storage.internal.put_bytes("weights/user/3/7/my-r18.safetensors", data)
    got = fetch(user_plan(data), storage, tmp_path / "w")
    assert got.source == USER_UPLOAD and got.detail == "your weights my-r18.safetensors"
    assert got.path is not None and got.path.name == "my-r18.safetensors" and got.path.read_bytes() == data
    assert got.event_data()["file"] == "my-r18.safetensors"
    assert got.event_data()["sha256"] == hashlib.sha256(data).hexdigest()

    torch.manual_seed(42)
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    lines: list[str] = []
    loaded, skipped = load_timm(model, got, lines.append)
    own = model.state_dict()
    assert loaded == len(own) - 2 and set(skipped) == {"fc.weight", "fc.bias"}
    for k, v in own.items():
        if k.startswith("fc."):
            assert v.shape[0] == 3  # rebuilt for this dataset's classes
        else:
            assert torch.equal(v, source_state[k]), k
    assert lines[0].startswith("your weights my-r18.safetensors (user upload): ")
    assert f"{loaded} of {len(own)} tensors loaded" in lines[0] and "fc.bias, fc.weight replaced" in lines[0]


def test_a_deleted_or_altered_upload_fails_naming_the_file(tmp_path: Path) -> None:
    data, _ = timm_safetensors("resnet18")
    storage = storage_at(tmp_path / "storage")
    with pytest.raises(WeightsError, match=r"your weights file my-r18\.safetensors .*gone"):
        fetch(user_plan(data), storage, tmp_path / "w")
    storage.internal.put_bytes("weights/user/3/7/my-r18.safetensors", data[:-4] + b"\0\0\0\0")
    with pytest.raises(WeightsError, match=r"your weights file .*my-r18\.safetensors does not match its sha256"):
        fetch(user_plan(data), storage, tmp_path / "w2")


def test_weights_of_another_architecture_fail_instead_of_training_from_scratch(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save

    from trainer_runtime.adapters.pretrained import load_timm

    data = save({"encoder.layer.0.attention.weight": torch.ones(4, 4), "pooler.dense.bias": torch.zeros(4)})
    storage = storage_at(tmp_path / "storage")
    storage.internal.put_bytes("weights/user/3/7/bert.safetensors", data)
    got = fetch(user_plan(data, name="bert.safetensors"), storage, tmp_path / "w")
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    with pytest.raises(ConfigError, match=r"your weights file bert\.safetensors .* does not fit resnet18"):
        load_timm(model, got, lambda _m: None)


@pytest.mark.slow
def test_an_ultralytics_checkpoint_of_another_model_is_refused_before_training(tmp_path: Path) -> None:
    """Ultralytics would train the checkpoint's own architecture: a user's yolo11s.pt named as
    yolo11n fails naming the file; a yolo11n.pt passes."""
    pytest.importorskip("ultralytics")
    from trainer_runtime.adapters._ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO

    from trainer_runtime.adapters.pretrained import check_ultralytics_architecture
    from trainer_runtime.weights import ResolvedWeights

    for name in ("yolo11n", "yolo11s"):
        YOLO(f"{name}.yaml").save(str(tmp_path / f"{name}.pt"))
    small = ResolvedWeights(USER_UPLOAD, "your weights mine.pt", None, {"mine.pt": tmp_path / "yolo11s.pt"})
    with pytest.raises(ConfigError, match=r"your weights file yolo11s\.pt .* holds yolo11s, not yolo11n"):
        check_ultralytics_architecture(YOLO(str(tmp_path / "yolo11s.pt")), "yolo11n", "detect", small)
    same = ResolvedWeights(USER_UPLOAD, "your weights mine.pt", None, {"mine.pt": tmp_path / "yolo11n.pt"})
    check_ultralytics_architecture(YOLO(str(tmp_path / "yolo11n.pt")), "yolo11n", "detect", same)


@pytest.mark.slow
def test_ultralytics_training_starts_from_the_users_checkpoint(tmp_path: Path, demo_shapes_dir: Path) -> None:  # noqa: F811
    pytest.importorskip("ultralytics")
    from tests.trainer_runtime.test_pretrained_loading import saved_yolo
    from tests.trainer_runtime.test_ultralytics_adapter import make_ctx
    from trainer_runtime.adapters.ultralytics_adapter import UltralyticsAdapter
    from trainer_runtime.weights import ResolvedWeights

    pt = saved_yolo(tmp_path / "my-yolo.pt")
    ctx, rec = make_ctx(tmp_path / "run", demo_shapes_dir, "yolo11n", "object_detection", n_images=8, epochs=1)
    ctx.pretrained = ResolvedWeights(USER_UPLOAD, "your weights my-yolo.pt", None, {"my-yolo.pt": pt})
    UltralyticsAdapter(ctx).train()
    [line] = [kw["message"] for kw in rec.of("on_log") if "tensors loaded" in kw.get("message", "")]
    assert line.startswith("your weights my-yolo.pt (user upload): ")
    loaded, total = (int(x) for x in line.split(": ", 1)[1].split(" tensors")[0].split(" of "))
    assert total - loaded <= 6 and loaded > 0.9 * total, line


def test_transformers_user_weights_load_with_their_config(tmp_path: Path) -> None:
    """transformers: the upload's config.json and weights (stored as the names from_pretrained reads)
    build the model, every tensor but the classifier bit-equal."""
    from transformers import ViTConfig, ViTForImageClassification

    from trainer_runtime.adapters.transformers_adapter import CLS, build_model

    cfg = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    cfg.num_labels = 4
    torch.manual_seed(11)
    src = ViTForImageClassification(cfg)
    saved = tmp_path / "saved"
    src.save_pretrained(saved, safe_serialization=True)
    source_state = {k: v.detach().clone() for k, v in src.state_dict().items()}
    storage = storage_at(tmp_path / "storage")
    files = []
    for name in ("config.json", "model.safetensors"):
        data = (saved / name).read_bytes()
        storage.internal.put_bytes(f"weights/user/3/9/{name}", data)
        files.append({"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    plan = WeightsPlan.model_validate(
        {
            "source": USER_UPLOAD,
            "detail": "your weights vit-mine.safetensors",
            "registry_key": user_prefix(3, 9),
            "files": files,
        }
    )
    got = fetch(plan, storage, tmp_path / "w")
    model, how = build_model("google/vit-base-patch16-224", CLS, ["cat", "dog"], 32, {}, got)
    own = model.state_dict()
    assert model.config.num_labels == 2
    for k, v in own.items():
        if not k.startswith("classifier."):
            assert torch.equal(v, source_state[k]), k
    assert how.startswith("your weights vit-mine.safetensors (user upload): ")
    assert f"{len(own) - 2} of {len(own)} tensors loaded" in how
