"""Pretrained weights in the trainer: fetched from a local server playing the Hugging Face hub (or
the Ultralytics release assets), cached in the registry, loaded bit for bit except the replaced
head; an unreachable or silent endpoint means "from scratch" with a warning, never a hang."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.trainer_runtime._demo_fixtures import demo_datasets_root, demo_shapes_dir  # noqa: F401  (pytest fixtures)
from tests.trainer_runtime.fake_adapter import FakeAdapter, make_spec, publish_dataset
from tests.trainer_runtime.hub_server import BlackHole, FileServer, closed_port_url
from trainer_runtime.runner import Runner
from trainer_runtime.spec import load_spec
from trainer_runtime.storage import DualStorageClient, StorageConfig, StoreConfig
from trainer_runtime.weights import (
    ResolvedWeights,
    WeightsError,
    WeightsPlan,
    default_source,
    fetch,
    inspect_weights_file,
    registry_prefix,
    sha256_of,
)

torch = pytest.importorskip("torch")

HANG_GUARD_S = 30.0  # far above the plans' deadlines: only a hang fails it


def storage_at(root: Path) -> DualStorageClient:
    return DualStorageClient.from_config(
        StorageConfig(
            external=StoreConfig(bucket="training-datasets"),
            internal=StoreConfig(bucket="training-checkpoints"),
            local_root=root,
        )
    )


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The trainer's view of the hub: online, at whatever HF_ENDPOINT the test sets."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    return monkeypatch


def hub_plan(framework: str, model: str, **kw: Any) -> WeightsPlan:
    src = default_source(framework, model)
    assert src is not None and src.hub_repo
    values: dict[str, Any] = {
        "source": "hub",
        "detail": src.detail,
        "pretraining": src.pretraining,
        "hub_repo": src.hub_repo,
        "files": [{"name": f} for f in src.files],
        "download": "auto",
        "cache_key": registry_prefix(framework, model),
        "timeout_s": 2.0,
        "max_s": 60.0,
    }
    values.update(kw)
    return WeightsPlan.model_validate(values)


def timm_safetensors(name: str, num_classes: int = 1000) -> tuple[bytes, dict[str, Any]]:
    import timm
    from safetensors.torch import save

    torch.manual_seed(1234)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return save(state), state


# ------------------------------------------------------------------------------------ timm


def test_timm_default_sources_match_timm_pretrained_configs() -> None:
    from timm.models import get_pretrained_cfg

    from trainer_runtime.adapters.timm_adapter import TimmAdapter

    for info in TimmAdapter.models():
        src = default_source("timm", info.name)
        assert src is not None, info.name
        cfg = get_pretrained_cfg(info.name)
        assert cfg is not None and src.hub_repo == cfg.hf_hub_id, info.name


def test_timm_weights_from_the_hub_load_bit_equal_except_the_classifier(hub_env: Any, tmp_path: Path) -> None:
    import timm

    from trainer_runtime.adapters.pretrained import load_timm

    data, source_state = timm_safetensors("resnet18")
    storage = storage_at(tmp_path / "storage")
    with FileServer() as hub:
        hub.add_hub_file("timm/resnet18.a1_in1k", "model.safetensors", data)
        hub_env.setenv("HF_ENDPOINT", hub.url)
        got = fetch(hub_plan("timm", "resnet18"), storage, tmp_path / "w")
    assert got.source == "hub" and got.warning is None
    assert got.detail == "timm resnet18.a1_in1k" and got.pretraining == "ImageNet-1k"
    assert got.path is not None and got.path.read_bytes() == data
    # cached in the registry (internal store) with its sha256
    assert got.cached is not None and got.cached["key"] == "weights/timm/resnet18/"
    [entry] = got.cached["files"]
    assert entry["name"] == "model.safetensors" and entry["sha256"] == sha256_of(got.path)
    assert storage.internal.get_bytes("weights/timm/resnet18/model.safetensors") == data

    torch.manual_seed(99)
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    lines: list[str] = []
    loaded, skipped = load_timm(model, got, lines.append)
    own = model.state_dict()
    assert set(skipped) == {"fc.weight", "fc.bias"}
    assert loaded == len(own) - 2
    for k, v in own.items():
        if k.startswith("fc."):
            assert v.shape[0] == 3
        else:
            assert torch.equal(v, source_state[k]), k
    assert f"{loaded} of {len(own)} tensors loaded" in lines[0] and "fc.weight" in lines[0]


def test_registry_entry_is_fetched_from_the_internal_store_and_checked(tmp_path: Path) -> None:
    data, _ = timm_safetensors("resnet18")
    storage = storage_at(tmp_path / "storage")
    storage.internal.put_bytes("weights/timm/resnet18/model.safetensors", data)
    src = tmp_path / "m.safetensors"
    src.write_bytes(data)
    plan = WeightsPlan(
        source="registry",
        detail="timm resnet18.a1_in1k",
        pretraining="ImageNet-1k",
        registry_key="weights/timm/resnet18/",
        files=[{"name": "model.safetensors", "sha256": sha256_of(src), "size": len(data)}],
    )
    got = fetch(plan, storage, tmp_path / "w")
    assert got.source == "registry" and got.path is not None and got.path.read_bytes() == data
    bad = plan.model_copy(update={"files": [plan.files[0].model_copy(update={"sha256": "0" * 64})]})
    with pytest.raises(WeightsError, match="sha256"):
        fetch(bad, storage, tmp_path / "w2")


@pytest.mark.parametrize("endpoint", ["closed", "silent"])
def test_unreachable_hub_means_scratch_with_a_warning_never_a_hang(hub_env: Any, tmp_path: Path, endpoint: str) -> None:
    with BlackHole() as hole:
        url = closed_port_url() if endpoint == "closed" else hole.url
        hub_env.setenv("HF_ENDPOINT", url)
        start = time.monotonic()
        got = fetch(hub_plan("timm", "resnet18", timeout_s=1.0, max_s=3.0), storage_at(tmp_path / "s"), tmp_path / "w")
        elapsed = time.monotonic() - start
    assert elapsed < HANG_GUARD_S
    assert got.source == "scratch" and got.path is None
    assert got.warning is not None and "could not be fetched" in got.warning and "resnet18.a1_in1k" in got.warning


def test_download_policy_on_fails_and_off_never_asks(hub_env: Any, tmp_path: Path) -> None:
    with FileServer() as hub:
        hub_env.setenv("HF_ENDPOINT", hub.url)  # serves nothing: 404
        with pytest.raises(WeightsError, match="could not be fetched"):
            fetch(hub_plan("timm", "resnet18", download="on"), storage_at(tmp_path / "s"), tmp_path / "w")
        off = fetch(hub_plan("timm", "resnet18", download="off"), storage_at(tmp_path / "s"), tmp_path / "w")
        assert off.source == "scratch" and "WEIGHTS_DOWNLOAD=off" in str(off.warning)
        n = len(hub.requests)
        hub_env.setenv("HF_HUB_OFFLINE", "1")
        offline = fetch(hub_plan("timm", "resnet18"), storage_at(tmp_path / "s"), tmp_path / "w")
        assert offline.source == "scratch" and "HF_HUB_OFFLINE" in str(offline.warning)
        assert len(hub.requests) == n  # neither asked the hub


# ------------------------------------------------------------------------------ transformers


def test_transformers_config_and_weights_from_the_hub(hub_env: Any, tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification

    from trainer_runtime.adapters.transformers_adapter import CLS, build_model

    cfg = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    cfg.num_labels = 10
    torch.manual_seed(7)
    src_model = ViTForImageClassification(cfg)
    saved = tmp_path / "saved"
    src_model.save_pretrained(saved, safe_serialization=True)
    source_state = {k: v.detach().clone() for k, v in src_model.state_dict().items()}
    repo = "google/vit-base-patch16-224"
    with FileServer() as hub:
        for name in ("config.json", "model.safetensors"):
            hub.add_hub_file(repo, name, (saved / name).read_bytes())
        hub_env.setenv("HF_ENDPOINT", hub.url)
        got = fetch(hub_plan("transformers", repo), storage_at(tmp_path / "s"), tmp_path / "w")
    assert got.source == "hub" and set(got.files) == {"config.json", "model.safetensors"}
    assert got.cached is not None and got.cached["key"] == "weights/transformers/google__vit-base-patch16-224/"

    model, how = build_model(repo, CLS, ["cat", "dog", "bird"], 32, {}, got)
    own = model.state_dict()
    assert model.config.num_labels == 3 and model.config.id2label[0] == "cat"
    for k, v in own.items():
        if k.startswith("classifier."):
            assert v.shape[0] == 3
        else:
            assert torch.equal(v, source_state[k]), k
    assert how.startswith("pretrained on ImageNet-21k") and f"{len(own) - 2} of {len(own)} tensors loaded" in how


# ------------------------------------------------------------------------------- Ultralytics


def saved_yolo(path: Path) -> Path:
    from trainer_runtime.adapters._ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO

    torch.manual_seed(3)
    YOLO("yolo11n.yaml").save(str(path))
    return path


@pytest.mark.slow
def test_ultralytics_asset_is_downloaded_checked_and_cached(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    pt = saved_yolo(tmp_path / "yolo11n.pt")
    assert inspect_weights_file(pt)["format"] == "pytorch"
    storage = storage_at(tmp_path / "s")
    with FileServer() as assets:
        assets.files["/v8.3.0/yolo11n.pt"] = pt.read_bytes()
        src = default_source("ultralytics", "yolo11n", assets_url=assets.url + "/v8.3.0")
        assert src is not None and src.asset_url == assets.url + "/v8.3.0/yolo11n.pt" and src.pretraining == "COCO"
        plan = WeightsPlan(
            source="ultralytics-assets",
            detail=src.detail,
            pretraining=src.pretraining,
            asset_url=src.asset_url,
            files=[{"name": "yolo11n.pt"}],
            download="auto",
            cache_key=registry_prefix("ultralytics", "yolo11n"),
        )
        got = fetch(plan, storage, tmp_path / "w")
    assert got.source == "ultralytics-assets" and got.path is not None
    assert got.path.read_bytes() == pt.read_bytes()
    assert storage.internal.get_bytes("weights/ultralytics/yolo11n/yolo11n.pt") == pt.read_bytes()


@pytest.mark.slow
def test_ultralytics_training_starts_from_the_pretrained_file(tmp_path: Path, demo_shapes_dir: Path) -> None:  # noqa: F811
    pytest.importorskip("ultralytics")
    from tests.trainer_runtime.test_ultralytics_adapter import make_ctx
    from trainer_runtime.adapters.ultralytics_adapter import UltralyticsAdapter

    pt = saved_yolo(tmp_path / "yolo11n.pt")
    ctx, rec = make_ctx(tmp_path / "run", demo_shapes_dir, "yolo11n", "object_detection", n_images=8, epochs=1)
    ctx.pretrained = ResolvedWeights("ultralytics-assets", "ultralytics yolo11n.pt", "COCO", {"yolo11n.pt": pt})
    UltralyticsAdapter(ctx).train()
    [line] = [kw["message"] for kw in rec.of("on_log") if "tensors loaded" in kw.get("message", "")]
    loaded, total = (int(x) for x in line.split(": ", 1)[1].split(" tensors")[0].split(" of "))
    # everything but the class outputs of the head (80 COCO classes -> the dataset's) is bit-equal
    assert total - loaded <= 6 and loaded > 0.9 * total, line
    assert "model.23.cv3" in line


# ------------------------------------------------------------------------- runner records it


def run_fake(tmp_path: Path, pretrained: dict[str, Any]) -> list[dict[str, Any]]:
    work, root = tmp_path / "work", tmp_path / "storage"
    spec = make_spec(work, root, epochs=1)
    spec["pretrained"] = pretrained
    loaded = load_spec(spec)
    storage = DualStorageClient.from_config(loaded.storage)
    publish_dataset(storage, "ds1", tmp_dir=tmp_path / "blobs")
    out = io.StringIO()
    code = Runner(loaded, stream=out, adapter_resolver=lambda _f: FakeAdapter).run()
    assert code == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_runner_reports_scratch_with_a_warning_when_the_hub_is_unreachable(hub_env: Any, tmp_path: Path) -> None:
    hub_env.setenv("HF_ENDPOINT", closed_port_url())
    plan = hub_plan("timm", "resnet18", timeout_s=1.0, max_s=3.0).model_dump()
    events = run_fake(tmp_path, plan)
    [ev] = [e for e in events if e["type"] == "log" and "weights" in e["data"]]
    assert ev["data"]["level"] == "warning" and ev["data"]["weights"]["source"] == "scratch"
    assert "from scratch" in ev["data"]["message"] and "could not be fetched" in ev["data"]["message"]
    assert events[-1]["data"]["status"] == "completed"


def test_runner_reports_the_hub_source_and_the_registry_copy(hub_env: Any, tmp_path: Path) -> None:
    data, _ = timm_safetensors("resnet18")
    with FileServer() as hub:
        hub.add_hub_file("timm/resnet18.a1_in1k", "model.safetensors", data)
        hub_env.setenv("HF_ENDPOINT", hub.url)
        events = run_fake(tmp_path, hub_plan("timm", "resnet18").model_dump())
    [ev] = [e for e in events if e["type"] == "log" and "weights" in e["data"]]
    w = ev["data"]["weights"]
    assert w["source"] == "hub" and w["detail"] == "timm resnet18.a1_in1k" and w["pretraining"] == "ImageNet-1k"
    assert w["cached"]["key"] == "weights/timm/resnet18/"
    assert ev["data"]["message"] == "pretrained on ImageNet-1k (timm resnet18.a1_in1k, from the hub)"


# ------------------------------------------------------------------------------ backbone options


def test_freeze_backbone_and_backbone_lr_in_the_schemas() -> None:
    from trainer_runtime.adapters.timm_adapter import TimmAdapter
    from trainer_runtime.adapters.transformers_adapter import TransformersAdapter
    from trainer_runtime.adapters.ultralytics_adapter import UltralyticsAdapter

    timm_cfg = TimmAdapter.resolve_config(None, {"freeze_backbone": True}, {"epochs": 1})
    assert timm_cfg["freeze_backbone"] is True and timm_cfg["backbone_lr_mult"] == 1.0
    tr_cfg = TransformersAdapter.resolve_config(None, {"backbone_lr_mult": 0.1}, {"epochs": 1})
    assert tr_cfg["backbone_lr_mult"] == 0.1 and tr_cfg["freeze_backbone"] is False
    ul_cfg = UltralyticsAdapter.resolve_config(None, {"freeze_backbone": True}, {"epochs": 1})
    assert ul_cfg["freeze"] == 10  # YOLO's backbone layers
    assert {f.name for f in TimmAdapter.config_schema()} >= {"freeze_backbone", "backbone_lr_mult"}


def test_frozen_backbone_does_not_move_and_the_classifier_does() -> None:
    import timm
    from timm.optim import create_optimizer_v2

    from trainer_runtime.adapters.pretrained import backbone_params, timm_classifier_prefixes

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    lines: list[str] = []
    params = backbone_params(model, timm_classifier_prefixes(model), freeze=True, lr_mult=1.0, lr=0.1, log=lines.append)
    opt = create_optimizer_v2(params, opt="sgd", lr=0.1, weight_decay=0.0)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    after = model.state_dict()
    assert not torch.equal(after["fc.weight"], before["fc.weight"])
    for k, v in after.items():
        if not k.startswith("fc.") and "running" not in k and "num_batches" not in k:
            assert torch.equal(v, before[k]), k
    assert lines == ["backbone frozen: 2 of 62 parameter tensors train (the classifier)"]

    other = timm.create_model("resnet18", pretrained=False, num_classes=3)
    groups = backbone_params(other, ("fc",), freeze=False, lr_mult=0.1, lr=0.01, log=lines.append)
    assert [g["lr"] for g in groups] == pytest.approx([0.001, 0.01]) and len(groups[1]["params"]) == 2


@pytest.mark.slow
def test_the_mlflow_run_records_the_pretrained_source(hub_env: Any, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from tests.trainer_runtime.test_mlflow_logger import wait_for_run
    from trainer_runtime.job_setup import JobPaths

    hub_env.setenv("HF_ENDPOINT", closed_port_url())
    work, root = tmp_path / "work", tmp_path / "storage"
    spec = make_spec(work, root, epochs=1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec["mlflow"] = {"enabled": True, "tracking_uri": uri, "experiment_name": "unit", "logger_priority": "normal"}
    spec["pretrained"] = hub_plan("timm", "resnet18", timeout_s=1.0, max_s=3.0).model_dump()
    loaded = load_spec(spec)
    storage = DualStorageClient.from_config(loaded.storage)
    publish_dataset(storage, "ds1", tmp_dir=tmp_path / "blobs")
    assert Runner(loaded, stream=io.StringIO(), adapter_resolver=lambda _f: FakeAdapter).run() == 0
    run = wait_for_run(uri, JobPaths.for_job(work, 7).output_dir, "FINISHED")
    assert run.data.params["pretrained_source"] == "scratch" and run.data.params["pretraining"] == "none"
