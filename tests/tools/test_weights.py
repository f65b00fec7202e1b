"""The pretrained weights registry (server side, no torch needed for its checks): imports checked
by format, the plan a job gets (registry, then a download where allowed, then scratch), what the
job API and the trainer's report record, the sentences users read, the CLI and the admin-only
upload."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakeUser, make_settings
from tests.event_helpers import make_job
from tests.live_server import API, classification_files, upload_dataset, wait_for, write_fake_python
from tools import weights as weights_tools
from tools.db.models import Job, User, WeightsEntry
from tools.errors import ConflictError, InvalidInputError
from tools.events import append_event
from tools.intent import TrainingIntent
from trainer_runtime.weights import WeightsError, inspect_weights_file
from web.config import Settings


def safetensors_bytes(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    """A real safetensors file (the format: 8-byte header length, JSON header, raw data)."""
    header: dict[str, Any] = {}
    data = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


def small_safetensors() -> bytes:
    return safetensors_bytes(
        {"conv1.weight": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)), "fc.bias": ("F32", [2], b"\0" * 8)}
    )


def torch_zip(payload: bytes) -> bytes:
    """The zip layout torch.save writes (``archive/data.pkl``, ``archive/version``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


class _Evil:
    def __reduce__(self) -> Any:
        import os

        return (os.system, ("echo owned",))


# ---------------------------------------------------------------------------------- formats


def test_format_checks_accept_real_formats_and_name_what_is_wrong(tmp_path: Path) -> None:
    good = tmp_path / "model.safetensors"
    good.write_bytes(small_safetensors())
    assert inspect_weights_file(good) == {"format": "safetensors", "tensors": 2}
    pt = tmp_path / "model.pt"
    pt.write_bytes(torch_zip(pickle.dumps({"state_dict": {"a": 1}}, protocol=2)))
    assert inspect_weights_file(pt)["format"] == "pytorch"

    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(small_safetensors()[:-3])
    with pytest.raises(WeightsError, match="truncated"):
        inspect_weights_file(truncated)
    text = tmp_path / "notes.bin"
    text.write_text("hello, these are not weights at all")
    with pytest.raises(WeightsError, match="header length"):
        inspect_weights_file(text)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(torch_zip(pickle.dumps({"x": _Evil()}, protocol=2)))
    with pytest.raises(WeightsError, match=r"imports (posix|os)\.system"):
        inspect_weights_file(evil)
    gadget = tmp_path / "gadget.pt"
    for gadget_fn in (getattr, eval):  # the usual pickle gadgets
        gadget.write_bytes(torch_zip(pickle.dumps({"x": gadget_fn}, protocol=2)))
        with pytest.raises(WeightsError, match=rf"imports __builtin__\.{gadget_fn.__name__}"):
            inspect_weights_file(gadget)
    two = tmp_path / "two.pt"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/version", "3")
    two.write_bytes(buf.getvalue())
    with pytest.raises(WeightsError, match=r"one data\.pkl"):
        inspect_weights_file(two)


# --------------------------------------------------------------------------- registry + plan


@pytest.fixture
def db(session_factory: Any) -> Any:
    with session_factory() as session:
        yield session


@pytest.fixture
def storage(tmp_path: Path) -> Any:
    from trainer_runtime.storage import DualStorageClient, StorageConfig, StoreConfig

    return DualStorageClient.from_config(
        StorageConfig(
            external=StoreConfig(bucket="training-datasets"),
            internal=StoreConfig(bucket="training-checkpoints"),
            local_root=tmp_path / "storage",
        )
    )


def test_import_stores_the_file_and_the_row_then_plans_use_it_first(db: Any, storage: Any, tmp_path: Path) -> None:
    f = tmp_path / "r18.safetensors"
    f.write_bytes(small_safetensors())
    hub = weights_tools.plan_for(db, "timm", "resnet18")
    assert hub.source == "hub" and hub.hub_repo == "timm/resnet18.a1_in1k" and hub.download == "auto"
    assert hub.cache_key == "weights/timm/resnet18/" and hub.pretraining == "ImageNet-1k"

    entry = weights_tools.import_weights(db, storage, f, model="resnet18", license="apache-2.0")
    assert entry["framework"] == "timm" and entry["key"] == "weights/timm/resnet18/"
    assert entry["pretraining"] == "ImageNet-1k" and entry["size"] == f.stat().st_size
    assert storage.internal.get_bytes("weights/timm/resnet18/model.safetensors") == f.read_bytes()
    assert [e["model_name"] for e in weights_tools.list_weights(db)] == ["resnet18"]

    plan = weights_tools.plan_for(db, "timm", "resnet18")
    assert plan.source == "registry" and plan.registry_key == "weights/timm/resnet18/"
    assert plan.files[0].name == "model.safetensors" and plan.files[0].sha256 == entry["sha256"]
    with pytest.raises(ConflictError):
        weights_tools.import_weights(db, storage, f, model="resnet18")
    with pytest.raises(InvalidInputError, match=r"config\.json"):
        weights_tools.import_weights(db, storage, f, model="microsoft/resnet-50")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK not a zip really")
    with pytest.raises(InvalidInputError, match="bad zip") as err:
        weights_tools.import_weights(db, storage, bad, model="resnet34")
    assert err.value.detail["field"] == "file"
    assert weights_tools.find_entry(db, "timm", "resnet34") is None  # nothing half-written


def test_plan_without_registry_follows_the_download_policy(db: Any) -> None:
    ultra = weights_tools.plan_for(db, "ultralytics", "yolo11n-seg")
    assert ultra.source == "ultralytics-assets" and ultra.pretraining == "COCO"
    assert ultra.asset_url == "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n-seg.pt"
    tr = weights_tools.plan_for(db, "transformers", "facebook/detr-resnet-50")
    assert tr.source == "hub" and [f.name for f in tr.files] == ["config.json", "model.safetensors"]
    off = weights_tools.WeightsPolicy(download="off")
    assert weights_tools.plan_for(db, "timm", "resnet18", off).source == "scratch"
    mirror = weights_tools.WeightsPolicy(download="on", ultralytics_assets_url="http://mirror/v1/")
    on = weights_tools.plan_for(db, "ultralytics", "yolo11n", mirror)
    assert on.download == "on" and on.asset_url == "http://mirror/v1/yolo11n.pt"


def test_sentences_for_pretrained_and_scratch(db: Any) -> None:
    field = weights_tools.planned_field(weights_tools.plan_for(db, "timm", "resnet50"))
    en = weights_tools.describe_pretrained(field, "resnet50", "en")
    assert en.startswith("pretrained on ImageNet-1k (timm resnet50.a1_in1k)") and "from scratch if that fails" in en
    ko = weights_tools.describe_pretrained(field, "resnet50", "ko")
    assert ko.startswith("ImageNet-1k 사전학습 가중치 사용 (timm resnet50.a1_in1k)")
    recorded = {"source": "registry", "detail": "timm resnet50.a1_in1k", "pretraining": "ImageNet-1k", "planned": False}
    assert (
        weights_tools.describe_pretrained(recorded, "resnet50") == "pretrained on ImageNet-1k (timm resnet50.a1_in1k)"
    )
    off = weights_tools_ctx(db, weights_tools.WeightsPolicy(download="off"))
    scratch = weights_tools.describe_weights_plan(off, TrainingIntent(model_name="resnet50"), "en")
    assert scratch == (
        "from scratch: no pretrained weights are available here; expect low accuracy on small datasets "
        "(import weights with `vision-agent weights import FILE --model resnet50`)"
    )
    assert weights_tools.describe_weights_plan(off, TrainingIntent(model_name="resnet50"), "ko").startswith(
        "처음부터 학습"
    )


def weights_tools_ctx(db: Any, policy: Any) -> Any:
    """A ToolContext whose app services carry the weights download `policy`."""
    from tools.context import ToolContext
    from tools.services import AppServices

    services = AppServices(weights=policy)
    return ToolContext(db=db, user=None, storage=None, work_dir=Path("."), services=services)  # type: ignore[arg-type]


def test_trainer_report_records_the_source_and_caches_the_download(db: Any, session_factory: Any) -> None:
    user = User(email="t@example.com", hashed_password="x")
    db.add(user)
    db.commit()
    job_id, _ = make_job(session_factory, user.id, status="running")
    report: dict[str, Any] = {
        "source": "hub",
        "detail": "timm resnet18.a1_in1k",
        "pretraining": "ImageNet-1k",
        "cached": {
            "key": "weights/timm/resnet18/",
            "source": "timm/resnet18.a1_in1k",
            "files": [{"name": "model.safetensors", "sha256": "a" * 64, "size": 123}],
        },
        "warning": None,
    }
    append_event(db, job_id, "log", {"level": "info", "message": "pretrained", "weights": report}, source="trainer")
    job = db.get(Job, job_id, populate_existing=True)
    assert job.pretrained == {
        "source": "hub",
        "detail": "timm resnet18.a1_in1k",
        "pretraining": "ImageNet-1k",
        "planned": False,
    }
    row = db.query(WeightsEntry).one()
    assert (row.framework, row.model_name, row.key, row.sha256, row.size) == (
        "timm",
        "resnet18",
        "weights/timm/resnet18/",
        "a" * 64,
        123,
    )
    assert row.source == "hub:timm/resnet18.a1_in1k" and row.license == "apache-2.0"
    # a cache report for another model's prefix is not believed
    job2, _ = make_job(session_factory, user.id, status="running", model_name="resnet34")
    bad = {**report, "cached": {**report["cached"], "key": "weights/timm/resnet18/"}}
    append_event(db, job2, "log", {"level": "info", "message": "x", "weights": bad}, source="trainer")
    assert db.query(WeightsEntry).count() == 1
    scratch = {"source": "scratch", "detail": "", "pretraining": None, "warning": "hub unreachable"}
    append_event(db, job2, "log", {"level": "warning", "message": "x", "weights": scratch}, source="trainer")
    assert db.get(Job, job2, populate_existing=True).pretrained["warning"] == "hub unreachable"


# ---------------------------------------------------------------------------------- REST + jobs


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    fake = write_fake_python(tmp_path / "fake-python", mode="sleep", seconds=120)
    return make_settings(
        db_url,
        tmp_path,
        trainer_python_timm=fake,
        trainer_python_ultralytics=fake,
        trainer_python_transformers=fake,
        max_concurrent_jobs=1,
        admin_emails="boss@example.com",
    )


def test_rest_lists_for_users_and_uploads_for_administrators_only(client: TestClient, make_user: MakeUser) -> None:
    _, user = make_user()
    _, boss = make_user("boss@example.com")  # registered after start-up: promoted by the CLI below
    assert client.get(f"{API}/weights", headers=user).json() == []
    files = {"file": ("r18.safetensors", small_safetensors(), "application/octet-stream")}
    r = client.post(f"{API}/weights", data={"model": "resnet18"}, files=files, headers=user)
    assert r.status_code == 403, r.text
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        weights_tools.set_admin(db, "boss@example.com")
    r = client.post(
        f"{API}/weights", data={"model": "resnet18", "pretraining": "ImageNet-1k"}, files=files, headers=boss
    )
    assert r.status_code == 201, r.text
    assert r.json()["key"] == "weights/timm/resnet18/" and r.json()["source"] == "upload"
    again = client.post(f"{API}/weights", data={"model": "resnet18"}, files=files, headers=boss)
    assert again.status_code == 409
    junk = {"file": ("x.pt", b"PK\x03\x04 broken", "application/octet-stream")}
    bad = client.post(f"{API}/weights", data={"model": "resnet34"}, files=junk, headers=boss)
    assert bad.status_code == 422 and "x.pt" in bad.text
    listed = client.get(f"{API}/weights", headers=user).json()
    assert [(e["framework"], e["model_name"], e["pretraining"]) for e in listed] == [
        ("timm", "resnet18", "ImageNet-1k")
    ]
    assert client.get(f"{API}/weights").status_code == 401


def test_jobs_show_their_pretrained_plan_and_the_spec_carries_it(client: TestClient, make_user: MakeUser) -> None:
    _, h = make_user()
    upload_dataset(client, h, "tiny", classification_files(12))
    r = client.post(f"{API}/jobs", json={"intent": {"dataset": "tiny", "model_name": "resnet18"}}, headers=h)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["pretrained"] == {
        "source": "hub",
        "detail": "timm resnet18.a1_in1k",
        "pretraining": "ImageNet-1k",
        "planned": True,
        "download": "auto",
    }
    spec_path = client.app.state.supervisor.runtime.spec_path(job["id"])  # type: ignore[attr-defined]
    wait_for(lambda: spec_path.is_file(), timeout=30)
    spec = json.loads(spec_path.read_text())
    assert spec["pretrained"]["source"] == "hub" and spec["pretrained"]["hub_repo"] == "timm/resnet18.a1_in1k"
    assert client.get(f"{API}/jobs/{job['id']}", headers=h).json()["pretrained"] == job["pretrained"]


def test_cli_imports_lists_and_promotes(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from web.cli import main

    if not db_url.startswith("sqlite"):
        pytest.skip("the CLI test uses the data dir's SQLite database")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    data = tmp_path / "cli-data"
    f = tmp_path / "w.safetensors"
    f.write_bytes(small_safetensors())
    assert main(["weights", "--data-dir", str(data), "import", str(f), "--model", "resnet18"]) == 0
    assert main(["weights", "--data-dir", str(data), "import", str(f), "--model", "resnet18"]) == 1  # exists
    assert main(["users", "--data-dir", str(data), "promote", "nobody@example.com"]) == 1
    assert (data / "storage").exists()


def test_cli_pull_fetches_from_the_hub_and_imports(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hf_constants

    from tests.trainer_runtime.hub_server import FileServer
    from web.cli import main

    if not db_url.startswith("sqlite"):
        pytest.skip("the CLI test uses the data dir's SQLite database")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    data = tmp_path / "cli-data"
    with FileServer() as hub:
        hub.add_hub_file("timm/resnet18.a1_in1k", "model.safetensors", small_safetensors())
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert main(["weights", "--data-dir", str(data), "pull", "resnet18"]) == 0
    stored = data / "storage" / "internal" / "training-checkpoints" / "weights" / "timm" / "resnet18"
    assert (stored / "model.safetensors").read_bytes() == small_safetensors()
    assert main(["weights", "--data-dir", str(data), "pull", "resnet18"]) == 1  # already there
