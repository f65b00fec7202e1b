"""`LocalExecutor`: one trainer subprocess per job on this machine (seed: "Tier 1: 로컬 개발
(subprocess)", per-framework venvs).

* Command: ``[python, -m, trainer_runtime, --spec, <spec>] (+ --resume)``. `python` is the
  framework's interpreter (`interpreters[framework]`, from TRAINER_PYTHON_ULTRALYTICS / _TIMM /
  _TRANSFORMERS), else the server's own `sys.executable`. The folder holding this checkout's
  `trainer_runtime` is put first on PYTHONPATH, so a bare framework venv runs the same code.
* Each trainer is the leader of its own process group and session (`start_new_session=True`):
  signals go to the whole group, and a Ctrl+C in the server's terminal does not reach it.
* stdout and stderr are appended to ``trainer.log`` next to the spec (one header line per
  attempt); `ExitInfo.log_tail` is the end of the current attempt's part.
* Stop: SIGINT to the group (the runner finishes the batch, uploads best/last, exits 130), SIGTERM
  after the grace period, SIGKILL after another grace period; `poll` carries the escalation out.
* With GPUs (`gpu_ids`), each running trainer gets one through CUDA_VISIBLE_DEVICES.
* Environment: only the allow-list of `tools.executors.sandbox` (how to run; no server secrets:
  the trainer's own credentials are in its 0600 spec file) plus `env` (given by the caller);
  resource limits (`TrainerLimits`: memory, open files, processes) are set between fork and exec.
* A trainer started by an earlier server process can be adopted: it is recognised by
  ``/proc/<pid>/cmdline`` holding ``trainer_runtime`` and its spec path, and watched by polling the
  pid (its exit status is then unknown: `ExitInfo.returncode` is None).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import trainer_runtime
from tools.executors.base import ExecHandle, Executor, ExitInfo
from tools.executors.sandbox import TrainerLimits, trainer_env

log = logging.getLogger(__name__)

LOG_NAME = "trainer.log"
TAIL_BYTES = 4000
_PACKAGE_ROOT = str(Path(trainer_runtime.__file__).resolve().parent.parent)


def read_tail(path: Path, start: int = 0, max_bytes: int = TAIL_BYTES) -> str:
    """The last `max_bytes` of `path` from offset `start` on ('' when it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(start, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()


def _proc_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (None when the process does not exist)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()[0] if ")" in text else None


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]


class LocalExecutor(Executor):
    """Runs each trainer as a process of its own on this machine, in its framework's interpreter."""

    name = "local"

    def __init__(
        self,
        interpreters: Mapping[str, str | None] | None = None,
        *,
        gpu_ids: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        limits: TrainerLimits | None = None,
        env_allow: str | None = None,
    ) -> None:
        """env: variables every trainer gets (on top of the allow-listed part of the server's
        environment); env_allow: more names to let through (TRAINER_ENV_ALLOW: ``A,B_*``);
        limits: resource limits of each trainer (None: none)."""
        self.interpreters = {k: v for k, v in (interpreters or {}).items() if v}
        self.gpu_ids = list(gpu_ids or [])
        self.env = dict(env or {})
        self.limits = limits or TrainerLimits()
        self.env_allow = env_allow
        self._gpu_of: dict[int, str] = {}

    # ---------------------------------------------------------------------------------- helpers
    def interpreter_for(self, framework: str | None) -> str:
        return self.interpreters.get(framework or "", "") or sys.executable

    @staticmethod
    def log_path(spec_path: Path) -> Path:
        return Path(spec_path).parent / LOG_NAME

    def _child_env(self, job_id: int) -> dict[str, str]:
        env = trainer_env(os.environ, self.env_allow)
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        paths = [_PACKAGE_ROOT, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        if self.gpu_ids:
            used = set(self._gpu_of.values())
            free = [g for g in self.gpu_ids if g not in used]
            if free:
                self._gpu_of[job_id] = free[0]
                env["CUDA_VISIBLE_DEVICES"] = free[0]
        return env

    def _signal_group(self, handle: ExecHandle, sig: int) -> None:
        pid = int(handle.external_id)
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    # ---------------------------------------------------------------------------------- interface
    def start(self, job_id: int, spec_path: Path, *, resume: bool) -> ExecHandle:
        spec_path = Path(spec_path).resolve()
        framework: str | None = None
        with contextlib.suppress(OSError, ValueError):
            framework = json.loads(spec_path.read_text(encoding="utf-8")).get("framework")
        cmd = [self.interpreter_for(framework), "-m", "trainer_runtime", "--spec", str(spec_path)]
        if resume:
            cmd.append("--resume")
        log_path = self.log_path(spec_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as fh:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            fh.write(f"===== {stamp} job {job_id}: {' '.join(cmd)}\n".encode())
            offset = fh.tell()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=str(spec_path.parent),
                env=self._child_env(job_id),
                start_new_session=True,
                close_fds=True,
                preexec_fn=self.limits.preexec(),  # (only setrlimit runs in the child)
            )
        log.info("job %s: trainer started, pid %s (%s)", job_id, proc.pid, "resume" if resume else "fresh")
        return ExecHandle(
            job_id=job_id,
            external_id=str(proc.pid),
            spec_path=spec_path,
            resume=resume,
            extra={"proc": proc, "log_path": log_path, "log_offset": offset, "stage": 0, "deadline": None},
        )

    def stop(self, handle: ExecHandle, grace_s: float) -> None:
        if handle.extra.get("stage", 0) > 0:
            return
        handle.extra["grace"] = float(grace_s)
        handle.extra["stage"] = 1
        handle.extra["deadline"] = time.monotonic() + float(grace_s)
        log.info("job %s: SIGINT to trainer group %s", handle.job_id, handle.external_id)
        self._signal_group(handle, signal.SIGINT)

    def _escalate(self, handle: ExecHandle) -> None:
        stage = handle.extra.get("stage", 0)
        deadline = handle.extra.get("deadline")
        if stage == 0 or deadline is None or time.monotonic() < deadline:
            return
        grace = float(handle.extra.get("grace", 0.0))
        if stage == 1:
            log.warning("job %s: trainer still running after %.0fs: SIGTERM", handle.job_id, grace)
            self._signal_group(handle, signal.SIGTERM)
            handle.extra["stage"] = 2
            handle.extra["deadline"] = time.monotonic() + grace
        elif stage == 2:
            log.warning("job %s: trainer still running after SIGTERM: SIGKILL", handle.job_id)
            self._signal_group(handle, signal.SIGKILL)
            handle.extra["stage"] = 3
            handle.extra["deadline"] = None

    def poll(self, handle: ExecHandle) -> ExitInfo | None:
        proc: subprocess.Popen[bytes] | None = handle.extra.get("proc")
        if proc is not None:
            rc = proc.poll()
            if rc is None:
                self._escalate(handle)
                return None
        elif self.is_alive(handle.external_id, handle.spec_path):
            self._escalate(handle)
            return None
        else:
            rc = None
        # Leftovers of the group (data-loader workers of a killed trainer) go with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(handle.external_id), signal.SIGKILL)
        self._gpu_of.pop(handle.job_id, None)
        tail = read_tail(
            handle.extra.get("log_path") or self.log_path(handle.spec_path), handle.extra.get("log_offset", 0)
        )
        return ExitInfo(returncode=rc, log_tail=tail)

    def kill(self, handle: ExecHandle) -> None:
        self._signal_group(handle, signal.SIGKILL)

    def is_alive(self, external_id: str, spec_path: Path | None = None) -> bool:
        try:
            pid = int(external_id)
        except (TypeError, ValueError):
            return False
        if pid <= 0:
            return False
        if Path("/proc").is_dir():
            state = _proc_state(pid)
            if state is None or state in ("Z", "X", "x"):
                return False
            cmd = _cmdline(pid)
            if cmd is None:
                return False
            text = " ".join(cmd)
            if "trainer_runtime" not in text:
                return False
            return spec_path is None or str(Path(spec_path).resolve()) in cmd
        try:  # no /proc (macOS): existence only
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def adopt(self, job_id: int, external_id: str, spec_path: Path) -> ExecHandle | None:
        spec_path = Path(spec_path).resolve()
        if not self.is_alive(external_id, spec_path):
            return None
        log_path = self.log_path(spec_path)
        offset = 0
        with contextlib.suppress(OSError):
            offset = max(0, log_path.stat().st_size - TAIL_BYTES)
        log.info("job %s: adopted running trainer pid %s", job_id, external_id)
        return ExecHandle(
            job_id=job_id,
            external_id=str(external_id),
            spec_path=spec_path,
            adopted=True,
            extra={"proc": None, "log_path": log_path, "log_offset": offset, "stage": 0, "deadline": None},
        )
