"""EXECUTOR / K8S_* settings (`web.config`) and the executor `web.main.create_supervisor` builds
from them; the Kubernetes client is configured from a kubeconfig that points at the local
stand-in of the Kubernetes API (`tests.k8s_fake`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import make_settings
from tests.k8s_fake import FakeKubeAPI
from tests.live_server import classification_files, wait_for
from tools import datasets as ds_svc
from tools.context import ToolContext
from tools.db.models import User
from tools.executors import KubernetesExecutor, LocalExecutor
from tools.executors.kubernetes import KubernetesUnavailableError
from tools.uploads import Staging
from web.config import Settings
from web.main import create_app, create_supervisor, kubernetes_config_from_settings


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI(namespace="vta-test") as fake:
        yield fake
        assert fake.errors == [], fake.errors


@pytest.fixture
def kubeconfig(api: FakeKubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
                "users": [{"name": "me", "user": {"token": "t0k3n"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me", "namespace": "vta-test"}}],
                "current-context": "fake",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


def test_k8s_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "EXECUTOR": "kubernetes",
        "K8S_NAMESPACE": "training",
        "K8S_IMAGE_TIMM": "reg.example/timm:2",
        "K8S_IMAGE_PULL_SECRETS": "a, b",
        "K8S_GPUS_PER_JOB": "1",
        "K8S_CPU_LIMIT": "",
        "K8S_MEMORY_LIMIT": "",
        "K8S_NODE_SELECTOR": "pool=gpu",
        "K8S_TOLERATIONS": '[{"key": "nvidia.com/gpu", "operator": "Exists"}]',
        "K8S_ACTIVE_DEADLINE_S": "0",
        "K8S_WORK_PVC": "cache",
        "STOP_GRACE_PERIOD_S": "45",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.executor == "kubernetes" and settings.resolved_max_concurrent_jobs == 4
    cfg = kubernetes_config_from_settings(settings)
    assert cfg.namespace == "training" and cfg.images["timm"] == "reg.example/timm:2"
    assert cfg.images["ultralytics"] == "vta-trainer-ultralytics:latest"
    assert cfg.image_pull_secrets == ("a", "b") and cfg.gpus_per_job == 1
    assert cfg.cpu_limit is None and cfg.memory_limit is None and cfg.memory_request == "8Gi"
    assert cfg.node_selector == {"pool": "gpu"} and cfg.tolerations[0]["operator"] == "Exists"
    assert cfg.active_deadline_s is None and cfg.work_pvc == "cache" and cfg.termination_grace_s == 45
    monkeypatch.setenv("EXECUTOR", "docker")
    with pytest.raises(ValueError, match="executor"):
        Settings(_env_file=None)


def test_the_default_executor_stays_local(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path)
    with TestClient(create_app(settings)) as client:
        assert isinstance(client.app.state.supervisor.executor, LocalExecutor)  # type: ignore[attr-defined]


def test_create_supervisor_builds_a_kubernetes_executor_from_the_kubeconfig(
    db_url: str, tmp_path: Path, kubeconfig: Path, api: FakeKubeAPI
) -> None:
    k8s = {"in_cluster": False, "image_timm": "reg.example/timm:3"}
    settings = make_settings(db_url, tmp_path, executor="kubernetes", k8s=k8s)
    with TestClient(create_app(settings)) as client:
        sup = client.app.state.supervisor  # type: ignore[attr-defined]
        ex = sup.executor
        assert isinstance(ex, KubernetesExecutor)
        assert ex.namespace == "vta-test"  # the kubeconfig context's namespace
        assert ex.config.images["timm"] == "reg.example/timm:3" and ex.log_sink is not None
        assert sup.config.slots == 4
        assert ex.api_client.configuration.host == api.url
        assert ex.is_alive("vta-job-1-abcdef") is False  # a real call through the kubeconfig's cluster
        reads = [r for r in api.requests if r.method == "GET"]
        assert reads and reads[-1].path == "/apis/batch/v1/namespaces/vta-test/jobs/vta-job-1-abcdef"


def test_a_job_on_local_storage_fails_with_a_clear_reason(
    db_url: str, tmp_path: Path, kubeconfig: Path, api: FakeKubeAPI
) -> None:
    settings = make_settings(db_url, tmp_path, executor="kubernetes", k8s={"in_cluster": False})
    with TestClient(create_app(settings)) as client:
        r = client.post("/api/v1/auth/register", json={"email": "k@example.com", "password": "long enough password"})
        assert r.status_code == 201, r.text
        r = client.post("/api/v1/auth/token", data={"username": "k@example.com", "password": "long enough password"})
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        state = client.app.state  # type: ignore[attr-defined]
        with state.session_factory() as db:
            user = db.scalar(select(User).where(User.email == "k@example.com"))
            ctx = ToolContext(db=db, user=user, storage=state.storage, work_dir=state.work_dir)
            dataset_id = ds_svc.create_dataset(ctx, "tiny").id
            with Staging(ctx.work_dir, ctx.limits) as staging:
                for rel, data in classification_files(8).items():
                    staging.add_file(rel, data)
                ds_svc.upload_staged(ctx, dataset_id, staging, "auto")
        r = client.post(
            "/api/v1/jobs",
            json={"intent": {"dataset": "tiny", "model_name": "resnet18", "epochs": 1}},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]

        def failed() -> dict[str, object] | None:
            job: dict[str, object] = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
            return job if job["status"] == "failed" else None

        job = wait_for(failed, 30, interval=0.1, what="the job to fail")
        assert "needs S3/MinIO storage" in str(job["error"]) and "EXTERNAL_STORAGE_ENDPOINT" in str(job["error"])
    assert api.created_jobs() == []


def test_no_cluster_configuration_is_a_clear_startup_error(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = make_settings(db_url, tmp_path, executor="kubernetes")
    app = create_app(settings)
    app.state.session_factory = None
    with pytest.raises(KubernetesUnavailableError, match="kubeconfig"):
        create_supervisor(app, settings)
