"""`tools.executors.kubernetes.KubernetesExecutor` against a local stand-in for the Kubernetes API
(`tests.k8s_fake.FakeKubeAPI`, a threaded http.server on 127.0.0.1) with the official client
pointed at it. Every request body is read into the official `kubernetes.client` model (unknown
fields rejected): `api.errors` must stay empty. The last tests drive the real `Supervisor` (SQLite
and PostgreSQL when configured): a pod failure leads to a retry with `--resume`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.k8s_fake import FakeKubeAPI, strict_load
from tests.live_server import wait_for
from tools import jobs
from tools.db.models import Job, JobEvent, User
from tools.events import append_event
from tools.executors.base import ExecHandle, ExitInfo
from tools.executors.k8s_manifests import KubernetesConfig, parse_node_selector, parse_tolerations
from tools.executors.kubernetes import KubernetesExecutor, make_event_log_sink, map_exit_code, parse_log_ts
from tools.supervisor import Supervisor, SupervisorConfig
from trainer_runtime.spec import load_spec
from trainer_runtime.storage import StorageConfig, StoreConfig

NS = "vta-test"
S3 = StorageConfig(
    external=StoreConfig(
        endpoint="http://minio-datasets:9000", access_key="ak", secret_key="sk", bucket="training-datasets"
    ),
    internal=StoreConfig(
        endpoint="http://minio-results:9000", access_key="ak2", secret_key="sk2", bucket="training-checkpoints"
    ),
    local_root=Path("/nonexistent/storage"),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI(namespace=NS) as fake:
        yield fake
        assert fake.errors == [], fake.errors


class Logs:
    def __init__(self) -> None:
        self.entries: list[tuple[int, dict[str, Any]]] = []

    def __call__(self, job_id: int, entries: list[dict[str, Any]]) -> None:
        self.entries.extend((job_id, e) for e in entries)

    def messages(self, source: str = "pod") -> list[str]:
        return [e["message"] for _, e in self.entries if e["source"] == source]


def make_executor(
    api: FakeKubeAPI, clock: Clock | None = None, logs: Logs | None = None, **over: Any
) -> KubernetesExecutor:
    cfg: dict[str, Any] = dict(namespace=NS, poll_interval_s=0.0, termination_grace_s=20)
    cfg.update(over)
    return KubernetesExecutor(
        KubernetesConfig(**cfg), api_client=api.api_client(), log_sink=logs, clock=clock or Clock()
    )


def write_spec(tmp_path: Path, job_id: int = 7, framework: str = "timm", **over: Any) -> Path:
    spec: dict[str, Any] = {
        "job_id": job_id,
        "project_id": None,
        "framework": framework,
        "model_name": "resnet18" if framework == "timm" else "yolo11n",
        "task_type": "image_classification" if framework == "timm" else "object_detection",
        "dataset_id": "ds1",
        "snapshot_id": "snap1",
        "hyperparameters": {"epochs": 2, "device": "auto"},
        "storage": {
            "external": {"endpoint": "http://minio-datasets:9000", "bucket": "training-datasets"},
            "internal": {"endpoint": "http://minio-results:9000", "bucket": "training-checkpoints"},
            "local_root": "/srv/server/data/storage",
        },
        "callback_url": f"http://vta-api:8000/internal/jobs/{job_id}/events",
        "callback_token": "tok-secret",
        "work_dir": "/srv/server/data/trainer",
    }
    for key, value in over.items():
        spec[key] = value
    path = tmp_path / f"job_{job_id}" / "spec.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec))
    return path


def poll_until(ex: KubernetesExecutor, h: ExecHandle, timeout: float = 10.0) -> ExitInfo:
    info: ExitInfo = wait_for(lambda: ex.poll(h), timeout, interval=0.01, what="the Job's end")
    return info


# ----------------------------------------------------------------------------------- helpers


def test_log_timestamps_exit_codes_and_setting_parsers() -> None:
    assert parse_log_ts("2024-05-01T10:00:00.5Z") == parse_log_ts("2024-05-01T10:00:00.500000000Z")
    assert parse_log_ts("2024-05-01T10:00:00Z") < parse_log_ts("2024-05-01T10:00:00.000000001Z")  # type: ignore[operator]
    assert parse_log_ts("2024-05-01T12:00:00+02:00") == parse_log_ts("2024-05-01T10:00:00Z")
    assert parse_log_ts("not-a-time") is None and parse_log_ts("2024-05-01T10:00:00") is None
    assert [map_exit_code(c) for c in (0, 1, 2, 130, 137, 143)] == [0, 1, 2, 130, -9, -15]
    assert map_exit_code(137, "OOMKilled") == -9 and map_exit_code(None) is None
    assert parse_node_selector(" gpu=a100 , pool=train ") == {"gpu": "a100", "pool": "train"}
    with pytest.raises(ValueError, match="key=value"):
        parse_node_selector("gpu")
    assert parse_tolerations('[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]')[0]["key"]
    with pytest.raises(ValueError):
        parse_tolerations('{"key": "x"}')


@pytest.mark.slow
def test_the_server_imports_and_runs_locally_without_the_kubernetes_package() -> None:
    """`kubernetes` is an optional extra: importing the app and the executors must not need it, and
    asking for the Kubernetes executor without it says how to install it."""
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "kubernetes":
            raise ImportError("no kubernetes here")
sys.meta_path.insert(0, Block())
import web.main, tools.executors
from tools.executors.kubernetes import KubernetesExecutor, KubernetesUnavailableError
try:
    KubernetesExecutor()
except KubernetesUnavailableError as exc:
    print("refused:", exc)
assert "kubernetes" not in sys.modules
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "refused: EXECUTOR=kubernetes needs the official Kubernetes client" in result.stdout
    assert "vision-training-agent[k8s]" in result.stdout


# ----------------------------------------------------------------------------------- start


def test_start_creates_a_job_and_its_spec_secret_per_the_official_schema(api: FakeKubeAPI, tmp_path: Path) -> None:
    ex = make_executor(
        api,
        images={"timm": "reg.example/vta-trainer-timm:1"},
        image_pull_secrets=("regcred",),
        service_account="vta-trainer",
        node_selector={"pool": "train"},
        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
        backoff_limit=2,
        active_deadline_s=3600,
        ttl_after_finished_s=600,
        work_pvc="vta-trainer-cache",
    )
    spec = write_spec(tmp_path)
    h = ex.start(7, spec, resume=False)
    assert h.external_id.startswith("vta-job-7-") and h.resume is False
    [body] = api.created_jobs()
    job = strict_load(body, "V1Job")  # the request body is a valid batch/v1 Job
    assert job.metadata.name == h.external_id and job.metadata.namespace == NS
    labels = job.metadata.labels
    assert labels["vision-training-agent/job-id"] == "7" and labels["vision-training-agent/framework"] == "timm"
    s = job.spec
    assert (s.completions, s.parallelism, s.backoff_limit) == (1, 1, 2)
    assert s.active_deadline_seconds == 3600 and s.ttl_seconds_after_finished == 600
    assert s.pod_replacement_policy == "Failed"
    rules = s.pod_failure_policy.rules
    assert rules[0].action == "Ignore" and rules[0].on_pod_conditions[0].type == "DisruptionTarget"
    assert rules[1].action == "FailJob" and rules[1].on_exit_codes.values == [2]
    assert rules[1].on_exit_codes.operator == "In" and rules[1].on_exit_codes.container_name == "trainer"
    pod = s.template.spec
    assert s.template.metadata.labels == labels
    assert pod.restart_policy == "Never" and pod.termination_grace_period_seconds == 20
    assert pod.service_account_name == "vta-trainer" and pod.automount_service_account_token is False
    assert [r.name for r in pod.image_pull_secrets] == ["regcred"] and pod.node_selector == {"pool": "train"}
    assert pod.tolerations[0].key == "nvidia.com/gpu" and pod.security_context.run_as_non_root is True
    [c] = pod.containers
    assert c.image == "reg.example/vta-trainer-timm:1"
    # every attempt, the first one too, runs with --resume (a fresh start when there is no last.pt)
    assert c.command == ["python", "-m", "trainer_runtime"]
    assert c.args == ["--spec", "/etc/vta/spec/spec.json", "--resume"]
    assert c.resources.requests == {"cpu": "2", "memory": "8Gi"} and c.resources.limits == {"memory": "16Gi"}
    assert c.security_context.allow_privilege_escalation is False
    mounts = {m.mount_path: m for m in c.volume_mounts}
    assert mounts["/etc/vta/spec"].read_only and "/var/lib/vta/trainer" in mounts and "/dev/shm" in mounts
    vols = {v.name: v for v in pod.volumes}
    assert vols["spec"].secret.secret_name == h.external_id
    assert vols["work"].persistent_volume_claim.claim_name == "vta-trainer-cache"
    assert vols["shm"].empty_dir.medium == "Memory"
    # the spec Secret: owned by the Job, the pod's work folders, the token inside
    secret = strict_load(api.secrets[h.external_id], "V1Secret")
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("Job", h.external_id, api.jobs[h.external_id]["metadata"]["uid"])
    pod_spec = load_spec(secret.string_data["spec.json"])
    assert pod_spec.work_dir == "/var/lib/vta/trainer" and pod_spec.callback_token == "tok-secret"
    assert pod_spec.storage.local_root == Path("/var/lib/vta/storage") and pod_spec.job_id == 7


SERVER_SECRETS = {
    "SECRET_KEY": "server-jwt-key",
    "SLACK_BOT_TOKEN": "xoxb-server",
    "LLM_API_KEY": "sk-server",
    "AWS_SECRET_ACCESS_KEY": "aws-server",
    "DATABASE_URL": "postgresql://vta:pw@db/vta",
}


def test_pods_get_a_fixed_environment_and_their_credentials_only_in_the_spec_secret(
    api: FakeKubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the server's secrets never reach a trainer pod; its own stores' credentials
    # come in the mounted spec Secret, nothing else
    for key, value in SERVER_SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HF_HOME", "/srv/hf")  # a server-side framework setting is not the pod's either
    ex = make_executor(api)
    store = {"access_key": "job-ak", "secret_key": "job-sk"}
    storage = {
        "external": {"endpoint": "http://minio-datasets:9000", "bucket": "training-datasets", **store},
        "internal": {"endpoint": "http://minio-results:9000", "bucket": "training-checkpoints", **store},
        "local_root": "/srv/server/data/storage",
    }
    h = ex.start(7, write_spec(tmp_path, storage=storage), resume=False)
    [c] = strict_load(api.jobs[h.external_id], "V1Job").spec.template.spec.containers
    assert {e.name: e.value for e in c.env} == {
        "PYTHONUNBUFFERED": "1",
        "VTA_JOB_ID": "7",
        "VTA_K8S_JOB": h.external_id,
    }
    assert all(e.value_from is None for e in c.env) and c.env_from is None
    body = json.dumps(api.jobs[h.external_id])
    for value in (*SERVER_SECRETS.values(), "/srv/hf", "job-ak", "job-sk", "tok-secret"):
        assert value not in body  # nothing secret in the Job object (readable by anyone who may list Jobs)
    secret = strict_load(api.secrets[h.external_id], "V1Secret")
    assert set(secret.string_data) == {"spec.json"}
    pod_spec = load_spec(secret.string_data["spec.json"])
    assert pod_spec.storage.internal.secret_key == "job-sk" and pod_spec.storage.external.access_key == "job-ak"
    assert not any(v in secret.string_data["spec.json"] for v in SERVER_SECRETS.values())


def test_gpu_requests_follow_the_jobs_device(api: FakeKubeAPI, tmp_path: Path) -> None:
    def resources(gpus_per_job: int, device: str) -> Any:
        ex = make_executor(api, gpus_per_job=gpus_per_job, cpu_limit="4", memory_limit=None, shm_size=None)
        spec = write_spec(tmp_path, hyperparameters={"epochs": 1, "device": device})
        h = ex.start(7, spec, resume=True)
        pod = strict_load(api.jobs[h.external_id], "V1Job").spec.template.spec
        assert "shm" not in {v.name for v in pod.volumes}
        return pod.containers[0].resources

    assert resources(0, "auto").limits == {"cpu": "4"}
    assert resources(1, "auto").limits == {"cpu": "4", "nvidia.com/gpu": "1"}
    assert resources(0, "cuda:0").requests["nvidia.com/gpu"] == "1"
    assert resources(2, "cuda").limits["nvidia.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in resources(2, "cpu").limits


def test_local_storage_and_unknown_images_are_refused_before_anything_is_created(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    ex = make_executor(api, images={"timm": "t:1"})
    local = write_spec(tmp_path, storage={"external": {"bucket": "d"}, "internal": {"bucket": "c"}})
    with pytest.raises(ValueError, match="external and internal store is a local folder"):
        ex.start(7, local, resume=False)
    with pytest.raises(ValueError, match="no trainer image configured for framework 'ultralytics'"):
        ex.start(8, write_spec(tmp_path, job_id=8, framework="ultralytics"), resume=False)
    assert api.created_jobs() == [] and api.secrets == {}


def test_a_new_attempt_deletes_the_unfinished_job_of_an_earlier_one(api: FakeKubeAPI, tmp_path: Path) -> None:
    ex = make_executor(api)
    spec = write_spec(tmp_path)
    api.behaviours = ["run", "complete"]
    first = ex.start(7, spec, resume=False)
    done = ex.start(7, spec, resume=True)
    assert first.external_id not in api.jobs  # deleted (Background) before the new Job was made
    third = ex.start(7, spec, resume=True)
    assert done.external_id in api.jobs and third.external_id in api.jobs  # a finished Job stays (ttl)
    deletes = [r for r in api.requests if r.method == "DELETE"]
    assert [(r.path.rsplit("/", 1)[-1], r.body["propagationPolicy"]) for r in deletes] == [
        (first.external_id, "Background")
    ]


# ----------------------------------------------------------------------------------- poll


def test_poll_maps_the_job_status_to_exit_info(api: FakeKubeAPI, tmp_path: Path) -> None:
    ex = make_executor(api)
    spec = write_spec(tmp_path)

    def run(finish: Any) -> ExitInfo:
        h = ex.start(7, spec, resume=False)
        pod = api.run_pod(h.external_id, ["epoch 1", "epoch 2"])
        assert ex.poll(h) is None  # running
        finish(h.external_id, pod)
        return poll_until(ex, h)

    ok = run(lambda job, pod: api.finish(job, 0))
    assert ok.returncode == 0 and "epoch 2" in ok.log_tail
    crashed = run(lambda job, pod: api.finish(job, 1))
    assert crashed.returncode == 1
    assert crashed.log_tail.splitlines()[:2] == ["epoch 1", "epoch 2"]
    assert "[kubernetes] Kubernetes Job" in crashed.log_tail and "BackoffLimitExceeded" in crashed.log_tail
    assert "exit 1" in crashed.log_tail
    assert run(lambda job, pod: api.finish(job, 137)).returncode == -9
    oom = run(lambda job, pod: api.finish(job, 137, "OOMKilled"))
    assert oom.returncode == -9 and "OOMKilled" in oom.log_tail
    assert run(lambda job, pod: api.finish(job, 2)).returncode == 2
    # the pods already gone: the reason says exit code 2 (the only FailJob rule)
    assert run(lambda job, pod: api.finish(job, 2, drop_pods=True)).returncode == 2
    assert run(lambda job, pod: api.finish(job, 1, drop_pods=True)).returncode is None
    vanished = run(lambda job, pod: api._remove_job(job))
    assert vanished.returncode is None and "disappeared" in vanished.log_tail


def test_a_preempted_pod_is_replaced_inside_the_job_and_both_logs_are_streamed(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    logs = Logs()
    ex = make_executor(api, logs=logs)
    h = ex.start(7, write_spec(tmp_path), resume=False)
    first = api.run_pod(h.external_id, ["attempt a: epoch 1"])
    assert ex.poll(h) is None
    second = api.preempt(h.external_id)  # DisruptionTarget: ignored by the podFailurePolicy
    api.log(second, "resuming from last.pt")
    assert ex.poll(h) is None  # the Job itself goes on
    api.finish(h.external_id, 0)
    info = poll_until(ex, h)
    assert info.returncode == 0
    assert [(e["pod"], e["message"]) for _, e in logs.entries if e["source"] == "pod"] == [
        (first, "attempt a: epoch 1"),
        (second, "resuming from last.pt"),
    ]


def test_log_lines_become_log_events_once_each(api: FakeKubeAPI, tmp_path: Path) -> None:
    logs = Logs()
    ex = make_executor(api, logs=logs)
    h = ex.start(7, write_spec(tmp_path), resume=False)
    pod = api.run_pod(h.external_id)
    from datetime import UTC, datetime

    same = datetime.now(UTC)
    api.log(pod, "INFO one", same)
    api.log(pod, "INFO two", same)  # the same timestamp twice
    assert ex.poll(h) is None
    assert ex.poll(h) is None  # nothing new: nothing emitted again
    api.log(pod, "2024 WARNING slow data loader")
    api.log(pod, "Traceback (most recent call last):")
    api.log(pod, "epoch 3/10 ████ 50%\repoch 3/10 ████████ 100%")
    assert ex.poll(h) is None
    assert logs.messages() == [
        "INFO one",
        "INFO two",
        "2024 WARNING slow data loader",
        "Traceback (most recent call last):",
        "epoch 3/10 ████████ 100%",
    ]
    levels = [e["level"] for _, e in logs.entries]
    assert levels == ["info", "info", "warning", "error", "info"]
    assert {j for j, _ in logs.entries} == {7} and {e["pod"] for _, e in logs.entries} == {pod}
    # a sinceSeconds window is asked for after the first read
    reads = [r for r in api.requests if r.path.endswith("/log")]
    assert "sinceSeconds" not in reads[0].query and "sinceSeconds" in reads[1].query
    assert all(r.query["timestamps"][0].lower() == "true" and r.query["container"] == ["trainer"] for r in reads)


def test_streaming_can_be_turned_off_and_the_tail_still_comes(api: FakeKubeAPI, tmp_path: Path) -> None:
    logs = Logs()
    ex = make_executor(api, logs=logs, stream_logs=False)
    api.behaviours = [("fail", 1)]
    h = ex.start(7, write_spec(tmp_path), resume=False)
    info = poll_until(ex, h)
    assert info.returncode == 1 and "RuntimeError: boom" in info.log_tail and logs.entries == []


def test_pending_reasons_are_reported_and_a_pod_that_cannot_start_fails_the_attempt(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    clock, logs = Clock(), Logs()
    ex = make_executor(api, clock=clock, logs=logs, start_timeout_s=300)
    api.behaviours = [("wait", "ImagePullBackOff")]
    h = ex.start(7, write_spec(tmp_path), resume=False)
    assert ex.poll(h) is None and ex.poll(h) is None
    clock.now += 299
    assert ex.poll(h) is None
    assert logs.messages("kubernetes") == [f"pod {api.pods_of(h.external_id)[0]}: ImagePullBackOff: pulling failed"]
    clock.now += 2
    info = ex.poll(h)
    assert info is not None and info.returncode == 2  # not retried: the image or its credentials are wrong
    assert "could not start for 300s" in info.log_tail and "ImagePullBackOff" in info.log_tail
    assert h.external_id not in api.jobs


# ----------------------------------------------------------------------------------- stop / kill


def test_stop_deletes_the_job_in_the_foreground_and_reports_the_trainers_exit(api: FakeKubeAPI, tmp_path: Path) -> None:
    ex = make_executor(api)
    api.behaviours = ["run"]
    h = ex.start(7, write_spec(tmp_path), resume=False)
    assert ex.poll(h) is None
    ex.stop(h, grace_s=20)
    ex.stop(h, grace_s=20)  # once only
    [delete] = [r for r in api.requests if r.method == "DELETE"]
    assert delete.body["propagationPolicy"] == "Foreground"
    info = poll_until(ex, h)
    assert info.returncode == 130  # SIGTERM handled: best/last uploaded, exit 130
    assert h.external_id not in api.jobs and h.external_id not in api.secrets


def test_a_stop_that_hangs_is_forced_after_the_grace_period(api: FakeKubeAPI, tmp_path: Path) -> None:
    clock = Clock()
    ex = make_executor(api, clock=clock)
    api.behaviours = ["run"]
    api.delete_lag = 10**6  # the Job stays (pods stuck terminating)
    api.on_delete_exit_code = None
    h = ex.start(7, write_spec(tmp_path), resume=False)
    ex.stop(h, grace_s=20)
    for _ in range(3):
        assert ex.poll(h) is None
    clock.now += 20 + 30  # grace + margin
    api.delete_lag = 0
    info = poll_until(ex, h)
    deletes = [(r.path.split("/")[-2], r.body) for r in api.requests if r.method == "DELETE"]
    assert deletes[0] == ("jobs", {"propagationPolicy": "Foreground"})
    assert ("pods", {"gracePeriodSeconds": 0}) in deletes
    assert deletes[-1] == ("jobs", {"propagationPolicy": "Background"})
    assert info.returncode is None  # the trainer's own exit was never seen


def test_kill_deletes_the_pods_at_once_and_the_job_in_the_background(api: FakeKubeAPI, tmp_path: Path) -> None:
    ex = make_executor(api)
    api.behaviours = ["run"]
    h = ex.start(7, write_spec(tmp_path), resume=False)
    ex.kill(h)
    deletes = [(r.path.split("/")[-2], r.body) for r in api.requests if r.method == "DELETE"]
    assert deletes == [("pods", {"gracePeriodSeconds": 0}), ("jobs", {"propagationPolicy": "Background"})]
    assert poll_until(ex, h).returncode is None


# ----------------------------------------------------------------------------------- restarts


def test_is_alive_and_adopt_after_a_server_restart(api: FakeKubeAPI, tmp_path: Path) -> None:
    logs = Logs()
    ex = make_executor(api)
    spec = write_spec(tmp_path)
    api.behaviours = ["run"]
    h = ex.start(7, spec, resume=False)
    pod = api.pods_of(h.external_id)[0]
    assert ex.is_alive(h.external_id) and ex.is_alive(h.external_id, spec)
    assert not ex.is_alive("vta-job-7-nothere")
    # the next server process
    again = make_executor(api, logs=logs)
    assert again.adopt(8, h.external_id, spec) is None  # another job's Job
    assert again.adopt(7, "vta-job-7-nothere", spec) is None
    adopted = again.adopt(7, h.external_id, spec)
    assert adopted is not None and adopted.adopted and adopted.external_id == h.external_id
    assert again.poll(adopted) is None
    assert logs.entries == []  # what the previous server already streamed is not repeated
    api.log(pod, "after the restart")
    api.finish(h.external_id, 0)
    assert not again.is_alive(h.external_id)
    assert poll_until(again, adopted).returncode == 0
    assert logs.messages() == ["after the restart"]
    # a finished Job is adopted too, so its real exit is reported
    finished = again.adopt(7, h.external_id, spec)
    assert finished is not None and poll_until(again, finished).returncode == 0


# ----------------------------------------------------------------------------------- supervisor


@pytest.fixture
def owner(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as db:
        user = User(email="k8s@example.com", hashed_password="x")
        db.add(user)
        db.commit()
        return user.id


def queued_job(session_factory: sessionmaker[Session], owner: int) -> int:
    with session_factory() as db:
        job = Job(
            owner_id=owner,
            framework="timm",
            model_name="resnet18",
            task_type="image_classification",
            dataset_id="ds1",
            dataset_name="tiny",
            snapshot_id="snap1",
            hyperparameters={"epochs": 2, "batch_size": 4, "device": "auto"},
            epochs=2,
        )
        db.add(job)
        db.commit()
        job_id = job.id
        append_event(db, job_id, "status", {"status": "queued"}, source="server")
    return job_id


def supervisor(
    session_factory: sessionmaker[Session], api: FakeKubeAPI, tmp_path: Path, published: list[dict[str, Any]]
) -> Supervisor:
    def publish(job_id: int, event: dict[str, Any]) -> None:
        published.append(event)

    executor = KubernetesExecutor(
        KubernetesConfig(namespace=NS, poll_interval_s=0.0),
        api_client=api.api_client(),
        log_sink=make_event_log_sink(session_factory, publish),
    )
    runtime = jobs.JobRuntimeConfig(
        trainer_dir=tmp_path / "trainer", storage=S3, callback_base_url="http://vta-api:8000"
    )
    cfg = SupervisorConfig(runtime=runtime, slots=2, max_retries=2, retry_base_delay_s=0.05, tick_s=0.02)
    return Supervisor(session_factory, executor, cfg, publish=publish)


def statuses(session_factory: sessionmaker[Session], job_id: int) -> list[str]:
    with session_factory() as db:
        rows = db.scalars(
            select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.type == "status").order_by(JobEvent.seq)
        )
        return [d["status"] for d in rows if not d.get("ignored")]


def wait_status(sup: Supervisor, session_factory: sessionmaker[Session], job_id: int, *wanted: str) -> Job:
    def check() -> Job | None:
        sup.tick()
        with session_factory() as db:
            job = db.get(Job, job_id)
            assert job is not None
            db.expunge(job)
        return job if job.status in wanted else None

    result: Job = wait_for(check, 20.0, interval=0.02, what=f"job {job_id} in {wanted}")
    return result


def test_a_pod_failure_makes_the_supervisor_retry_with_resume_in_a_new_job(
    api: FakeKubeAPI, tmp_path: Path, session_factory: sessionmaker[Session], owner: int
) -> None:
    published: list[dict[str, Any]] = []
    sup = supervisor(session_factory, api, tmp_path, published)
    job_id = queued_job(session_factory, owner)
    api.behaviours = [("fail", 1), "complete"]
    sup.submit(job_id)
    done = wait_status(sup, session_factory, job_id, "completed", "failed")
    assert done.status == "completed", done.error
    assert statuses(session_factory, job_id) == ["queued", "interrupted", "resuming", "completed"]
    assert done.attempts == 2 and done.executor == "kubernetes"
    first, second = api.created_jobs()
    assert done.external_id == second["metadata"]["name"] != first["metadata"]["name"]
    for body in (first, second):
        assert body["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--resume"
        assert body["metadata"]["labels"]["vision-training-agent/job-id"] == str(job_id)
    # each attempt's Secret carries that attempt's token (the supervisor writes a fresh spec)
    tokens = [
        load_spec(api.secrets[b["metadata"]["name"]]["stringData"]["spec.json"]).callback_token for b in (first, second)
    ]
    assert tokens[0] and tokens[1] and tokens[0] != tokens[1]
    assert jobs.hash_token(tokens[1]) == done.token_hash
    # the interrupted event carries the pod's log tail; the pods' lines are the job's log events
    with session_factory() as db:
        events = [
            (e.type, e.data)
            for e in db.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))
        ]
    interrupted = next(d for t, d in events if t == "status" and d["status"] == "interrupted")
    assert interrupted["exit_code"] == 1 and "RuntimeError: boom" in interrupted["error"]
    pod_lines = [d["message"] for t, d in events if t == "log" and d.get("source") == "pod"]
    assert pod_lines[:3] == ["training", "Traceback (most recent call last):", "RuntimeError: boom"]
    assert pod_lines[-2:] == ["training", "done"]
    assert any(e["type"] == "log" for e in published)  # fanned out like every other event


def test_exit_2_fails_the_job_without_a_retry(
    api: FakeKubeAPI, tmp_path: Path, session_factory: sessionmaker[Session], owner: int
) -> None:
    sup = supervisor(session_factory, api, tmp_path, [])
    job_id = queued_job(session_factory, owner)
    api.behaviours = [("fail", 2)]
    sup.submit(job_id)
    failed = wait_status(sup, session_factory, job_id, "failed")
    assert failed.attempts == 1 and len(api.created_jobs()) == 1
    assert "PodFailurePolicy" in (failed.error or "")


def test_stop_of_a_running_job_deletes_its_kubernetes_job(
    api: FakeKubeAPI, tmp_path: Path, session_factory: sessionmaker[Session], owner: int
) -> None:
    sup = supervisor(session_factory, api, tmp_path, [])
    job_id = queued_job(session_factory, owner)
    api.behaviours = ["run"]
    sup.submit(job_id)
    wait_status(sup, session_factory, job_id, "preparing")
    with session_factory() as db:
        job = db.get(Job, job_id)
        assert job is not None
        job.stop_requested = True
        db.commit()
    stopped = wait_status(sup, session_factory, job_id, "stopped")
    assert stopped.attempts == 1 and api.jobs == {}
    assert [r.body["propagationPolicy"] for r in api.requests if r.method == "DELETE"] == ["Foreground"]
