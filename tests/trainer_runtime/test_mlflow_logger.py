"""The MLflow logger process (`trainer_runtime.mlflow_logger`: client, child): the trainer hands records over and
never imports mlflow; the child ends the run FINISHED/KILLED/FAILED, also when the trainer is
SIGKILLed; a resumed job continues the same run. Trainer runs here are real ``python`` processes
(the fake adapter behind the real CLI) where the process matters, else the logger on its own."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.trainer_runtime.fake_adapter import make_spec, publish_dataset
from trainer_runtime.job_setup import JobPaths
from trainer_runtime.mlflow_logger import RUN_ID_FILE, MlflowLogger
from trainer_runtime.runner import EXIT_COMPLETED, EXIT_STOPPED
from trainer_runtime.spec import load_spec
from trainer_runtime.storage import DualStorageClient

REPO = Path(__file__).resolve().parents[2]

# the real CLI with the fake adapter; says on stderr whether mlflow was imported in the trainer
TRAINER = r"""
import json, sys
from tests.trainer_runtime.fake_adapter import FakeAdapter
from trainer_runtime.runner import main
code = main(sys.argv[1:], adapter_resolver=lambda framework: FakeAdapter)
imported = sorted(m for m in sys.modules if m == "mlflow" or m.startswith("mlflow."))
print("MLFLOW_MODULES " + json.dumps(imported), file=sys.stderr, flush=True)
sys.exit(code)
"""


def wait_for_run(tracking_uri: str, output_dir: Path, status: str, timeout: float = 120.0) -> Any:
    """The job's MLflow run (id from ``<output_dir>/mlflow_run_id``) once it has ended with `status`:
    the logger process finishes the run after the trainer has returned. The client is made once the
    run id is there (a client opening a new SQLite store races with the logger creating it)."""
    from mlflow.tracking import MlflowClient

    deadline = time.monotonic() + timeout
    seen = None
    client = None
    while time.monotonic() < deadline:
        path = output_dir / RUN_ID_FILE
        if path.is_file() and path.read_text().strip():
            client = client or MlflowClient(tracking_uri)
            run = client.get_run(path.read_text().strip())
            seen = run.info.status
            if seen == status and run.info.end_time:
                return run
        time.sleep(0.1)
    raise AssertionError(f"MLflow run in {output_dir} not {status} within {timeout:.0f}s (last seen: {seen})")


class Job:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.work = tmp / "work"
        self.storage_root = tmp / "storage"
        self.uri = f"sqlite:///{tmp / 'mlflow.db'}"

    def publish(self) -> None:
        storage = DualStorageClient.from_config(load_spec(make_spec(self.work, self.storage_root)).storage)
        publish_dataset(storage, "ds1", tmp_dir=self.tmp / "blobs")

    def spec(self, priority: str = "normal", **kw: Any) -> dict[str, Any]:
        # correctness here, not scheduling: at idle priority a loaded test machine starves the child
        mlflow = {"enabled": True, "tracking_uri": self.uri, "experiment_name": "unit", "logger_priority": priority}
        return make_spec(self.work, self.storage_root, mlflow=mlflow, **kw)

    def output_dir(self, job_id: int = 7) -> Path:
        return JobPaths.for_job(self.work, job_id).output_dir

    def logger(self, spec: dict[str, Any]) -> MlflowLogger:
        paths = JobPaths.for_job(self.work, int(spec["job_id"]))
        return MlflowLogger(
            load_spec(spec), work_dir=paths.work_dir, output_dir=paths.output_dir, job_dir=paths.job_dir
        )

    def trainer(self, spec: dict[str, Any], *args: str) -> subprocess.Popen[str]:
        path = self.tmp / f"job{spec['job_id']}.json"
        path.write_text(json.dumps(spec))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.Popen(
            [sys.executable, "-c", TRAINER, "--spec", str(path), *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, like the supervisor's trainers
        )

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.uri)


@pytest.fixture
def job(tmp_path: Path) -> Job:
    return Job(tmp_path)


def _wait_file(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.1)
    raise AssertionError(f"{path} not written within {timeout:.0f}s")


# ------------------------------------------------------------------------------------------ unit


def test_disabled_starts_no_process(job: Job, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "trainer_runtime.mlflow")
    lg = job.logger(make_spec(job.work, job.storage_root))
    lg.launch()
    lg.start({"config": {}})
    lg.log_epoch(1, {"a": 1.0})
    assert lg.process is None and lg.finish("completed") is True
    assert "MLflow logging is off" in caplog.text


def test_mlflow_not_importable_is_one_log_line(
    job: Job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = tmp_path / "fake_site" / "mlflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no mlflow here')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    caplog.set_level(logging.INFO, "trainer_runtime.mlflow")
    lg = job.logger(job.spec())
    lg.launch()
    lg.start({"config": {"lr": 1}})
    lg.log_epoch(1, {"a": 1.0})
    assert lg.wait(60) == 0
    deadline = time.monotonic() + 10
    while lg.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lg.error == "mlflow is not installed"
    lg.log_epoch(2, {"a": 1.0})
    lg.finish("completed")
    lines = [r for r in caplog.records if r.name == "trainer_runtime.mlflow" and r.levelno >= logging.INFO]
    assert [r.getMessage().split(" (")[0] for r in lines] == ["mlflow is not importable; MLflow logging skipped"]


def test_dead_logger_process_drops_mlflow_with_one_warning(job: Job, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "trainer_runtime.mlflow")
    lg = job.logger(job.spec())
    lg.launch()
    assert lg.process is not None
    lg.process.kill()
    lg.start({"config": {"lr": 1}})
    deadline = time.monotonic() + 10
    while lg.error is None and time.monotonic() < deadline:
        lg.log_epoch(1, {"a": 1.0})
        time.sleep(0.05)
    for epoch in range(2, 50):
        lg.log_epoch(epoch, {"a": 1.0})
    assert lg.finish("completed") is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "MLflow logging dropped" in warnings[0].getMessage()


def test_logger_process_runs_at_idle_priority(job: Job) -> None:
    lg = job.logger(job.spec(priority="idle"))
    lg.launch()
    assert lg.process is not None
    pid = lg.process.pid
    try:
        deadline = time.monotonic() + 20
        nice = policy = None
        while time.monotonic() < deadline:
            nice = os.getpriority(os.PRIO_PROCESS, pid)
            policy = os.sched_getscheduler(pid) if hasattr(os, "sched_getscheduler") else None
            if nice == 19 and policy in (None, getattr(os, "SCHED_IDLE", None)):
                break
            time.sleep(0.05)
        assert nice == 19
        if hasattr(os, "SCHED_IDLE"):
            assert policy == os.SCHED_IDLE
        assert os.getsid(pid) == pid  # its own session: a signal to the trainer's group misses it
    finally:
        lg.finish("failed")
        lg.process.kill()  # at idle priority on a busy machine it could take long to exit
        lg.wait(10)


# ----------------------------------------------------------------------------------- processes


@pytest.mark.slow
def test_records_queued_before_the_store_is_open_all_land(job: Job) -> None:
    lg = job.logger(job.spec())
    lg.launch()
    lg.start({"config": {"lr": 0.5}, "hyperparameters": {"epochs": 150}})
    for epoch in range(1, 151):  # all queued while the child still imports mlflow
        lg.log_epoch(epoch, {"val/accuracy": epoch / 150, "loss": None})
    lg.log_dict("final_metrics.json", {"val/accuracy": 1.0})
    assert lg.finish("completed", timeout=10) is True
    assert lg.wait(180) == 0
    run = wait_for_run(job.uri, job.output_dir(), "FINISHED", timeout=10)
    client = job.client()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/accuracy")] == list(range(1, 151))
    assert run.data.params["config.lr"] == "0.5"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"final_metrics.json"}


@pytest.mark.slow
def test_the_run_id_goes_to_on_run_as_soon_as_the_run_exists(job: Job) -> None:
    seen: list[str] = []
    lg = job.logger(job.spec())
    lg.on_run = seen.append  # the runner's: a log event with mlflow_run_id for the server
    assert lg.wait_run_id(5) is None  # nothing started: no wait
    lg.launch()
    lg.start({"config": {"lr": 0.5}})
    run_id = lg.wait_run_id(120)
    assert run_id and seen == [run_id]  # before the run ends: a killed trainer's run can be marked
    assert (job.output_dir() / RUN_ID_FILE).read_text().strip() == run_id  # the local fallback
    assert job.client().get_run(run_id).info.status == "RUNNING"
    assert lg.finish("completed", timeout=10) is True
    assert lg.wait(120) == 0
    assert wait_for_run(job.uri, job.output_dir(), "FINISHED", timeout=10).info.run_id == run_id
    assert seen == [run_id]


@pytest.mark.slow
def test_cli_run_lands_in_the_store_and_the_trainer_never_imports_mlflow(job: Job) -> None:
    job.publish()
    proc = job.trainer(job.spec(epochs=3))
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == EXIT_COMPLETED, err[-3000:]
    assert "MLFLOW_MODULES []" in err, err[-3000:]
    run = wait_for_run(job.uri, job.output_dir(), "FINISHED")
    client = job.client()
    tags = run.data.tags
    assert tags["job_id"] == "7" and tags["project_id"] == "3" and tags["framework"] == "timm"
    assert tags["model"] == "fake-net" and tags["task"] == "image_classification" and tags["attempts"] == "1"
    assert run.data.params["config.lr"] == "0.5" and run.data.params["device"] == "cpu"
    history = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"config.json", "final_metrics.json", "checkpoints.json"}
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1]["data"]["status"] == "completed"


@pytest.mark.slow
def test_sigint_stops_killed_then_resume_reuses_the_run(job: Job) -> None:
    job.publish()
    spec = job.spec(epochs=20, advanced={"fake_batch_sleep_s": 0.25})
    proc = job.trainer(spec)
    run_id = _wait_file(job.output_dir() / RUN_ID_FILE, 120)
    client = job.client()
    while not client.get_metric_history(run_id, "val/accuracy") and proc.poll() is None:
        time.sleep(0.1)  # epoch 1 logged: there is a last.pt to resume from
    os.killpg(proc.pid, signal.SIGINT)  # what the supervisor's stop does; the logger is not in the group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_STOPPED, err[-3000:]
    assert wait_for_run(job.uri, job.output_dir(), "KILLED").info.run_id == run_id

    proc = job.trainer(job.spec(epochs=20), "--resume")
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == EXIT_COMPLETED, err[-3000:]
    run = wait_for_run(job.uri, job.output_dir(), "FINISHED")
    assert run.info.run_id == run_id and run.data.tags["attempts"] == "2"
    assert sorted({m.step for m in client.get_metric_history(run_id, "val/accuracy")}) == list(range(1, 21))


@pytest.mark.slow
def test_sigkilled_trainer_leaves_a_killed_run(job: Job) -> None:
    job.publish()
    proc = job.trainer(job.spec(epochs=20, advanced={"fake_batch_sleep_s": 0.25}))
    run_id = _wait_file(job.output_dir() / RUN_ID_FILE, 120)
    client = job.client()
    assert client.get_run(run_id).info.status == "RUNNING"
    os.killpg(proc.pid, signal.SIGKILL)  # the whole trainer group, as the supervisor's last resort
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    run = wait_for_run(job.uri, job.output_dir(), "KILLED", timeout=60)
    assert run.info.run_id == run_id
