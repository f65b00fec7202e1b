"""The executor interface the supervisor drives (`tools.supervisor`).

An executor runs one trainer (`python -m trainer_runtime --spec job.json [--resume]`) per call to
`start` and tells, through `poll`, when and how it ended. It never touches the database: the
supervisor turns exits into job statuses.

Stopping is asynchronous: `stop(handle, grace_s)` asks the trainer to stop (it finishes the batch
and uploads best/last) and arms the escalation, which `poll` carries out (the local executor:
SIGINT, then SIGTERM after `grace_s`, then SIGKILL after another `grace_s`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ExitInfo:
    """How a trainer ended.

    returncode: the exit status (0 completed, 130 stopped after a signal, 1 failed, 2 bad spec),
        negative -N when killed by signal N, None when unknown (an adopted process that was not
        our child).
    log_tail: the end of what it printed in this attempt (for the job's error).
    """

    returncode: int | None
    log_tail: str = ""

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode is not None and self.returncode < 0 else None


@dataclass
class ExecHandle:
    """A running trainer. `external_id` is what survives a server restart (a pid, a k8s Job name)."""

    job_id: int
    external_id: str
    spec_path: Path
    resume: bool = False
    adopted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Executor(abc.ABC):
    """Starts, stops, watches and re-adopts trainers: as local processes or as Kubernetes Jobs."""

    name: str = "abstract"

    @abc.abstractmethod
    def start(self, job_id: int, spec_path: Path, *, resume: bool) -> ExecHandle:
        """Launch the trainer for `spec_path` (with `--resume` when `resume`)."""

    @abc.abstractmethod
    def stop(self, handle: ExecHandle, grace_s: float) -> None:
        """Ask the trainer to stop gracefully and arm the escalation (non-blocking)."""

    @abc.abstractmethod
    def poll(self, handle: ExecHandle) -> ExitInfo | None:
        """None while it runs (escalating a stop when due); how it ended once it has."""

    @abc.abstractmethod
    def kill(self, handle: ExecHandle) -> None:
        """End it at once (no checkpoint upload)."""

    @abc.abstractmethod
    def is_alive(self, external_id: str, spec_path: Path | None = None) -> bool:
        """Whether `external_id` is still a live trainer (of `spec_path` when given)."""

    @abc.abstractmethod
    def adopt(self, job_id: int, external_id: str, spec_path: Path) -> ExecHandle | None:
        """Take over watching a trainer started by an earlier server process; None when it is gone
        or is not that job's trainer."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; running trainers are left running (a restarted server adopts them)."""
