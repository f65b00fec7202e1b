"""Where training processes run: one `Executor` interface, a local and a Kubernetes implementation.

    Executor            (base.py)        start / stop / poll / kill / is_alive / adopt
    LocalExecutor       (local.py)       one subprocess per job in its own process group
    KubernetesExecutor  (kubernetes.py)  one batch/v1 Job per attempt (EXECUTOR=kubernetes): submit, watch, stop
    KubernetesConfig    (k8s_manifests.py) how those Jobs look; the Job and Secret builders (no API call)
    trainer_env, TrainerLimits (sandbox.py) what a trainer inherits: an env allow-list, rlimits

The `kubernetes` client package is imported only when a KubernetesExecutor is made.
"""

from __future__ import annotations

from tools.executors.base import ExecHandle, Executor, ExitInfo
from tools.executors.k8s_manifests import KubernetesConfig
from tools.executors.kubernetes import KubernetesExecutor
from tools.executors.local import LocalExecutor
from tools.executors.sandbox import TrainerLimits, trainer_env

__all__ = [
    "ExecHandle",
    "Executor",
    "ExitInfo",
    "KubernetesConfig",
    "KubernetesExecutor",
    "LocalExecutor",
    "TrainerLimits",
    "trainer_env",
]
