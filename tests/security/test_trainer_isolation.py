"""Trainers are contained.

* A local trainer inherits an allow-list of the server's environment, never its secrets
  (SECRET_KEY, SLACK_BOT_TOKEN, LLM_API_KEY, AWS/storage keys, DATABASE_URL ...): checked on the
  environment the executor builds AND in a real child process that dumps its `os.environ`.
* Local trainers run under resource limits (memory, open files, processes; Settings), read back
  from ``/proc/<pid>/limits`` of a real child, and the memory limit really stops an allocation.
* `advanced_config.model_config` of transformers models is an allow-list with types and ranges
  (`trust_remote_code` & co. are refused with a 422 naming the key), at job creation and again in
  the trainer; an image size above the model's limit is refused with the limit named.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import MakeUser, make_settings
from tests.live_server import API, classification_files, upload_dataset, wait_for, write_fake_python
from tools.executors import LocalExecutor, TrainerLimits
from tools.executors.base import ExecHandle, ExitInfo
from tools.executors.sandbox import env_allowed, trainer_env
from tools.intent import TrainingIntent
from trainer_runtime.adapters.base import IMAGE_SIZE_LIMIT
from web.config import Settings
from web.main import create_supervisor

SERVER_SECRETS = {
    "SECRET_KEY": "server-jwt-signing-key",
    "SLACK_BOT_TOKEN": "xoxb-server-token",
    "SLACK_SIGNING_SECRET": "slack-signing-secret",
    "LLM_API_KEY": "sk-server-llm-key",
    "AWS_ACCESS_KEY_ID": "AKIASERVER",
    "AWS_SECRET_ACCESS_KEY": "aws-server-secret",
    "INTERNAL_STORAGE_SECRET_KEY": "minio-internal-secret",
    "EXTERNAL_STORAGE_ACCESS_KEY": "minio-external-access",
    "DATABASE_URL": "postgresql://vta:db-password@db/vta",
    "REDIS_URL": "redis://:redis-password@redis:6379/0",
    "HF_TOKEN": "hf_server_token",
    "VTA_SOME_SECRET": "vta-secret",
}
FRAMEWORK_SETTINGS = {
    "HF_HOME": "/srv/hf",
    "YOLO_CONFIG_DIR": "/srv/yolo",
    "TORCH_HOME": "/srv/torch",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
    "CUDA_VISIBLE_DEVICES": "0",
    "NVIDIA_VISIBLE_DEVICES": "all",
    "LC_ALL": "C.UTF-8",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "VTA_WEIGHTS_DIR": "/srv/weights",
}

# A stand-in interpreter (`<this> -m trainer_runtime --spec S`): dumps its environment and limits
# next to the spec; with ALLOCATE_MB set it first tries to allocate that much and reports how it went.
_DUMPER = """#!{python}
import json, os, sys, time
spec = sys.argv[sys.argv.index("--spec") + 1]
report = {{"env": dict(os.environ), "pid": os.getpid()}}
mb = int(os.environ.get("ALLOCATE_MB") or 0)
if mb:
    try:
        block = bytearray(mb * 1024 * 1024)
        report["allocated"] = len(block)
    except MemoryError:
        report["allocated"] = "MemoryError"
with open(spec + ".report.tmp", "w") as fh:
    json.dump(report, fh)
os.replace(spec + ".report.tmp", spec + ".report")
time.sleep(float(os.environ.get("LINGER_S") or 0))
"""


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**SERVER_SECRETS, **FRAMEWORK_SETTINGS}.items():
        monkeypatch.setenv(key, value)


def dumper(tmp_path: Path) -> str:
    path = tmp_path / "fake-python"
    path.write_text(_DUMPER.format(python=sys.executable))
    path.chmod(0o755)
    return str(path)


def spec_file(tmp_path: Path, job_id: int = 1) -> Path:
    spec = tmp_path / f"job_{job_id}" / "spec.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({"job_id": job_id, "framework": "timm"}))
    return spec


def run_trainer(ex: LocalExecutor, spec: Path) -> tuple[dict[str, Any], ExecHandle]:
    handle = ex.start(1, spec, resume=False)
    report = Path(f"{spec}.report")
    wait_for(report.exists, 60, interval=0.05, what="the trainer's report")
    return json.loads(report.read_text()), handle


def finish(ex: LocalExecutor, handle: ExecHandle) -> ExitInfo:
    info: ExitInfo = wait_for(lambda: ex.poll(handle), 60, interval=0.05, what="the trainer's exit")
    return info


# --------------------------------------------------------------------------------- environment


def test_the_executor_builds_an_allow_listed_environment(server_env: None) -> None:
    env = LocalExecutor(env={"VTA_EXPLICIT": "1"})._child_env(1)
    for key in SERVER_SECRETS:
        assert key not in env, key
    for key, value in FRAMEWORK_SETTINGS.items():
        assert env[key] == value, key
    assert env["PATH"] == os.environ["PATH"] and env["PYTHONUNBUFFERED"] == "1" and env["VTA_EXPLICIT"] == "1"
    assert not any(v in json.dumps(env) for v in SERVER_SECRETS.values())
    # a credential-looking name is refused under an allowed prefix; the operator can add names
    assert not env_allowed("HF_TOKEN") and not env_allowed("MLFLOW_S3_SECRET_KEY") and env_allowed("HF_HOME")
    assert env_allowed("MLFLOW_TRACKING_PASSWORD")  # the trainer's own tracking store
    extra = trainer_env({"CORP_CA": "x", "MYORG_A": "1", "SECRET_KEY": "s"}, "CORP_CA, MYORG_*")
    assert extra == {"CORP_CA": "x", "MYORG_A": "1"}


def test_a_real_trainer_process_cannot_see_the_servers_secrets(server_env: None, tmp_path: Path) -> None:
    ex = LocalExecutor({"timm": dumper(tmp_path)})
    report, handle = run_trainer(ex, spec_file(tmp_path))
    assert finish(ex, handle).returncode == 0
    env = report["env"]
    leaked = {k for k in env if k in SERVER_SECRETS} | {k for k, v in env.items() if v in SERVER_SECRETS.values()}
    assert leaked == set()
    assert env["HF_HOME"] == "/srv/hf" and env["OMP_NUM_THREADS"] == "2" and env["PATH"] == os.environ["PATH"]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(__file__).resolve().parents[2])


# --------------------------------------------------------------------------------- limits


def proc_limits(pid: int) -> dict[str, tuple[str, str]]:
    """/proc/<pid>/limits -> {"Max open files": (soft, hard), ...}."""
    out = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        parts = line[26:].split()
        out[line[:26].strip()] = (parts[0], parts[1])
    return out


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs Linux /proc")
def test_local_trainers_run_under_the_configured_limits(tmp_path: Path) -> None:
    ex = LocalExecutor(
        {"timm": dumper(tmp_path)},
        limits=TrainerLimits(memory_mb=256, open_files=200, processes=3000),
        env={"LINGER_S": "30", "ALLOCATE_MB": "512"},
    )
    report, handle = run_trainer(ex, spec_file(tmp_path))
    try:
        limits = proc_limits(int(handle.external_id))
        assert limits["Max data size"] == (str(256 * 1024 * 1024),) * 2
        assert limits["Max open files"] == ("200", "200")
        assert limits["Max processes"] == ("3000", "3000")
        assert report["allocated"] == "MemoryError"  # 512 MiB under a 256 MiB limit: refused, in the trainer
        assert report["pid"] == int(handle.external_id)
    finally:
        ex.kill(handle)
        finish(ex, handle)
    # 0 = unlimited: the server's own limits are inherited unchanged
    ex = LocalExecutor({"timm": dumper(tmp_path)}, limits=TrainerLimits(), env={"LINGER_S": "30"})
    _report, handle = run_trainer(ex, spec_file(tmp_path, 2))
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert proc_limits(int(handle.external_id))["Max open files"] == (str(soft), str(hard))
    finally:
        ex.kill(handle)
        finish(ex, handle)


def test_the_limits_and_allow_list_come_from_the_settings(
    tmp_path: Path, session_factory: sessionmaker[Session], db_url: str
) -> None:
    settings: Settings = make_settings(
        db_url,
        tmp_path,
        trainer_memory_limit_mb=2048,
        trainer_open_files_limit=512,
        trainer_process_limit=0,
        trainer_env_allow="CORP_CA",
    )
    app: Any = SimpleNamespace(state=SimpleNamespace(session_factory=session_factory))
    sup = create_supervisor(app, settings)
    try:
        ex = sup.executor
        assert isinstance(ex, LocalExecutor)
        assert ex.limits == TrainerLimits(memory_mb=2048, open_files=512, processes=0)
        assert ex.env_allow == "CORP_CA"
        defaults = Settings(_env_file=None)
        assert defaults.trainer_memory_limit_mb > 0 and defaults.trainer_open_files_limit > 0
        assert defaults.trainer_process_limit > 0
    finally:
        sup.shutdown(timeout=1)


# --------------------------------------------------------------------------------- job requests


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    fake = write_fake_python(tmp_path / "sleeping-python", mode="sleep", seconds=120)
    return make_settings(
        db_url,
        tmp_path,
        trainer_python_timm=fake,
        trainer_python_ultralytics=fake,
        trainer_python_transformers=fake,
        max_concurrent_jobs=1,
    )


@pytest.fixture
def alice(client: TestClient, make_user: MakeUser) -> Iterator[dict[str, str]]:
    headers = make_user()[1]
    upload_dataset(client, headers, "tiny", classification_files(12))
    yield headers
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


def create(client: TestClient, headers: dict[str, str], **intent: Any) -> Any:
    return client.post(f"{API}/jobs", json={"intent": {"dataset": "tiny", **intent}}, headers=headers)


VIT = "google/vit-base-patch16-224"


@pytest.mark.parametrize(
    ("model_config", "named"),
    [
        ({"trust_remote_code": True}, "trust_remote_code"),
        ({"num_hidden_layers": 2, "revision": "main"}, "revision"),
        ({"use_pretrained_backbone": True}, "use_pretrained_backbone"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
        ({"num_hidden_layers": 1000}, "num_hidden_layers"),
        ({"num_hidden_layers": True}, "num_hidden_layers"),
        ({"hidden_size": 100, "num_attention_heads": 3}, "hidden_size"),
        ({"num_queries": 10}, "num_queries"),  # a DETR field, not a ViT one
    ],
)
def test_model_config_outside_the_allow_list_is_a_422_naming_the_key(
    client: TestClient, alice: dict[str, str], model_config: dict[str, Any], named: str
) -> None:
    r = create(client, alice, model_name=VIT, advanced_config={"model_config": model_config})
    assert r.status_code == 422, r.text
    assert named in r.json()["detail"]
    assert client.get(f"{API}/jobs", headers=alice).json()["total"] == 0  # nothing half-made


def test_model_config_inside_the_allow_list_is_accepted(client: TestClient, alice: dict[str, str]) -> None:
    small = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "hidden_dropout_prob": 0.1}
    r = create(client, alice, model_name=VIT, image_size=32, advanced_config={"model_config": small})
    assert r.status_code == 201, r.text
    assert r.json()["config"]["model_config"] == small


def request_bound() -> int:
    """The bound of `TrainingIntent.image_size` (what a request body may carry at all), else the
    overall limit."""
    for meta in TrainingIntent.model_fields["image_size"].metadata:
        if getattr(meta, "le", None) is not None:
            return int(meta.le)
    return IMAGE_SIZE_LIMIT


@pytest.mark.parametrize(
    ("model", "size", "limit"),
    [
        ("resnet18", 100_000, request_bound()),
        ("resnet18", 8200, IMAGE_SIZE_LIMIT),
        ("resnet18", 4096, 2048),
        (VIT, 2048, 1024),
        ("yolo11n-cls", 3000, 2048),
    ],
)
def test_an_image_size_above_the_models_limit_is_a_422_naming_the_limit(
    client: TestClient, alice: dict[str, str], model: str, size: int, limit: int
) -> None:
    r = create(client, alice, model_name=model, image_size=size)
    assert r.status_code == 422, r.text
    detail = json.dumps(r.json()["detail"])  # (a request-schema error is a list; ours a sentence)
    assert "image_size" in detail and str(limit) in detail
    assert client.get(f"{API}/jobs", headers=alice).json()["total"] == 0


def test_the_trainer_checks_model_config_again_before_building_the_model() -> None:
    # a spec written by hand (or by an older server) does not get past the adapter either
    from trainer_runtime.adapters.base import ConfigError
    from trainer_runtime.adapters.transformers_adapter import build_model

    with pytest.raises(ConfigError, match="trust_remote_code"):
        build_model(VIT, "image_classification", ["a", "b"], 32, {"model_config": {"trust_remote_code": True}})
    with pytest.raises(ConfigError, match="num_queries"):
        build_model("facebook/detr-resnet-50", "object_detection", ["a"], 64, {"model_config": {"num_queries": 10**6}})


def test_local_weights_get_the_allow_list_of_their_architecture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer_runtime.adapters.base import ConfigError
    from trainer_runtime.adapters.transformers_adapter import model_model_config

    for name, model_type in (("acme__vit-tiny", "vit"), ("acme__mystery", "swin")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"model_type": model_type}))
    monkeypatch.setenv("VTA_WEIGHTS_DIR", str(tmp_path))
    cls = "image_classification"
    assert model_model_config("acme/vit-tiny", cls, {"num_hidden_layers": 2}) == {"num_hidden_layers": 2}
    with pytest.raises(ConfigError, match="'trust_remote_code' is not allowed for acme/vit-tiny"):
        model_model_config("acme/vit-tiny", cls, {"trust_remote_code": True})
    with pytest.raises(ConfigError, match="not supported for acme/mystery"):
        model_model_config("acme/mystery", cls, {"num_hidden_layers": 2})
    assert model_model_config("acme/mystery", cls, None) == {}
