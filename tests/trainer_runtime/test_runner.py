"""The runner with the fake adapter, in process: events against contract 4, checkpoint policy,
bad inputs, resume, uploads to local folders and to a real S3 endpoint (moto), MLflow."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.s3_fixtures import moto_external, moto_internal, s3_env, s3_storage_config  # noqa: F401
from tests.trainer_runtime.fake_adapter import FakeAdapter, dataset_dict, make_spec, publish_dataset
from tests.trainer_runtime.test_mlflow_logger import wait_for_run
from trainer_runtime.errors import StorageError
from trainer_runtime.events import EVENT_TYPES, JOB_STATUSES, ProgressEvent
from trainer_runtime.job_setup import JobPaths
from trainer_runtime.runner import EXIT_COMPLETED, EXIT_FAILED, EXIT_STOPPED, Runner
from trainer_runtime.spec import load_spec
from trainer_runtime.storage import DualStorageClient, LocalObjectStore, ObjectInfo, checkpoint_key

EVENT_KEYS = {"job_id", "seq", "ts", "type", "data", "event_id"}


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.work = tmp_path / "work"
        self.storage_root = tmp_path / "storage"
        self.storage = self.client()
        publish_dataset(self.storage, "ds1", tmp_dir=tmp_path / "blobs")

    def client(self) -> DualStorageClient:
        return DualStorageClient.from_config(load_spec(make_spec(self.work, self.storage_root)).storage)

    def spec(self, **kw: Any) -> dict[str, Any]:
        return make_spec(self.work, self.storage_root, **kw)

    def run(
        self,
        spec: dict[str, Any],
        *,
        resume: bool = False,
        adapter: type[FakeAdapter] = FakeAdapter,
        storage: DualStorageClient | None = None,
        **runner_kw: Any,
    ) -> tuple[int, list[dict[str, Any]]]:
        out = io.StringIO()
        runner = Runner(
            load_spec(spec),
            resume=resume,
            stream=out,
            storage=storage,
            adapter_resolver=lambda framework: adapter,
            **runner_kw,
        )
        code = runner.run()
        return code, [json.loads(line) for line in out.getvalue().splitlines()]

    def output_dir(self, job_id: int = 7) -> Path:
        return JobPaths.for_job(self.work, job_id).output_dir


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def check_contract(events: list[dict[str, Any]], job_id: int = 7) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for e in events:
        assert set(e) == EVENT_KEYS
        assert e["job_id"] == job_id
        assert e["type"] in EVENT_TYPES
        assert e["ts"].endswith("Z")
        ProgressEvent.model_validate(e)
        if e["type"] == "status":
            assert e["data"]["status"] in JOB_STATUSES
        if e["type"] == "epoch":
            assert set(e["data"]) >= {"epoch", "epochs", "metrics", "eta_s"}
        if e["type"] == "batch":
            assert set(e["data"]) == {"epoch", "batch", "batches", "loss", "eta_s"}
        if e["type"] == "checkpoint":
            assert set(e["data"]) == {"name", "key", "size", "sha256", "epoch"}
        if e["type"] == "error":
            assert set(e["data"]) == {"message", "error_type"}
    assert len({e["event_id"] for e in events}) == len(events)


def of(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == type_]


def statuses(events: list[dict[str, Any]]) -> list[str]:
    return [d["status"] for d in of(events, "status")]


def stored_sha(storage: DualStorageClient, job_id: int, name: str, project_id: int | None = 3) -> str:
    return hashlib.sha256(storage.internal.get_bytes(checkpoint_key(job_id, project_id, name))).hexdigest()


# ---------------------------------------------------------------------------------------------- runs


def test_completed_job_events_follow_the_contract(env: Env) -> None:
    code, events = env.run(env.spec(epochs=3))
    assert code == EXIT_COMPLETED
    check_contract(events)
    assert statuses(events) == ["preparing", "running", "completed"]
    epochs = of(events, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert all(e["epochs"] == 3 and "val/accuracy" in e["metrics"] for e in epochs)
    assert epochs[-1]["eta_s"] == 0.0
    done = of(events, "done")[0]
    assert done["status"] == "completed" and done["last_epoch"] == 3
    cps = {c["name"]: c for c in of(events, "checkpoint")}
    assert set(cps) == {"best.pt", "last.pt"}
    assert cps["last.pt"]["epoch"] == 3 and cps["best.pt"]["epoch"] == done["best_epoch"]
    assert done["checkpoints"] == list(cps.values())
    for name, cp in cps.items():
        assert cp["key"] == checkpoint_key(7, 3, name)
        assert stored_sha(env.storage, 7, name) == cp["sha256"]
        assert (env.output_dir() / name).is_file()  # local copy kept
    assert [e["type"] for e in events][-3:] == ["checkpoint", "done", "status"]


def test_exception_inside_train_uploads_last_and_fails(env: Env) -> None:
    code, events = env.run(env.spec(epochs=4, advanced={"fake_fail_at_epoch": 3, "fake_fail_at_batch": 2}))
    assert code == EXIT_FAILED
    check_contract(events)
    assert statuses(events)[-1] == "failed"
    err = of(events, "error")[0]
    assert err["error_type"] == "training" and "injected failure" in err["message"]
    assert not of(events, "done")
    cps = {c["name"]: c for c in of(events, "checkpoint")}
    assert cps["last.pt"]["epoch"] == 2
    assert stored_sha(env.storage, 7, "last.pt") == cps["last.pt"]["sha256"]


def test_failure_before_any_checkpoint_uploads_nothing(env: Env) -> None:
    code, events = env.run(env.spec(epochs=2, advanced={"fake_fail_at_epoch": 1, "fake_fail_at_batch": 1}))
    assert code == EXIT_FAILED
    assert not of(events, "checkpoint")
    assert not env.storage.internal.exists(checkpoint_key(7, 3, "best.pt"))
    assert not env.storage.internal.exists(checkpoint_key(7, 3, "last.pt"))


def test_early_stop_is_a_completed_job_with_checkpoints(env: Env) -> None:
    code, events = env.run(env.spec(epochs=10, advanced={"patience": 2, "fake_plateau": True}))
    assert code == EXIT_COMPLETED
    done = of(events, "done")[0]
    assert done["early_stopped"] is True and done["status"] == "completed"
    assert done["best_epoch"] == 1 and done["last_epoch"] == 3
    cps = {c["name"]: c["epoch"] for c in of(events, "checkpoint")}
    assert cps == {"best.pt": 1, "last.pt": 3}


class StopAtEpoch2(FakeAdapter):
    """Sets the stop event in epoch 2 (what the SIGINT/SIGTERM handler does)."""

    def train(self) -> Any:
        def stop(epoch: int, batch: int, **_: Any) -> None:
            if epoch == 2 and batch == 2:
                self.ctx.stop_event.set()

        self.ctx.callbacks.add_callback("on_batch_end", stop)
        return super().train()


def test_stop_then_resume_reports_every_epoch_once(env: Env) -> None:
    code, first = env.run(env.spec(epochs=4), adapter=StopAtEpoch2)
    assert code == EXIT_STOPPED
    assert statuses(first)[-1] == "stopped" and of(first, "done")[0]["status"] == "stopped"
    assert {c["name"]: c["epoch"] for c in of(first, "checkpoint")}["last.pt"] == 1
    code, second = env.run(env.spec(epochs=4), resume=True)
    assert code == EXIT_COMPLETED
    check_contract(second)
    assert statuses(second)[0] == "resuming"
    running = next(d for d in of(second, "status") if d["status"] == "running")
    assert running["resumed_from"].endswith("last.pt")
    reported = [e["epoch"] for e in of(first, "epoch") + of(second, "epoch")]
    assert sorted(reported) == [1, 2, 3, 4] and len(set(reported)) == 4


def test_resume_downloads_last_pt_when_the_disk_was_lost(env: Env) -> None:
    code, _ = env.run(env.spec(epochs=3), adapter=StopAtEpoch2)
    assert code == EXIT_STOPPED
    import shutil

    shutil.rmtree(env.output_dir())  # a new pod: nothing local
    code, events = env.run(env.spec(epochs=3), resume=True)
    assert code == EXIT_COMPLETED
    assert any("fetched from the internal store" in d["message"] for d in of(events, "log"))
    # epoch 1 was reported by the lost attempt; without its state file it is reported again
    assert [e["epoch"] for e in of(events, "epoch")][-2:] == [2, 3]


def test_resume_without_any_checkpoint_starts_from_scratch(env: Env) -> None:
    code, events = env.run(env.spec(epochs=2), resume=True)
    assert code == EXIT_COMPLETED
    assert [e["epoch"] for e in of(events, "epoch")] == [1, 2]
    assert any("starting from scratch" in d["message"] for d in of(events, "log"))


def test_periodic_backup_of_last_pt(env: Env) -> None:
    spec = env.spec(epochs=4, advanced={"fake_batch_sleep_s": 0.03}, checkpoint_upload_interval_s=0.05)
    code, events = env.run(spec)
    assert code == EXIT_COMPLETED
    assert any("backed up" in d["message"] for d in of(events, "log"))


# ------------------------------------------------------------------------------ upload failures


class FlakyInternal(LocalObjectStore):
    """put_file fails the first `fail_puts` times; `bad_size` makes every stat lie."""

    def __init__(self, base: LocalObjectStore, fail_puts: int = 0, bad_size: bool = False) -> None:
        super().__init__(base.root, base.bucket, base.name)
        self.fail_puts = fail_puts
        self.bad_size = bad_size
        self.puts = 0

    def put_file(self, key: str, path: str | Path, *, content_type: str | None = None) -> ObjectInfo:
        self.puts += 1
        if self.puts <= self.fail_puts:
            raise StorageError("simulated outage")
        return super().put_file(key, path, content_type=content_type)

    def stat(self, key: str) -> ObjectInfo:
        info = super().stat(key)
        return ObjectInfo(key=info.key, size=info.size + 1, etag=info.etag) if self.bad_size else info


def test_upload_failure_is_retried(env: Env) -> None:
    flaky = FlakyInternal(env.storage.internal, fail_puts=1)  # type: ignore[arg-type]
    storage = DualStorageClient(env.storage.external, flaky)
    code, events = env.run(env.spec(epochs=2), storage=storage, upload_backoff_s=0.01)
    assert code == EXIT_COMPLETED
    assert {c["name"] for c in of(events, "checkpoint")} == {"best.pt", "last.pt"}
    assert flaky.puts == 3


def test_unverifiable_upload_keeps_local_copy_and_fails(env: Env) -> None:
    flaky = FlakyInternal(env.storage.internal, bad_size=True)  # type: ignore[arg-type]
    storage = DualStorageClient(env.storage.external, flaky)
    code, events = env.run(env.spec(epochs=2), storage=storage, upload_attempts=2, upload_backoff_s=0.01)
    assert code == EXIT_FAILED
    assert not of(events, "checkpoint")
    err = of(events, "error")[0]
    assert err["error_type"] == "checkpoint_upload" and "did not verify" in err["message"]
    assert (env.output_dir() / "best.pt").is_file() and (env.output_dir() / "last.pt").is_file()


# ---------------------------------------------------------------------------------- bad inputs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BAD: dict[str, tuple[Callable[[Env], dict[str, Any]], str, str]] = {
    "unknown model": (lambda e: e.spec(model_name="fake-nett"), "config", "did you mean 'fake-net'"),
    "task mismatch": (lambda e: e.spec(model_name="fake-net-seg"), "config", "does not do image_classification"),
    "dataset cannot serve task": (
        lambda e: e.spec(task_type="object_detection"),
        "incompatible_dataset",
        "",
    ),
    "batch larger than dataset": (
        lambda e: e.spec(hyperparameters={"batch_size": 500}),
        "config",
        "larger than the dataset",
    ),
    "missing dataset": (lambda e: e.spec(dataset_id="nope"), "dataset", "no annotations.json"),
    "missing snapshot": (lambda e: e.spec(snapshot_id="s404"), "not_found", "s404"),
    "unknown config key": (lambda e: e.spec(advanced={"patiense": 3}), "config", "did you mean 'patience'"),
    "cuda without a gpu": (
        lambda e: e.spec(hyperparameters={"device": "cuda:7"}),
        "config",
        "no such CUDA device",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_an_error_event_and_exit_1(env: Env, case: str) -> None:
    make, error_type, text = BAD[case]
    code, events = env.run(make(env))
    assert code == EXIT_FAILED
    check_contract(events)
    err = of(events, "error")[0]
    assert err["error_type"] == error_type, err
    assert text in err["message"]
    assert statuses(events)[-1] == "failed"
    assert not of(events, "checkpoint") and not of(events, "done")
    assert not env.storage.internal.exists(checkpoint_key(7, 3, "best.pt"))


def test_unreachable_storage_is_an_error_event(env: Env) -> None:
    port = _free_port()
    spec = env.spec(
        storage={
            "external": {"endpoint": f"http://127.0.0.1:{port}", "access_key": "a", "secret_key": "b", "bucket": "x"},
            "local_root": str(env.storage_root),
        }
    )
    code, events = env.run(spec)
    assert code == EXIT_FAILED
    err = of(events, "error")[0]
    assert err["error_type"] == "storage_unavailable", err


# --------------------------------------------------------------------------------------------- S3


def test_dataset_from_and_checkpoints_to_s3(env: Env, s3_env: dict[str, str]) -> None:  # noqa: F811
    cfg = s3_storage_config(s3_env, env.tmp / "storage")
    storage = DualStorageClient.from_config(cfg)
    publish_dataset(storage, "ds1", dataset_dict(12), tmp_dir=env.tmp / "s3blobs")

    def side(prefix: str, bucket_var: str) -> dict[str, str]:
        return {
            "endpoint": s3_env[f"{prefix}_STORAGE_ENDPOINT"],
            "access_key": s3_env[f"{prefix}_STORAGE_ACCESS_KEY"],
            "secret_key": s3_env[f"{prefix}_STORAGE_SECRET_KEY"],
            "bucket": s3_env[bucket_var],
        }

    spec = env.spec(
        epochs=2,
        project_id=None,
        storage={
            "external": side("EXTERNAL", "EXTERNAL_BUCKET_DATASETS"),
            "internal": side("INTERNAL", "INTERNAL_BUCKET_CHECKPOINTS"),
        },
    )
    code, events = env.run(spec)
    assert code == EXIT_COMPLETED, of(events, "error")
    for cp in of(events, "checkpoint"):
        assert cp["key"] == f"checkpoints/test-jobs/job_7/{cp['name']}"
        assert stored_sha(storage, 7, cp["name"], None) == cp["sha256"]


# ------------------------------------------------------------------------------------------ MLflow


def _mlflow_spec(env: Env, **kw: Any) -> dict[str, Any]:
    # the logger process at normal priority: a loaded test machine would starve an idle one
    uri = f"sqlite:///{env.tmp / 'mlflow.db'}"
    mlflow = {"enabled": True, "tracking_uri": uri, "experiment_name": "unit", "logger_priority": "normal"}
    return env.spec(mlflow=mlflow, **kw)


class LateRunLogger:
    """Stands in for `MlflowLogger`: its logger process reports the run id late, from its own
    thread (as the real one's reader thread does), after training is over."""

    instances: ClassVar[list[LateRunLogger]] = []

    def __init__(self, spec: Any, *, on_run: Any = None, **_: Any) -> None:
        self.on_run = on_run
        self.reported = threading.Event()
        self.finished: str | None = None
        LateRunLogger.instances.append(self)

    def launch(self) -> None:
        pass

    def start(self, params: Any, *, resume: bool = False) -> None:
        def report() -> None:
            time.sleep(0.5)
            self.on_run("0123abcd")
            self.reported.set()

        threading.Thread(target=report, daemon=True).start()

    def log_epoch(self, epoch: int, metrics: Any) -> None:
        pass

    def log_dict(self, name: str, data: Any) -> None:
        pass

    def wait_run_id(self, timeout: float) -> str | None:
        return "0123abcd" if self.reported.wait(timeout) else None

    def finish(self, job_status: str, timeout: float = 30.0) -> bool:
        self.finished = job_status
        return True


def test_the_mlflow_run_id_is_reported_in_a_log_event_before_the_job_ends(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trainer_runtime.runner.MlflowLogger", LateRunLogger)
    code, events = env.run(env.spec(epochs=1))
    assert code == EXIT_COMPLETED
    check_contract(events)
    reported = [(i, e["data"]) for i, e in enumerate(events) if e["data"].get("mlflow_run_id")]
    assert [(events[i]["type"], d) for i, d in reported] == [
        ("log", {"level": "info", "message": "MLflow run 0123abcd", "mlflow_run_id": "0123abcd"})
    ]
    done = next(i for i, e in enumerate(events) if e["type"] == "done")
    assert reported[0][0] < done  # the trainer waited for it (MLFLOW_RUN_ID_WAIT_S)
    assert LateRunLogger.instances[-1].finished == "completed"


@pytest.mark.slow
def test_mlflow_run_has_tags_params_metrics_and_ends(env: Env) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    spec = _mlflow_spec(env, epochs=3)
    code, events = env.run(spec)
    assert code == EXIT_COMPLETED
    run = wait_for_run(spec["mlflow"]["tracking_uri"], env.output_dir(), "FINISHED")  # the logger process ends it
    client = MlflowClient(spec["mlflow"]["tracking_uri"])
    run_id = run.info.run_id
    check_contract(events)
    assert [d["mlflow_run_id"] for d in of(events, "log") if "mlflow_run_id" in d] == [run_id]  # for the server
    tags = run.data.tags
    assert tags["job_id"] == "7" and tags["project_id"] == "3" and tags["model"] == "fake-net"
    assert tags["task"] == "image_classification" and tags["dataset_id"] == "ds1"
    assert run.data.params["config.lr"] == "0.5" and run.data.params["hyperparameters.epochs"] == "3"
    history = client.get_metric_history(run_id, "val/accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.json", "final_metrics.json", "checkpoints.json"} <= artifacts

    # stopped -> KILLED, then a resume continues the same run and finishes it
    spec2 = _mlflow_spec(env, job_id=8, epochs=3)
    code, _ = env.run(spec2, adapter=StopAtEpoch2)
    assert code == EXIT_STOPPED
    run_id2 = wait_for_run(spec["mlflow"]["tracking_uri"], env.output_dir(8), "KILLED").info.run_id
    code, _ = env.run(spec2, resume=True)
    assert code == EXIT_COMPLETED
    run2 = wait_for_run(spec["mlflow"]["tracking_uri"], env.output_dir(8), "FINISHED")
    assert run2.info.run_id == run_id2 and run2.data.tags["attempts"] == "2"
    assert sorted(m.step for m in client.get_metric_history(run_id2, "val/accuracy")) == [1, 2, 3]

    # failed -> FAILED
    spec3 = _mlflow_spec(env, job_id=9, epochs=2, advanced={"fake_fail_at_epoch": 2})
    code, _ = env.run(spec3)
    assert code == EXIT_FAILED
    wait_for_run(spec["mlflow"]["tracking_uri"], env.output_dir(9), "FAILED")


@pytest.mark.slow
def test_mark_run_terminated_and_resume_of_a_killed_run(env: Env) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from trainer_runtime.mlflow_logger import mark_run_terminated

    spec = _mlflow_spec(env, epochs=2)
    code, _ = env.run(spec, adapter=StopAtEpoch2)
    run_id = wait_for_run(spec["mlflow"]["tracking_uri"], env.output_dir(), "KILLED").info.run_id
    client = MlflowClient(spec["mlflow"]["tracking_uri"])
    client.update_run(run_id, status="RUNNING")  # what a SIGKILLed trainer leaves behind
    assert mark_run_terminated(spec["mlflow"]["tracking_uri"], run_id, "stopped") is True
    assert client.get_run(run_id).info.status == "KILLED"
    assert mark_run_terminated(spec["mlflow"]["tracking_uri"], run_id) is False
    client.update_run(run_id, status="RUNNING")
    code, _ = env.run(spec, resume=True)  # marks the RUNNING leftover KILLED, re-opens, finishes
    assert code == EXIT_COMPLETED
    assert wait_for_run(spec["mlflow"]["tracking_uri"], env.output_dir(), "FINISHED").info.run_id == run_id


def test_mlflow_names_are_made_valid() -> None:
    from trainer_runtime.mlflow_logger import flatten, mlflow_name

    assert mlflow_name("val/mAP50-95") == "val/mAP50-95"
    assert mlflow_name("top-1 acc (%)") == "top-1 acc ___"
    assert mlflow_name("/../x") == "_/x"
    assert flatten({"a": {"b": [1, 2]}, "c": None}) == {"a.b": "[1, 2]", "c": "null"}
