"""Full-stack checks that need a real Docker engine or a real Kubernetes cluster.

Each test is SKIPPED, with the reason, only when that runtime is absent: `docker info` fails (no
engine), or there is no kubeconfig with a current context and no in-cluster service account.
When the runtime is there the test runs to the end and fails on any problem: there is no other
way out of it.

* `test_compose_stack_comes_up_healthy`: ``docker compose up --build --wait`` with a generated
  env file (target ``api``, no torch, to keep the build short), then the server's /health and
  /metrics, both MinIO stores with their buckets, MLflow's /health, Prometheus scraping the
  api, Grafana with the provisioned datasource and dashboard; ``down -v`` at the end. It publishes
  the stack's fixed host ports (8000, 5000, 5432, 6379, 9000-9003, 9090, 3000) on 127.0.0.1.
* `test_kubernetes_executor_on_a_real_cluster`: one Job through `KubernetesExecutor` in
  ``$VTA_K8S_TEST_NAMESPACE`` (default ``default``) with the image ``$VTA_K8S_TEST_IMAGE``
  (default ``vta-trainer-timm:latest``: build it with deploy/docker/Dockerfile.trainer and load it
  into the cluster first, e.g. ``kind load docker-image``). Its storage endpoints point nowhere,
  so the real trainer must start, fail to reach the dataset store and exit 1, and its log must
  come back through the API.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def docker_unavailable() -> str | None:
    exe = shutil.which("docker")
    if exe is None:
        return "no docker CLI on PATH"
    try:
        result = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`docker info` failed: {exc}"
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        return f"`docker info` failed: {lines[-1] if lines else result.returncode}"
    return None


def cluster_unavailable() -> str | None:
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    path = Path(os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config").expanduser()
    if not path.is_file():
        return f"no kubeconfig ({path} does not exist) and not running in a cluster"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return f"kubeconfig {path} unreadable: {exc}"
    if not data.get("current-context"):
        return f"kubeconfig {path} has no current-context"
    return None


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError) as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_compose_stack_comes_up_healthy(tmp_path: Path) -> None:
    reason = docker_unavailable()
    if reason is not None:
        pytest.skip(f"needs a Docker engine: {reason}")
    docker = shutil.which("docker")
    assert docker is not None
    project = f"vta-test-{secrets.token_hex(3)}"
    values = {
        "API_BUILD_TARGET": "api",
        "VTA_IMAGE_TAG": project,
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "MINIO_DATASETS_ROOT_PASSWORD": secrets.token_hex(12),
        "MINIO_RESULTS_ROOT_PASSWORD": secrets.token_hex(12),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(12),
        "SECRET_KEY": secrets.token_urlsafe(48),
        "CREATE_DEMO_DATASETS": "false",
    }
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    base = [
        docker,
        "compose",
        "--project-name",
        project,
        "--env-file",
        str(env_file),
        "-f",
        str(ROOT / "docker-compose.yaml"),
    ]

    def run(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)

    config = run("config", "--quiet", timeout=120)
    assert config.returncode == 0, config.stderr
    try:
        up = run("up", "-d", "--build", "--wait", "--wait-timeout", "900")
        if up.returncode != 0:
            logs = run("logs", "--no-color", "--tail", "80", timeout=120)
            raise AssertionError(f"docker compose up failed:\n{up.stderr[-4000:]}\n{logs.stdout[-8000:]}")
        with httpx.Client(timeout=10) as http:
            assert http.get("http://127.0.0.1:8000/health").json()["status"] == "ok"
            assert "vta_jobs" in http.get("http://127.0.0.1:8000/metrics").text
            assert http.get("http://127.0.0.1:5000/health").status_code == 200
            import boto3
            from botocore.config import Config

            for port, user, password, buckets in (
                (9000, "vta-datasets", values["MINIO_DATASETS_ROOT_PASSWORD"], {"training-datasets"}),
                (
                    9002,
                    "vta-results",
                    values["MINIO_RESULTS_ROOT_PASSWORD"],
                    {"training-checkpoints", "training-results", "model-weights", "mlflow-artifacts"},
                ),
            ):
                s3 = boto3.client(
                    "s3",
                    endpoint_url=f"http://127.0.0.1:{port}",
                    aws_access_key_id=user,
                    aws_secret_access_key=password,
                    region_name="us-east-1",
                    config=Config(request_checksum_calculation="when_required"),
                )
                assert buckets <= {b["Name"] for b in s3.list_buckets()["Buckets"]}

            def api_scraped() -> bool:
                targets = http.get("http://127.0.0.1:9090/api/v1/targets").json()["data"]["activeTargets"]
                return any(t["labels"]["job"] == "vision-training-agent" and t["health"] == "up" for t in targets)

            wait_until(api_scraped, 120, "Prometheus to scrape the api")
            auth = ("admin", values["GRAFANA_ADMIN_PASSWORD"])
            assert http.get("http://127.0.0.1:3000/api/datasources/uid/vta-prometheus", auth=auth).status_code == 200
            dash = http.get("http://127.0.0.1:3000/api/dashboards/uid/vta-overview", auth=auth)
            assert dash.status_code == 200 and dash.json()["dashboard"]["title"] == "Vision Training Agent"
    finally:
        run("down", "-v", "--remove-orphans", timeout=600)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kubernetes_executor_on_a_real_cluster(tmp_path: Path) -> None:
    reason = cluster_unavailable()
    if reason is not None:
        pytest.skip(f"needs a Kubernetes cluster: {reason}")
    from tools.executors.k8s_manifests import KubernetesConfig
    from tools.executors.kubernetes import KubernetesExecutor

    lines: list[str] = []
    executor = KubernetesExecutor(
        KubernetesConfig(
            in_cluster=bool(os.environ.get("KUBERNETES_SERVICE_HOST")),  # as web.config.Settings.kubernetes
            kubeconfig=os.environ.get("KUBECONFIG"),
            namespace=os.environ.get("VTA_K8S_TEST_NAMESPACE", "default"),
            images={"timm": os.environ.get("VTA_K8S_TEST_IMAGE", "vta-trainer-timm:latest")},
            cpu_request="100m",
            memory_request="256Mi",
            memory_limit="1Gi",
            shm_size=None,
            poll_interval_s=1.0,
            start_timeout_s=180,
            ttl_after_finished_s=300,
        ),
        log_sink=lambda job_id, entries: lines.extend(e["message"] for e in entries),
    )
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "job_id": 990001,
                "framework": "timm",
                "model_name": "resnet18",
                "task_type": "image_classification",
                "dataset_id": "nowhere",
                "hyperparameters": {"epochs": 1, "device": "cpu"},
                "storage": {
                    "external": {"endpoint": "http://127.0.0.1:1", "bucket": "training-datasets"},
                    "internal": {"endpoint": "http://127.0.0.1:1", "bucket": "training-checkpoints"},
                },
                "mlflow": {"enabled": False},
            }
        )
    )
    handle = executor.start(990001, spec, resume=False)
    try:
        info = wait_until(lambda: executor.poll(handle), 600, "the trainer Job to end")
        assert info.returncode == 1, info.log_tail  # 2 with "could not start": the image is missing
        assert "storage" in info.log_tail.lower() and lines, info.log_tail
    finally:
        executor.kill(handle)
        executor.close()
