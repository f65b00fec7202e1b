"""Where training processes run: one `Executor` interface, a local implementation.

    Executor        (base.py)   start / stop / poll / kill / is_alive / adopt
    LocalExecutor   (local.py)  one subprocess per job in its own process group

A Kubernetes executor (a batch/v1 Job per training job) comes later behind the same interface.
"""

from __future__ import annotations

from tools.executors.base import ExecHandle, Executor, ExitInfo
from tools.executors.local import LocalExecutor

__all__ = ["ExecHandle", "Executor", "ExitInfo", "LocalExecutor"]
