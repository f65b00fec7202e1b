"""`tools.executors.LocalExecutor` with real processes: a fake framework interpreter
(`tests.live_server.write_fake_python`) stands in for `python -m trainer_runtime`, so exit codes and
signal handling are exact and fast. The real trainer runs in tests/web/test_jobs_reliability.py."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.live_server import wait_for, write_fake_python
from tools.executors import ExitInfo, LocalExecutor
from tools.executors.base import ExecHandle


def spec_file(tmp_path: Path, job_id: int = 1, framework: str = "timm") -> Path:
    d = tmp_path / "trainer" / "jobs" / f"job_{job_id}"
    d.mkdir(parents=True, exist_ok=True)
    p = d / "spec.json"
    p.write_text(json.dumps({"job_id": job_id, "framework": framework}))
    return p


def wait_exit(ex: LocalExecutor, h: ExecHandle, timeout: float = 20.0) -> ExitInfo:
    info: ExitInfo = wait_for(lambda: ex.poll(h), timeout, interval=0.05, what="trainer exit")
    return info


def executor(tmp_path: Path, **fake: object) -> LocalExecutor:
    return LocalExecutor({"timm": write_fake_python(tmp_path / "fake-python", **fake)})  # type: ignore[arg-type]


def test_runs_the_framework_interpreter_and_reports_exit_and_log_tail(tmp_path: Path) -> None:
    ex = executor(tmp_path, mode="sleep", seconds=0.2, code=0)
    spec = spec_file(tmp_path)
    h = ex.start(1, spec, resume=True)
    assert ex.poll(h) is None
    info = wait_exit(ex, h)
    assert info.returncode == 0 and info.signal is None
    assert f"spec {spec}" in info.log_tail and "resume True" in info.log_tail and "done" in info.log_tail
    log = (spec.parent / "trainer.log").read_text()
    assert "-m trainer_runtime --spec" in log and "--resume" in log


def test_exit_status_and_log_tail_of_the_current_attempt_only(tmp_path: Path) -> None:
    ex = executor(tmp_path, mode="exit", code=1)
    spec = spec_file(tmp_path)
    first = wait_exit(ex, ex.start(1, spec, resume=False))
    second = wait_exit(ex, ex.start(1, spec, resume=True))
    assert first.returncode == second.returncode == 1
    assert "resume False" in first.log_tail and "resume False" not in second.log_tail
    assert (spec.parent / "trainer.log").read_text().count("=====") == 2


def test_unknown_framework_falls_back_to_the_servers_python(tmp_path: Path) -> None:
    ex = LocalExecutor({"timm": None})
    assert ex.interpreter_for("timm") == sys.executable
    assert ex.interpreter_for("transformers") == sys.executable
    env = ex._child_env(1)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(__file__).resolve().parents[2])


def test_stop_sends_sigint_and_the_trainer_exits_130(tmp_path: Path) -> None:
    ex = executor(tmp_path, mode="sleep")
    h = ex.start(1, spec_file(tmp_path), resume=False)
    time.sleep(0.5)  # let it install its handler
    ex.stop(h, grace_s=30)
    info = wait_exit(ex, h)
    assert info.returncode == 130
    assert f"got signal {int(signal.SIGINT)}" in info.log_tail


def test_stop_escalates_to_sigterm_then_sigkill(tmp_path: Path) -> None:
    ex = executor(tmp_path, mode="stubborn")
    h = ex.start(1, spec_file(tmp_path), resume=False)
    time.sleep(0.5)
    t0 = time.monotonic()
    ex.stop(h, grace_s=0.5)
    info = wait_exit(ex, h)
    assert info.returncode == -signal.SIGKILL and info.signal == signal.SIGKILL
    assert time.monotonic() - t0 >= 1.0  # SIGINT, 0.5 s, SIGTERM, 0.5 s, SIGKILL
    assert f"got signal {int(signal.SIGINT)}" in info.log_tail
    assert f"got signal {int(signal.SIGTERM)}" in info.log_tail


def test_kill_takes_the_whole_process_group(tmp_path: Path) -> None:
    ex = executor(tmp_path, mode="child")
    spec = spec_file(tmp_path)
    h = ex.start(1, spec, resume=False)
    child_file = Path(str(spec) + ".child")
    wait_for(child_file.exists, 10, what="child pid")
    child = int(child_file.read_text())
    assert os.getpgid(child) == int(h.external_id)
    ex.kill(h)
    info = wait_exit(ex, h)
    assert info.returncode == -signal.SIGKILL

    def child_gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"

    wait_for(child_gone, 10, what="the trainer's child to go")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_adopt_recognises_only_our_trainer_of_that_spec(tmp_path: Path) -> None:
    # long enough that a busy machine cannot let the trainer finish before the checks below run
    ex = executor(tmp_path, mode="sleep", seconds=4, code=0)
    spec = spec_file(tmp_path, job_id=7)
    other = spec_file(tmp_path, job_id=8)
    h = ex.start(7, spec, resume=False)
    fresh = LocalExecutor()  # a restarted server
    assert fresh.is_alive(h.external_id, spec)
    assert not fresh.is_alive(h.external_id, other)
    assert fresh.adopt(8, h.external_id, other) is None
    assert fresh.adopt(7, str(os.getpid()), spec) is None  # alive, but not a trainer
    assert fresh.adopt(7, "999999999", spec) is None
    adopted = fresh.adopt(7, h.external_id, spec)
    assert adopted is not None and adopted.adopted
    assert fresh.poll(adopted) is None
    info = wait_exit(fresh, adopted)
    assert info.returncode is None  # not our child: the exit status is unknown
    assert "done" in info.log_tail
    assert wait_exit(ex, h).returncode == 0  # the real parent still reaps it
    assert not fresh.is_alive(h.external_id, spec)


def test_gpu_slots_get_one_device_each(tmp_path: Path) -> None:
    ex = LocalExecutor(gpu_ids=["0", "1"])
    assert ex._child_env(1)["CUDA_VISIBLE_DEVICES"] == "0"
    assert ex._child_env(2)["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in ex._child_env(3) or os.environ.get("CUDA_VISIBLE_DEVICES")
